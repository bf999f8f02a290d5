import { setTimeout as sleep } from 'node:timers/promises';
import {
  CoreV1Api,
  Watch,
  type KubeConfig,
  type V1ContainerStatus,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffDelay, beforeDeadline, messageOf, type Component } from '@podmortem/contract/runtime';
import { captureMarksOf, type CaptureMarks } from './capture-policy.ts';
import type { CgroupIdentity, ContainerRuntime } from './cgroup.ts';
import { AgentError } from './errors.ts';
import {
  podRecord,
  readPodState,
  removeStaleTemporaries,
  writePodState,
  type PodState,
} from './pod-state-file.ts';
import type { PodContainer, PodInfo, PodLookup } from './pod-info.ts';

// This node's pods, kept by a list + watch of the Kubernetes API (fieldSelector
// spec.nodeName=<node>), indexed by every container id the kubelet ever reported for them — the
// running one and the last terminated one, so the container that just crashed and was restarted
// still maps to its pod. Deleted pods stay as tombstones for a while: a pod can be gone by the
// time its crash is delivered, and the API cannot find a deleted pod by uid.
//
// With a state file, what is known survives the agent: it is written after changes (at most once
// per stateWriteDelayMs, and on shutdown) and loaded on start. A pod from the file that the first
// fresh list lacks was deleted while no agent watched: it becomes a tombstone dated when it was
// last known alive, so a crash that waited in the spool across the restart still finds its pod.

export interface PodResolverParams {
  kubeConfig: KubeConfig;
  nodeName: string;
  tombstoneMs: number;
  logger: Logger;
  /** Called with true once listed and watching, false while the API is unreachable. */
  onSynced?: (synced: boolean) => void;
  /** A fresh list is not asked for again within this time. */
  refreshMinIntervalMs?: number;
  /** Where what is known of the pods is kept across restarts; without it, in memory only. */
  stateFile?: string;
  /** Called when the state file cannot be read (the resolver starts without it) or written. */
  onStateFileError?: (op: 'load' | 'save') => void;
  /** Changes reach the state file at most this often (default 1000 ms). */
  stateWriteDelayMs?: number;
  /**
   * While synced, the state file is rewritten this often even when nothing changed (default
   * 60 000 ms): it says until when its pods were alive, which dates the tombstones of pods deleted
   * while no agent ran.
   */
  stateRefreshMs?: number;
  /** A namespace's capture marks are asked for again after this long (default 30 000 ms). */
  namespaceCacheMs?: number;
  /** A namespace look-up not answered within this time fails, and is tried again (default 10 000 ms). */
  namespaceTimeoutMs?: number;
}

const RUNTIME_PREFIXES: Record<string, ContainerRuntime> = {
  containerd: 'containerd',
  'cri-o': 'cri-o',
  docker: 'docker',
};

/** `containerd://<id>` → [id, runtime]. */
export function parseContainerId(value: string | undefined): [string, ContainerRuntime] | undefined {
  const m = /^([a-z0-9-]+):\/\/([0-9a-f]{12,64})$/.exec(value ?? '');
  if (!m?.[1] || !m[2]) return undefined;
  return [m[2], RUNTIME_PREFIXES[m[1]] ?? 'unknown'];
}

/** The digest of an imageID (`repo@sha256:…`, `docker-pullable://repo@sha256:…`, `sha256:…`). */
export function imageDigest(imageID: string | undefined): string | undefined {
  return /(sha256:[0-9a-f]{64})$/.exec(imageID ?? '')?.[1];
}

function statusesOf(pod: V1Pod): V1ContainerStatus[] {
  const s = pod.status;
  return [
    ...(s?.initContainerStatuses ?? []),
    ...(s?.containerStatuses ?? []),
    ...(s?.ephemeralContainerStatuses ?? []),
  ];
}

