import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { validateCrashEvent, type CrashEvent } from '@podmortem/contract';
import { isRetriable, messageOf, retry } from '@podmortem/contract/runtime';
import { identityFromProcCgroup } from './cgroup.ts';
import { buildCrashEvent, type Owner } from './crash-event.ts';
import { readCoreNotes, type CoreNotes } from './elf-notes.ts';
import { AgentError, errorCode } from './errors.ts';
import type { PodLookup } from './pod-resolver.ts';
import {
  fsyncDir,
  openSpoolCore,
  removeSpoolEntry,
  spoolPaths,
  writeJsonAtomically,
  type SpoolMeta,
} from '../spool-entry.ts';
import type { StorageWriter } from './storage-writer.ts';
import type { DeliveryStep, Telemetry } from './telemetry.ts';

// One spool entry's way out: prepare the event (pod, core notes), store it, announce it over OTLP
// and Kafka, and only then delete the entry. Each step is retried with backoff until it succeeds
// (or the agent stops); what is done is written beside the entry (<id>.agent.json), so a retry —
// or an agent restarted after a kill — resumes at the first step not done, with the same event.
// An entry that can never be delivered (malformed, an event that cannot be valid) is moved to the
// spool's rejected/ folder with its reason, and counted: never deleted unseen.

export const AGENT_STATE_SUFFIX = '.agent.json';
export const REJECTED_DIR = 'rejected';

export interface DeliveryState {
  event?: CrashEvent;
  stored?: boolean;
  otlp?: boolean;
  kafka?: boolean;
}

export interface PodSource {
  lookup(identity: NonNullable<ReturnType<typeof identityFromProcCgroup>>): PodLookup;
  refresh(): Promise<void>;
}

export interface Announcer {
  emit(event: CrashEvent): Promise<void>;
}

export interface DeliveryParams {
  spoolDir: string;
  nodeName: string;
  storage: StorageWriter;
  otlp: Announcer;
  kafka: Announcer;
  pods: PodSource;
  telemetry: Telemetry;
  logger: Logger;
  retryInitialMs: number;
  retryMaxMs: number;
  /** How long after the crash an unknown container's pod is waited for. */
  podWaitMs: number;
}

export type DeliveryOutcome = 'delivered' | 'rejected' | 'gone';

export function agentStatePath(spoolDir: string, crashId: string): string {
  return join(spoolDir, crashId + AGENT_STATE_SUFFIX);
}

/** Checks the shape the agent relies on; the handler wrote it, but a spool is a disk. */
export function parseSpoolMeta(text: string, crashId: string): SpoolMeta {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new AgentError('PM_ERR_SPOOL_ENTRY_INVALID', `meta of ${crashId} is not JSON: ${messageOf(err)}`);
  }
  const m = value as Record<keyof SpoolMeta, unknown> | null;
  const problems: string[] = [];
  if (typeof m !== 'object' || m === null || Array.isArray(m)) problems.push('not an object');
  else {
    if (m.version !== 1) problems.push(`version ${JSON.stringify(m.version)} is not 1`);
    if (m.crashId !== crashId)
      problems.push(`crashId ${JSON.stringify(m.crashId)} is not the file's ${crashId}`);
    if (typeof m.timestamp !== 'string' || Number.isNaN(Date.parse(m.timestamp)))
      problems.push('timestamp is not a date');
    if (typeof m.kernel !== 'object' || m.kernel === null) problems.push('kernel facts missing');
    const d = m.dump as Record<keyof SpoolMeta['dump'], unknown> | null;
    if (typeof d !== 'object' || d === null) problems.push('dump missing');
    else {
      if (typeof d.status !== 'string' || !['stored', 'skipped', 'truncated', 'failed'].includes(d.status))
        problems.push(`dump.status ${JSON.stringify(d.status)}`);
      if (typeof d.storedBytes !== 'number' || d.storedBytes < 0)
        problems.push('dump.storedBytes is not a size');
      if (typeof d.sizeBytes !== 'number' || d.sizeBytes < 0) problems.push('dump.sizeBytes is not a size');
    }
    if (m.proc !== undefined) {
      const proc = m.proc as Record<string, unknown> | null;
      if (
        typeof proc !== 'object' ||
        proc === null ||
        typeof proc.cgroup !== 'string' ||
        !Array.isArray(proc.cmdline)
      )
        problems.push('proc is malformed');
    }
  }
  if (problems.length > 0) {
    throw new AgentError('PM_ERR_SPOOL_ENTRY_INVALID', `meta of ${crashId}: ${problems.join('; ')}`);
  }
  return value as SpoolMeta;
}

