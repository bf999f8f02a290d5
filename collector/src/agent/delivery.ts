import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { isDnsLabel, type CrashEvent } from '@podmortem/contract';
import { isRetriable, messageOf, retry } from '@podmortem/contract/runtime';
import { captureDecision, podDecides, type CaptureDecision, type CaptureMarks } from './capture-policy.ts';
import { identityFromProcCgroup } from './cgroup.ts';
import { buildCrashEvent, type Owner } from './crash-event.ts';
import { readCoreNotes, type CoreNotes } from './elf-notes.ts';
import { AgentError, errorCode } from './errors.ts';
import type { ModuleWriter } from './module-writer.ts';
import type { PodLookup } from './pod-info.ts';
import type { Sink } from './sink.ts';
import type { Spool, SpoolEntry } from './spool.ts';
import type { SpoolMeta } from '../spool-entry.ts';
import type { StorageWriter } from './storage-writer.ts';
import type { DeliveryStep, Telemetry } from './telemetry.ts';

// One spool entry's way out: prepare the event (pod, core notes), store it, announce it to every
// sink, and only then delete the entry. Each step is retried with backoff until it succeeds (or
// the agent stops); what is done is saved with the entry, so a retry — or an agent restarted
// after a kill — resumes at the first step not done, with the same event. An entry that can
// never be delivered (malformed, an event that cannot be valid) is moved aside with its reason,
// and counted: never deleted unseen.

export interface PodSource {
  lookup(identity: NonNullable<ReturnType<typeof identityFromProcCgroup>>): PodLookup;
  refresh(): Promise<void>;
  /** A namespace's podmortem.io/capture marks; throws a retriable error while they cannot be read. */
  namespaceCapture(name: string): Promise<CaptureMarks | undefined>;
}

export interface DeliveryParams {
  spool: Spool;
  nodeName: string;
  storage: Pick<StorageWriter, 'store'>;
  /** Stores the crash's captured modules by build id, before its event. */
  modules: Pick<ModuleWriter, 'storeModules'>;
  /** Every crash is announced to each; their names must differ. */
  sinks: readonly Sink[];
  pods: PodSource;
  telemetry: Telemetry;
  logger: Logger;
  retryInitialMs: number;
  retryMaxMs: number;
  /** How long after the crash an unknown container's pod is waited for. */
  podWaitMs: number;
  /** Whether a dump is kept when neither its pod nor its namespace says (capture-policy.ts). */
  captureDefault: boolean;
}

export type DeliveryOutcome = 'delivered' | 'rejected' | 'gone';

export class Delivery {
  private readonly p: DeliveryParams;

  constructor(params: DeliveryParams) {
    const names = params.sinks.map((s) => s.name);
    const twice = names.find((name, i) => names.indexOf(name) !== i);
    // One name, one acknowledgement: the second sink would be taken as announced by the first.
    if (twice !== undefined) throw new Error(`two sinks are named ${twice}`);
    this.p = params;
  }

