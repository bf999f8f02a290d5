import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type Dirent } from 'node:fs';
import {
  constants,
  copyFile,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  statfs,
} from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createZstdCompress } from 'node:zlib';
import { dirname, join } from 'node:path';
import type { CrashEvent } from '@podmortem/contract';
import {
  crashDirSegments,
  DUMP_SUFFIX,
  dumpRelPath,
  eventRelPath,
  validateCrashEvent,
} from '@podmortem/contract';
import { fsyncDir } from '../spool-entry.ts';
import { AgentError } from './errors.ts';

// Keeps a crash on the storage root (the NFS volume): <ns>/<pod-uid>/<container>/<id>.core.zst,
// then <id>.json. Each is written under a temporary dot-name in its final folder, fsynced and
// renamed, so a reader sees a whole file or none; the event goes last, so a stored event means
// its dump is complete. Storing again is harmless: an event already there for the same crash and
// the same core is left alone. A namespace over its dump quota gets its event stored without the
// dump (status skipped, with the reason): one crash-looping tenant cannot fill the volume for all.

export interface StorageWriterParams {
  root: string;
  /** Free bytes to leave on the volume; below them (counting the new dump) nothing is written. */
  minFreeBytes: number;
  /**
   * Bytes of dumps one namespace may hold on the volume; 0 or absent = no quota. Counted from the volume
   * itself, so it holds across agents; this agent's own stores into a namespace are serialised,
   * but two nodes storing into one namespace at the same instant may overshoot by one dump.
   */
  namespaceQuotaBytes?: number;
}

export interface SpooledCore {
  path: string;
  /** What the spool file holds; the stored dump is always zstd, as its name says. */
  compression: 'zstd' | 'none';
}

const FILE_MODE = 0o640;
const DIR_MODE = 0o750;

function isFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export class StorageWriter {
  private readonly params: StorageWriterParams;
  /** The last store into each namespace, so quota checks there run one at a time. */
  private readonly namespaceTails = new Map<string, Promise<unknown>>();

  constructor(params: StorageWriterParams) {
    this.params = params;
  }

  get root(): string {
    return this.params.root;
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
    let dir: string, eventPath: string, dumpRel: string;
    try {
      dir = join(this.params.root, ...crashDirSegments(draft));
      eventPath = join(this.params.root, eventRelPath(draft));
      dumpRel = dumpRelPath(draft);
    } catch (err) {
      throw new AgentError('PM_ERR_EVENT_INVALID', (err as Error).message, { cause: err });
    }
    const dumpPath = join(this.params.root, dumpRel);
    try {
      const prior = await this.alreadyStored(draft, eventPath, core ? dumpPath : undefined);
      if (prior) return prior;
      const needed = core ? (await stat(core.path)).size : 0;
      const overQuota =
        core && quotaNamespace !== undefined ? await this.overQuota(quotaNamespace, needed) : undefined;
      const kept = overQuota ? undefined : core;
      let event: CrashEvent = overQuota
        ? {
            ...draft,
            dump: {
              ...draft.dump,
              status: 'skipped',
              reason: [draft.dump.reason, overQuota].filter(Boolean).join('; '),
            },
          }
        : draft;
      await this.checkFreeSpace(kept ? needed : 0);
      await this.makeDir(dir);
      if (kept) {
        await this.writeAtomically(dir, dumpPath, (tmp) =>
          kept.compression === 'zstd'
            ? copyFile(kept.path, tmp, constants.COPYFILE_EXCL)
            : pipeline(
                createReadStream(kept.path),
                createZstdCompress(),
                createWriteStream(tmp, { flags: 'wx', mode: FILE_MODE }),
              ),
        );
        const storedBytes = (await stat(dumpPath)).size;
        event = {
          ...draft,
          dump: { ...draft.dump, path: dumpRel, stored_bytes: storedBytes, compression: 'zstd' },
        };
      }
      const json = Buffer.from(JSON.stringify(event) + '\n');
      await this.writeAtomically(dir, eventPath, async (tmp) => {
        const file = await open(tmp, 'wx', FILE_MODE);
        try {
          await file.writeFile(json);
        } finally {
          await file.close();
        }
      });
      await fsyncDir(dir);
      return event;
    } catch (err) {
      if (err instanceof AgentError) throw err;
      if (isFull(err))
        throw new AgentError('PM_ERR_STORAGE_FULL', `${this.params.root}: ${(err as Error).message}`, {
          cause: err,
        });
      throw new AgentError('PM_ERR_STORAGE', `crash ${draft.crash.id}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private async alreadyStored(
    draft: CrashEvent,
    eventPath: string,
    dumpPath: string | undefined,
  ): Promise<CrashEvent | undefined> {
    let stored: unknown;
    try {
      stored = JSON.parse(await readFile(eventPath, 'utf8'));
    } catch {
      // Absent, or unreadable: written again.
      return undefined;
    }
    const checked = validateCrashEvent(stored);
    if (!checked.ok) return undefined;
    const prior = checked.value;
    if (prior.crash.id !== draft.crash.id || prior.dump.sha256 !== draft.dump.sha256) return undefined;
    // Stored without its dump (over quota): that decision may be announced already; it stands.
    if (!dumpPath || prior.dump.path === undefined) return prior;
    try {
      return (await stat(dumpPath)).size === prior.dump.stored_bytes ? prior : undefined;
    } catch {
      return undefined;
    }
  }

  /** Why the namespace cannot take `needed` more bytes of dumps, or undefined when it can. */
  private async overQuota(namespace: string, needed: number): Promise<string | undefined> {
    const quota = this.params.namespaceQuotaBytes ?? 0;
    let used = 0;
    let entries: Dirent[] = [];
    try {
      entries = await readdir(join(this.params.root, namespace), { recursive: true, withFileTypes: true });
    } catch (err) {
      // A namespace with no folder yet holds nothing.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const e of entries) {
      if (!e.isFile() || !e.name.endsWith(DUMP_SUFFIX)) continue;
      try {
        used += (await stat(join(e.parentPath, e.name))).size;
      } catch {
        // Removed meanwhile (retention): it no longer counts.
      }
    }
    return used + needed > quota
      ? `namespace ${namespace} is at its dump quota: ${used} of ${quota} bytes used, this dump needs ${needed}`
      : undefined;
  }

  private async checkFreeSpace(needed: number): Promise<void> {
    if (this.params.minFreeBytes === 0) return;
    const fs = await statfs(this.params.root);
    const free = fs.bavail * fs.bsize;
    if (free - needed < this.params.minFreeBytes) {
      throw new AgentError(
        'PM_ERR_STORAGE_FULL',
        `${this.params.root} has ${free} bytes free, ${needed} needed and ${this.params.minFreeBytes} kept free`,
      );
    }
  }

  private async makeDir(dir: string): Promise<void> {
    const first = await mkdir(dir, { recursive: true, mode: DIR_MODE });
    if (first === undefined) return;
    // New folders are durable only once their parents are synced too.
    for (let d = dir; d.length >= first.length; d = dirname(d)) await fsyncDir(dirname(d));
  }

  private async writeAtomically(
    dir: string,
    finalPath: string,
    write: (tmp: string) => Promise<void>,
  ): Promise<void> {
    const tmp = join(dir, `.tmp-${randomBytes(6).toString('hex')}-${finalPath.slice(dir.length + 1)}`);
    try {
      await write(tmp);
      const file = await open(tmp, 'r+');
      try {
        await file.chmod(FILE_MODE);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, finalPath);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}