export class Delivery {
  private readonly p: DeliveryParams;

  constructor(params: DeliveryParams) {
    this.p = params;
  }

  /** Delivers one entry; resolves when it is gone from the spool (or the signal aborted). */
  async deliver(crashId: string, signal: AbortSignal): Promise<DeliveryOutcome> {
    const log = this.p.logger.child({ crashId });
    let meta: SpoolMeta;
    try {
      meta = parseSpoolMeta(await readFile(spoolPaths(this.p.spoolDir, crashId).meta, 'utf8'), crashId);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
      if (err instanceof AgentError) return this.reject(crashId, err, log);
      throw err;
    }
    try {
      const state = await this.readState(crashId);
      if (!state.event) {
        state.event = await this.step('prepare', log, signal, () => this.prepare(meta, log));
        await this.saveState(crashId, state);
      }
      if (!state.stored) {
        const draft = state.event;
        state.event = await this.step('storage', log, signal, () => this.store(meta, draft));
        state.stored = true;
        await this.saveState(crashId, state);
      }
      const event = state.event;
      // Both announcements at once; their state saves one after the other.
      let saving = Promise.resolve();
      const saved = () => (saving = saving.then(() => this.saveState(crashId, state)));
      await Promise.all([
        state.otlp ||
          this.step('otlp', log, signal, () => this.p.otlp.emit(event)).then(() => {
            state.otlp = true;
            return saved();
          }),
        state.kafka ||
          this.step('kafka', log, signal, () => this.p.kafka.emit(event)).then(() => {
            state.kafka = true;
            return saved();
          }),
      ]);
      await this.step('spool', log, signal, async () => {
        await removeSpoolEntry(this.p.spoolDir, crashId);
        await rm(agentStatePath(this.p.spoolDir, crashId), { force: true });
      });
      this.p.telemetry.crashes.inc({
        namespace: event.kubernetes?.namespace ?? '_host',
        signal: event.signal.name,
        dump_status: event.dump.status,
      });
      log.info(
        {
          namespace: event.kubernetes?.namespace,
          pod: event.kubernetes?.pod.name,
          container: event.kubernetes?.container.name,
          signal: event.signal.name,
          dumpStatus: event.dump.status,
          path: event.dump.path,
        },
        'crash delivered',
      );
      return 'delivered';
    } catch (err) {
      // Stopping, or a passing failure outside the retried steps (the spool's own disk): the entry
      // stays for the next sweep. Only what can never succeed is set aside.
      if (signal.aborted || isRetriable(err)) throw err;
      return this.reject(crashId, err, log);
    }
  }

  private step<T>(step: DeliveryStep, log: Logger, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    return retry(`${step} of a crash`, fn, {
      retries: Infinity,
      initialMs: this.p.retryInitialMs,
      maxMs: this.p.retryMaxMs,
      signal,
      onRetry: (err, attempt, delayMs) => {
        const code = errorCode(err);
        this.p.telemetry.deliveryFailures.inc({ step, code });
        const level =
          code === 'PM_ERR_POD_PENDING' ? 'debug' : attempt === 1 || attempt % 10 === 0 ? 'warn' : 'debug';
        log[level]({ step, code, attempt, delayMs, err: messageOf(err) }, 'delivery step failed; retrying');
      },
    });
  }

  private async prepare(meta: SpoolMeta, log: Logger): Promise<CrashEvent> {
    const owner = await this.owner(meta, log);
    if (owner.kind !== 'pod' && owner.why)
      log.info({ owner: owner.kind, why: owner.why }, 'crash recorded without a pod');
    let notes: CoreNotes | undefined;
    let notesError: string | undefined;
    if (meta.dump.storedBytes > 0) {
      try {
        const options = meta.kernel.exePath ? { exePath: meta.kernel.exePath } : {};
        notes = await readCoreNotes(openSpoolCore(this.p.spoolDir, meta), options);
      } catch (err) {
        // Garbage, an empty or a cut core: recorded in dump.reason, never retried.
        notesError = messageOf(err);
      }
    }
    const input = { meta, owner, nodeName: this.p.nodeName };
    return buildCrashEvent(notes ? { ...input, notes } : notesError ? { ...input, notesError } : input);
  }

