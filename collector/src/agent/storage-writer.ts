import type { CrashEvent } from '@podmortem/contract';
import { dumpRelPath, eventRelPath, validateCrashEvent } from '@podmortem/contract';
import { isStoreError, readBytes, type Store } from '@podmortem/contract/store';
import { AgentError } from './errors.ts';
import { spooledBytes, zstdChunksOf, type SpooledCore } from './spooled-core.ts';

// Keeps a crash in the store (the NFS volume): <ns>/<pod-uid>/<container>/<id>.core.zst, then
// <id>.json. The store publishes each whole or not at all; the event goes last, so a stored event
// means its dump is complete. Storing again is harmless: an event already there for the same
// crash and the same core is left alone. A namespace over its dump quota gets its event stored
// without the dump (status skipped, with the reason): one crash-looping tenant cannot fill the
// volume for all.

export interface StorageWriterParams {
  store: Store;
  /** Free bytes to leave in the store; below them (counting the new dump) nothing is written. */
  minFreeBytes: number;
  /**
   * Bytes of dumps one namespace may hold in the store; 0 or absent = no quota. Counted from the
   * store itself, so it holds across agents; this agent's own stores into a namespace are
   * serialised, but two nodes storing into one namespace at the same instant may overshoot by one dump.
   */
  namespaceQuotaBytes?: number;
}

interface Keys {
  dump: string;
  event: string;
}

export class StorageWriter {
  private readonly params: StorageWriterParams;
  private readonly backend: Store;
  /** The last store into each namespace, so quota checks there run one at a time. */
  private readonly namespaceTails = new Map<string, Promise<unknown>>();

  constructor(params: StorageWriterParams) {
    this.params = params;
    this.backend = params.store;
  }

  /**
   * Stores the crash: its core (when one was kept) and then its event, completed with where and
   * how the core is stored. Returns that event — the one already stored, if this crash was.
   */
  async store(draft: CrashEvent, core: SpooledCore | undefined): Promise<CrashEvent> {
    const namespace = draft.kubernetes?.namespace;
    if (!core || !this.params.namespaceQuotaBytes || namespace === undefined)
      return this.storeNow(draft, core);
    const previous = this.namespaceTails.get(namespace) ?? Promise.resolve();
    const mine = previous.catch(() => undefined).then(() => this.storeNow(draft, core, namespace));
    this.namespaceTails.set(namespace, mine);
    try {
      return await mine;
    } finally {
      if (this.namespaceTails.get(namespace) === mine) this.namespaceTails.delete(namespace);
    }
  }

  private async storeNow(
    draft: CrashEvent,
    core: SpooledCore | undefined,
    quotaNamespace?: string,
  ): Promise<CrashEvent> {
    let keys: Keys;
    try {
      keys = { dump: dumpRelPath(draft), event: eventRelPath(draft) };
    } catch (err) {
      throw new AgentError('PM_ERR_EVENT_INVALID', (err as Error).message, { cause: err });
    }
    try {
      const prior = await this.alreadyStored(draft, keys, core !== undefined);
      if (prior) return prior;
      const needed = core ? await spooledBytes(core) : 0;
      const overQuota =
        core && quotaNamespace !== undefined ? await this.overQuota(quotaNamespace, needed) : undefined;
      const kept = overQuota ? undefined : core;
      await this.checkFreeSpace(kept ? needed : 0);
      const event = kept
        ? await this.storeDump(draft, keys.dump, kept)
        : overQuota
          ? skipped(draft, overQuota)
          : draft;
      await this.backend.putBytes(keys.event, Buffer.from(JSON.stringify(event) + '\n'));
      return event;
    } catch (err) {
      if (err instanceof AgentError) throw err;
      if (isStoreError(err, 'PM_ERR_STORE_FULL'))
        throw new AgentError('PM_ERR_STORAGE_FULL', `${this.backend.location}: ${err.message}`, {
          cause: err,
        });
      throw new AgentError('PM_ERR_STORAGE', `crash ${draft.crash.id}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** Puts the core and returns the draft completed with where and how it is stored. */
  private async storeDump(draft: CrashEvent, key: string, core: SpooledCore): Promise<CrashEvent> {
    const stored = await this.backend.put(key, zstdChunksOf(core));
    return {
      ...draft,
      dump: { ...draft.dump, path: key, stored_bytes: stored.size, compression: 'zstd' },
    };
  }

  private async alreadyStored(
    draft: CrashEvent,
    keys: Keys,
    withDump: boolean,
  ): Promise<CrashEvent | undefined> {
    let stored: unknown;
    try {
      stored = JSON.parse((await readBytes(this.backend, keys.event))?.toString('utf8') ?? '');
    } catch {
      // Absent, or unreadable: written again.
      return undefined;
    }
    const checked = validateCrashEvent(stored);
    if (!checked.ok) return undefined;
    const prior = checked.value;
    if (prior.crash.id !== draft.crash.id || prior.dump.sha256 !== draft.dump.sha256) return undefined;
    // Stored without its dump (over quota): that decision may be announced already; it stands.
    if (!withDump || prior.dump.path === undefined) return prior;
    try {
      return (await this.backend.stat(keys.dump)).size === prior.dump.stored_bytes ? prior : undefined;
    } catch {
      return undefined;
    }
  }

  /** Why the namespace cannot take `needed` more bytes of dumps, or undefined when it can. */
  private async overQuota(namespace: string, needed: number): Promise<string | undefined> {
    const quota = this.params.namespaceQuotaBytes ?? 0;
    const used = await this.backend.usage(namespace);
    return used + needed > quota
      ? `namespace ${namespace} is at its dump quota: ${used} of ${quota} bytes used, this dump needs ${needed}`
      : undefined;
  }

  private async checkFreeSpace(needed: number): Promise<void> {
    if (this.params.minFreeBytes === 0) return;
    const free = await this.backend.freeBytes();
    if (free !== undefined && free - needed < this.params.minFreeBytes) {
      throw new AgentError(
        'PM_ERR_STORAGE_FULL',
        `${this.backend.location} has ${free} bytes free, ${needed} needed and ${this.params.minFreeBytes} kept free`,
      );
    }
  }
}

/** The draft with its dump set aside for the reason given. */
function skipped(draft: CrashEvent, reason: string): CrashEvent {
  return {
    ...draft,
    dump: {
      ...draft.dump,
      status: 'skipped',
      reason: [draft.dump.reason, reason].filter(Boolean).join('; '),
    },
  };
}