/** Merges a pod object into what is known of it (container ids accumulate). */
export function podInfoOf(pod: V1Pod, previous: PodInfo | undefined): PodInfo | undefined {
  const meta = pod.metadata;
  if (!meta?.uid || !meta.name || !meta.namespace) return undefined;
  const specContainers = [
    ...(pod.spec?.initContainers ?? []),
    ...(pod.spec?.containers ?? []),
    ...(pod.spec?.ephemeralContainers ?? []),
  ].map((c) => (c.image ? { name: c.name, image: c.image } : { name: c.name }));
  const specImage = new Map(specContainers.map((c) => [c.name, c.image]));
  const containers = new Map(previous?.uid === meta.uid ? previous.containers : []);
  for (const status of statusesOf(pod)) {
    const image = specImage.get(status.name) ?? (status.image || undefined);
    const digest = imageDigest(status.imageID);
    for (const id of [status.containerID, status.lastState?.terminated?.containerID]) {
      const parsed = parseContainerId(id);
      if (!parsed) continue;
      const c: PodContainer = { name: status.name, runtime: parsed[1] };
      if (image) c.image = image;
      // A restarted container may run a newer image: the digest is the current one's only.
      if (digest && id === status.containerID) c.imageDigest = digest;
      else {
        const known = containers.get(parsed[0])?.imageDigest;
        if (known) c.imageDigest = known;
      }
      containers.set(parsed[0], c);
    }
  }
  const owner = meta.ownerReferences?.find((o) => o.controller) ?? meta.ownerReferences?.[0];
  const info: PodInfo = {
    namespace: meta.namespace,
    name: meta.name,
    uid: meta.uid,
    labels: { ...(meta.labels ?? {}) },
    containers,
    specContainers,
  };
  if (owner) info.owner = { kind: owner.kind, name: owner.name };
  const capture = captureMarksOf(meta);
  if (capture) info.capture = capture;
  return info;
}

export class PodResolver implements Component {
  readonly name = 'pod-resolver';
  private readonly params: PodResolverParams;
  private readonly api: CoreV1Api;
  private readonly pods = new Map<string, PodInfo>();
  private readonly byContainer = new Map<string, string>();
  private abort: AbortController | undefined;
  private watchAbort: AbortController | undefined;
  private starting: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  private syncedNow = false;
  private refreshing: Promise<void> | undefined;
  private lastRefresh = 0;
  /** Until when the pods not marked deleted were known to be alive (the cache was synced). */
  private aliveAt: number | undefined;
  /** Pods loaded from the state file as alive, not listed since: uid → their deletedAt if gone. */
  private readonly unconfirmed = new Map<string, number>();
  private persisting = false;
  private writeTimer: NodeJS.Timeout | undefined;
  private writeDue = 0;
  private writing: Promise<void> = Promise.resolve();
  private writeFailing = false;
  /** Namespaces' capture marks by name, with when they were read; one entry per namespace asked for. */
  private readonly namespaces = new Map<string, { marks: CaptureMarks | undefined; at: number }>();
  private readonly namespaceReads = new Map<string, Promise<CaptureMarks | undefined>>();

  constructor(params: PodResolverParams) {
    this.params = params;
    this.api = params.kubeConfig.makeApiClient(CoreV1Api);
  }

  get synced(): boolean {
    return this.syncedNow;
  }

  get fieldSelector(): string {
    return `spec.nodeName=${this.params.nodeName}`;
  }

  /**
   * Loads the state file, then starts listing and watching; does not wait for the API (crashes
   * wait in the spool instead).
   */
  start(): Promise<void> {
    if (!this.starting) {
      const abort = new AbortController();
      this.abort = abort;
      this.starting = this.begin(abort.signal);
    }
    return this.starting;
  }

  async shutdown(deadline: number = Date.now() + 5000): Promise<void> {
    const starting = this.starting;
    this.abort?.abort();
    this.watchAbort?.abort();
    if (starting) await beforeDeadline(starting, deadline, undefined);
    if (this.loop) await beforeDeadline(this.loop, deadline, undefined);
    this.loop = undefined;
    clearTimeout(this.writeTimer);
    this.writeTimer = undefined;
    if (this.persisting) {
      this.persisting = false;
      // Before synced turns false: the pods were watched until now, the file says so.
      await beforeDeadline(this.persist(), deadline, undefined);
    }
    this.starting = undefined;
    this.setSynced(false);
  }