  /** The pod (or container, or host) of the crashed process. Retriable while it cannot be known yet. */
  private async owner(meta: SpoolMeta, log: Logger): Promise<Owner> {
    if (!meta.proc) return { kind: 'host', why: `no /proc facts: ${meta.procError ?? 'none recorded'}` };
    const identity = identityFromProcCgroup(meta.proc.cgroup);
    if (!identity) return { kind: 'host' };
    const found = (lookup: PodLookup): Owner | undefined => {
      if (lookup.kind === 'found')
        return { kind: 'pod', identity, pod: lookup.pod, container: lookup.container };
      // A pod of a single container: the container id must be that one's.
      const only =
        lookup.kind === 'pod-only' && lookup.pod.specContainers.length === 1
          ? lookup.pod.specContainers[0]
          : undefined;
      if (lookup.kind === 'pod-only' && only) {
        const container = {
          name: only.name,
          runtime: identity.runtime,
          ...(only.image ? { image: only.image } : {}),
        };
        return { kind: 'pod', identity, pod: lookup.pod, container };
      }
      return undefined;
    };
    const cached = found(this.p.pods.lookup(identity));
    if (cached) return cached;
    await this.p.pods.refresh();
    const fresh = found(this.p.pods.lookup(identity));
    if (fresh) return fresh;
    const age = Date.now() - Date.parse(meta.timestamp);
    if (age < this.p.podWaitMs) {
      throw new AgentError(
        'PM_ERR_POD_PENDING',
        `container ${identity.containerId} (pod uid ${identity.podUid ?? 'not in the cgroup'})`,
      );
    }
    this.p.telemetry.unresolved.inc();
    const why = `container ${identity.containerId} of pod uid ${identity.podUid ?? '(not in the cgroup)'} is not among the pods of node ${this.p.nodeName}`;
    log.warn(
      { containerId: identity.containerId, podUid: identity.podUid, cgroup: identity.path },
      'crash of an unknown pod: delivered with the cgroup facts',
    );
    return { kind: 'container', identity, why };
  }

  private async store(meta: SpoolMeta, draft: CrashEvent): Promise<CrashEvent> {
    if (meta.dump.storedBytes === 0) return this.p.storage.store(draft, undefined);
    const path = spoolPaths(this.p.spoolDir, meta.crashId).core;
    try {
      await stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The handler said it kept a dump, and it is not there: the event is all there is to store.
      const reason = [draft.dump.reason, 'the spooled core is missing'].filter(Boolean).join('; ');
      const failed = { ...draft, dump: { ...draft.dump, status: 'failed' as const, reason } };
      return this.p.storage.store(failed, undefined);
    }
    return this.p.storage.store(draft, { path, compression: meta.dump.compression });
  }

  private async readState(crashId: string): Promise<DeliveryState> {
    let text: string;
    try {
      text = await readFile(agentStatePath(this.p.spoolDir, crashId), 'utf8');
    } catch {
      return {};
    }
    try {
      const state = JSON.parse(text) as DeliveryState;
      if (state.event && !validateCrashEvent(state.event).ok) return {};
      return state;
    } catch {
      // Cut short by a crash of the agent: start over (every step is idempotent).
      return {};
    }
  }

  private saveState(crashId: string, state: DeliveryState): Promise<void> {
    return writeJsonAtomically(this.p.spoolDir, agentStatePath(this.p.spoolDir, crashId), state);
  }

  private async reject(crashId: string, err: unknown, log: Logger): Promise<DeliveryOutcome> {
    const code = errorCode(err);
    this.p.telemetry.rejected.inc({ code });
    log.error(
      { code, err: messageOf(err), retriable: isRetriable(err) },
      'crash cannot be delivered; moved to the rejected folder',
    );
    const dir = join(this.p.spoolDir, REJECTED_DIR);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const paths = spoolPaths(this.p.spoolDir, crashId);
    await writeJsonAtomically(dir, join(dir, crashId + '.reason.json'), {
      code,
      message: messageOf(err),
      at: new Date().toISOString(),
    });
    // The meta first: without it the rest is no entry, whatever happens next.
    for (const from of [paths.meta, agentStatePath(this.p.spoolDir, crashId), paths.core]) {
      try {
        await stat(from);
        await rename(from, join(dir, from.slice(this.p.spoolDir.length + 1)));
      } catch (moveErr) {
        if ((moveErr as NodeJS.ErrnoException).code !== 'ENOENT') throw moveErr;
      }
    }
    await fsyncDir(this.p.spoolDir);
    return 'rejected';
  }
}