  /** Delivers one entry; resolves when it is gone from the spool (or the signal aborted). */
  async deliver(crashId: string, signal: AbortSignal): Promise<DeliveryOutcome> {
    const log = this.p.logger.child({ crashId });
    const entry = this.p.spool.entry(crashId);
    let read: SpoolMeta | undefined;
    try {
      read = await entry.readMeta();
    } catch (err) {
      if (err instanceof AgentError) return this.reject(entry, err, log);
      throw err;
    }
    if (!read) return 'gone';
    const meta = read;
    try {
      const state = await entry.readState();
      if (!state.event) {
        state.event = await this.step('prepare', log, signal, () => this.prepare(entry, meta, log));
        await entry.saveState(state);
      }
      if (!state.stored) {
        const draft = state.event;
        state.event = await this.step('storage', log, signal, () => this.store(entry, meta, draft));
        state.stored = true;
        await entry.saveState(state);
      }
      const event = state.event;
      // All sinks at once; each acknowledgement is saved as it comes, one save after the other.
      let saving = Promise.resolve();
      try {
        await Promise.all(
          this.p.sinks
            .filter((sink) => state.announced[sink.name] !== true)
            .map((sink) =>
              this.step(sink.name, log, signal, () => sink.announce(event)).then(() => {
                state.announced[sink.name] = true;
                saving = saving.then(() => entry.saveState(state));
                return saving;
              }),
            ),
        );
      } catch (err) {
        // One sink failed for good (or the agent stops): what the others acknowledged is on disk
        // before the entry is handed back, so whoever takes it next does not announce it again.
        await saving.catch(() => undefined);
        throw err;
      }
      await this.step('spool', log, signal, () => entry.remove());
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
      return this.reject(entry, err, log);
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

  private async prepare(entry: SpoolEntry, meta: SpoolMeta, log: Logger): Promise<CrashEvent> {
    const owner = await this.owner(meta, log);
    if (owner.kind !== 'pod' && owner.why)
      log.info({ owner: owner.kind, why: owner.why }, 'crash recorded without a pod');
    let notes: CoreNotes | undefined;
    let notesError: string | undefined;
    const options = meta.kernel.exePath ? { exePath: meta.kernel.exePath } : {};
    if (meta.dump.storedBytes > 0) {
      try {
        notes = await readCoreNotes(entry.openCore(meta), options);
      } catch (err) {
        // Garbage, an empty or a cut core: recorded in dump.reason, never retried.
        notesError = messageOf(err);
      }
    }
    if (!notes && meta.coreHead) {
      // No core kept, or one cut inside its notes: the handler kept the notes themselves.
      try {
        notes = await readCoreNotes(Readable.from([Buffer.from(meta.coreHead, 'base64')]), options);
        notesError = undefined;
      } catch (err) {
        notesError ??= messageOf(err);
      }
    }
    const capture = await this.capture(owner, log);
    const input = {
      meta,
      owner,
      nodeName: this.p.nodeName,
      ...(capture.capture ? {} : { captureDisabled: capture.reason ?? 'capture disabled' }),
    };
    return buildCrashEvent(notes ? { ...input, notes } : notesError ? { ...input, notesError } : input);
  }

  /**
   * Whether the crash's dump is kept, as its pod and namespace ask. The namespace is read only when
   * the pod does not decide; a process of no known pod gets the collector's default.
   */
  private async capture(owner: Owner, log: Logger): Promise<CaptureDecision> {
    if (owner.kind !== 'pod') return captureDecision(undefined, undefined, this.p.captureDefault);
    const { pod } = owner;
    // A namespace Kubernetes would refuse cannot be asked for (the event is recorded podless anyway).
    const namespace =
      podDecides(pod.capture) || !isDnsLabel(pod.namespace)
        ? undefined
        : { name: pod.namespace, marks: await this.p.pods.namespaceCapture(pod.namespace) };
    const decision = captureDecision(
      { name: `${pod.namespace}/${pod.name}`, marks: pod.capture },
      namespace,
      this.p.captureDefault,
    );
    for (const m of decision.ignored) {
      log.warn(
        { namespace: pod.namespace, pod: pod.name, on: `${m.object} ${m.kind}`, value: m.value },
        `podmortem.io/capture ignored: ${JSON.stringify(m.value)} on ${m.object} ${m.name} is neither "true" nor "false"`,
      );
    }
    return decision;
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

  private async store(entry: SpoolEntry, meta: SpoolMeta, prepared: CrashEvent): Promise<CrashEvent> {
    // Modules first: the event stored says which of them the store holds.
    const draft = await this.p.modules.storeModules(meta, prepared);
    // A dump set aside (its pod or namespace asked for none) is not stored; the spool entry goes
    // with the rest once the event is announced.
    if (meta.dump.storedBytes === 0 || draft.dump.status === 'skipped')
      return this.p.storage.store(draft, undefined);
    const core = await entry.coreFile(meta);
    if (core) return this.p.storage.store(draft, core);
    // The handler said it kept a dump, and it is not there: the event is all there is to store.
    const reason = [draft.dump.reason, 'the spooled core is missing'].filter(Boolean).join('; ');
    const failed = { ...draft, dump: { ...draft.dump, status: 'failed' as const, reason } };
    return this.p.storage.store(failed, undefined);
  }

  private async reject(entry: SpoolEntry, err: unknown, log: Logger): Promise<DeliveryOutcome> {
    const code = errorCode(err);
    this.p.telemetry.rejected.inc({ code });
    log.error(
      { code, err: messageOf(err), retriable: isRetriable(err) },
      'crash cannot be delivered; moved to the rejected folder',
    );
    await entry.reject({ code, message: messageOf(err) });
    return 'rejected';
  }
}