  private async begin(signal: AbortSignal): Promise<void> {
    await this.load();
    if (signal.aborted) return;
    this.persisting = this.params.stateFile !== undefined;
    this.loop = this.run(signal);
  }

  lookup(identity: CgroupIdentity): PodLookup {
    this.expireTombstones();
    const uid = this.byContainer.get(identity.containerId);
    const pod = uid === undefined ? undefined : this.pods.get(uid);
    const container = pod?.containers.get(identity.containerId);
    if (pod && container) return { kind: 'found', pod, container };
    const byUid = identity.podUid === undefined ? undefined : this.pods.get(identity.podUid);
    return byUid ? { kind: 'pod-only', pod: byUid } : { kind: 'unknown' };
  }

  /**
   * The podmortem.io/capture marks of a namespace (undefined: none, or the namespace is gone), read
   * from the API and kept for namespaceCacheMs. Namespaces are not watched: only crashes need them,
   * and only when their pod does not decide by itself. While the API cannot answer, the last marks
   * read stand; with none read yet, throws PM_ERR_KUBE_UNAVAILABLE (the crash waits in the spool).
   */
  async namespaceCapture(name: string): Promise<CaptureMarks | undefined> {
    const known = this.namespaces.get(name);
    if (known && Date.now() - known.at < (this.params.namespaceCacheMs ?? 30_000)) return known.marks;
    let reading = this.namespaceReads.get(name);
    if (!reading) {
      reading = this.fetchNamespaceMarks(name).finally(() => this.namespaceReads.delete(name));
      this.namespaceReads.set(name, reading);
    }
    try {
      return await reading;
    } catch (err) {
      if (!known) throw err;
      this.params.logger.warn(
        { namespace: name, err: messageOf(err) },
        'namespace not read; its capture setting as last read stands',
      );
      return known.marks;
    }
  }

  private async fetchNamespaceMarks(name: string): Promise<CaptureMarks | undefined> {
    const timeoutMs = this.params.namespaceTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    let marks: CaptureMarks | undefined;
    try {
      const ns = await Promise.race([this.api.readNamespace({ name }), timeout]);
      marks = captureMarksOf(ns.metadata ?? {});
    } catch (err) {
      // Gone (deleted while its crash waited): it asks for nothing, the default applies.
      if ((err as { code?: unknown }).code !== 404) {
        throw new AgentError('PM_ERR_KUBE_UNAVAILABLE', `reading namespace ${name}: ${messageOf(err)}`, {
          cause: err,
        });
      }
    } finally {
      clearTimeout(timer);
    }
    this.namespaces.set(name, { marks, at: Date.now() });
    return marks;
  }

  /**
   * Lists this node's pods afresh (the watch may lag a pod that just started). Throws
   * PM_ERR_KUBE_UNAVAILABLE when the API cannot be reached. Concurrent calls share one request,
   * and a list younger than refreshMinIntervalMs is not repeated.
   */
  async refresh(): Promise<void> {
    if (Date.now() - this.lastRefresh < (this.params.refreshMinIntervalMs ?? 1000)) return;
    this.refreshing ??= this.list()
      .then(() => undefined)
      .finally(() => (this.refreshing = undefined));
    await this.refreshing;
  }

  private async list(): Promise<string | undefined> {
    let list;
    try {
      list = await this.api.listPodForAllNamespaces({ fieldSelector: this.fieldSelector });
    } catch (err) {
      throw new AgentError(
        'PM_ERR_KUBE_UNAVAILABLE',
        `listing pods on ${this.params.nodeName}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const seen = new Set<string>();
    for (const pod of list.items) {
      const uid = this.upsert(pod);
      if (uid) seen.add(uid);
    }
    // Pods deleted while we were not watching (or while no agent ran, for those from the file).
    for (const [uid, pod] of this.pods) {
      if (seen.has(uid) || pod.deletedAt !== undefined) continue;
      pod.deletedAt = this.unconfirmed.get(uid) ?? Date.now();
      this.changed();
    }
    this.unconfirmed.clear();
    this.lastRefresh = Date.now();
    return list.metadata?.resourceVersion;
  }

  private upsert(pod: V1Pod): string | undefined {
    const uid = pod.metadata?.uid;
    const previous = uid === undefined ? undefined : this.pods.get(uid);
    const info = podInfoOf(pod, previous);
    if (!info) return undefined;
    this.pods.set(info.uid, info);
    for (const id of info.containers.keys()) this.byContainer.set(id, info.uid);
    // Most updates are status changes the file does not keep (readiness, restarts counted…).
    if (!previous || JSON.stringify(podRecord(previous)) !== JSON.stringify(podRecord(info))) this.changed();
    return info.uid;
  }

  private add(pod: PodInfo): void {
    this.pods.set(pod.uid, pod);
    for (const id of pod.containers.keys()) this.byContainer.set(id, pod.uid);
  }

  private expireTombstones(): void {
    const before = Date.now() - this.params.tombstoneMs;
    for (const [uid, pod] of this.pods) {
      if (pod.deletedAt === undefined || pod.deletedAt > before) continue;
      this.pods.delete(uid);
      for (const id of pod.containers.keys())
        if (this.byContainer.get(id) === uid) this.byContainer.delete(id);
    }
  }

  private setSynced(synced: boolean): void {
    if (synced === this.syncedNow) return;
    // The moment the cache stops being current is the last one its pods were known alive.
    if (!synced) this.aliveAt = Date.now();
    this.syncedNow = synced;
    this.params.onSynced?.(synced);
    // Listed afresh: the file learns soon that its pods are confirmed alive as of now.
    if (synced) this.changed();
  }

  /**
   * Takes in the state file's pods. A file that cannot be used is no reason not to run: the
   * resolver then starts empty, as without a file, and says so.
   */
  private async load(): Promise<void> {
    const file = this.params.stateFile;
    if (file === undefined) return;
    const logger = this.params.logger;
    const loadedAt = Date.now();
    await removeStaleTemporaries(file);
    let state: PodState | undefined;
    try {
      state = await readPodState(file);
    } catch (err) {
      logger.warn({ file, err: messageOf(err) }, 'pod cache file unusable; starting without it');
      this.params.onStateFileError?.('load');
      return;
    }
    if (!state) return;
    if (state.node !== this.params.nodeName) {
      logger.warn({ file, node: state.node }, "pod cache file is another node's; starting without it");
      this.params.onStateFileError?.('load');
      return;
    }
    // A clock set back must not make a tombstone outlive tombstoneMs by as much.
    const aliveAt = Math.min(state.aliveAt ?? loadedAt, loadedAt);
    const expired = loadedAt - this.params.tombstoneMs;
    let alive = 0;
    let tombstones = 0;
    for (const pod of state.pods) {
      if (this.pods.has(pod.uid)) continue;
      if (pod.deletedAt !== undefined) {
        pod.deletedAt = Math.min(pod.deletedAt, loadedAt);
        if (pod.deletedAt <= expired) continue;
        tombstones++;
      } else {
        this.unconfirmed.set(pod.uid, aliveAt);
        alive++;
      }
      this.add(pod);
    }
    if (state.aliveAt !== undefined) this.aliveAt = aliveAt;
    logger.info({ file, pods: alive, tombstones }, 'pod cache loaded');
  }

  /** Something the state file keeps changed: it is written soon, though not more than once per delay. */
  private changed(): void {
    this.scheduleWrite(this.params.stateWriteDelayMs ?? 1000);
  }

  private scheduleWrite(inMs: number): void {
    if (!this.persisting) return;
    const due = Date.now() + inMs;
    if (this.writeTimer && this.writeDue <= due) return;
    clearTimeout(this.writeTimer);
    this.writeDue = due;
    this.writeTimer = setTimeout(() => {
      this.writeTimer = undefined;
      void this.persist();
    }, inMs);
    // The watch keeps the agent running; a pending write alone must not.
    this.writeTimer.unref();
  }

  /** Writes the state file; writes run one after another, so an older snapshot never lands last. */
  private persist(): Promise<void> {
    const file = this.params.stateFile;
    if (file === undefined) return Promise.resolve();
    this.writing = this.writing.then(() => this.write(file));
    return this.writing;
  }

  private async write(file: string): Promise<void> {
    // Expired tombstones are dropped first: the file holds no more than memory does.
    this.expireTombstones();
    if (this.syncedNow) this.aliveAt = Date.now();
    const state =
      this.aliveAt === undefined
        ? { node: this.params.nodeName, pods: [...this.pods.values()] }
        : { node: this.params.nodeName, aliveAt: this.aliveAt, pods: [...this.pods.values()] };
    try {
      await writePodState(file, state);
      if (this.writeFailing) this.params.logger.info({ file }, 'pod cache file written again');
      this.writeFailing = false;
    } catch (err) {
      this.params.onStateFileError?.('save');
      // Once per failing stretch: a full disk would otherwise log at every change.
      if (!this.writeFailing) {
        this.params.logger.warn(
          { file, err: messageOf(err) },
          'pod cache file not written; pods deleted before a restart may not resolve after it',
        );
      }
      this.writeFailing = true;
    }
    this.scheduleWrite(this.params.stateRefreshMs ?? 60_000);
  }

  private async run(signal: AbortSignal): Promise<void> {
    const logger = this.params.logger;
    let failures = 0;
    let resourceVersion: string | undefined;
    while (!signal.aborted) {
      try {
        resourceVersion ??= await this.list();
        this.setSynced(true);
        failures = 0;
        const began = Date.now();
        const outcome = await this.watch(resourceVersion, signal, (rv) => (resourceVersion = rv));
        // A watch the server ended is resumed where it stopped; an error or "gone" relists.
        if (outcome !== 'closed') resourceVersion = undefined;
        // A watch that keeps ending at once must not spin: it backs off like an error.
        if (outcome === 'error' || Date.now() - began < 1000) failures++;
      } catch (err) {
        failures++;
        resourceVersion = undefined;
        this.setSynced(false);
        logger.warn(
          { err: (err as Error).message, attempt: failures },
          'Kubernetes API unreachable; crashes wait in the spool',
        );
      }
      if (failures > 0) {
        this.setSynced(false);
        await sleep(
          backoffDelay(failures, { initialMs: 200, maxMs: 10_000, factor: 2, jitter: 0.5 }),
          undefined,
          {
            signal,
          },
        ).catch(() => undefined);
      }
    }
  }

  /** Watches from `resourceVersion` until the stream ends. */
  private async watch(
    resourceVersion: string | undefined,
    signal: AbortSignal,
    seen: (rv: string) => void,
  ): Promise<'closed' | 'gone' | 'error'> {
    return new Promise((resolve) => {
      let outcome: 'closed' | 'gone' | 'error' = 'closed';
      signal.addEventListener('abort', () => resolve('closed'), { once: true });
      const onEvent = (type: string, obj: V1Pod & { code?: number }) => {
        if (type === 'ERROR') {
          outcome = obj.code === 410 ? 'gone' : 'error';
          this.watchAbort?.abort();
          return;
        }
        const rv = obj.metadata?.resourceVersion;
        if (rv) seen(rv);
        if (type === 'ADDED' || type === 'MODIFIED') this.upsert(obj);
        else if (type === 'DELETED') {
          const uid = this.upsert(obj);
          const pod = uid === undefined ? undefined : this.pods.get(uid);
          if (pod) {
            pod.deletedAt = Date.now();
            this.changed();
          }
        }
      };
      const onDone = (err: unknown) => {
        if (err && !signal.aborted) {
          outcome = 'error';
          this.params.logger.warn({ err: (err as Error).message }, 'pod watch ended');
        }
        resolve(outcome);
      };
      new Watch(this.params.kubeConfig)
        .watch(
          '/api/v1/pods',
          { fieldSelector: this.fieldSelector, resourceVersion, allowWatchBookmarks: true },
          onEvent,
          onDone,
        )
        .then((controller) => {
          this.watchAbort = controller;
          if (signal.aborted) controller.abort();
        })
        .catch(onDone);
    });
  }
}
