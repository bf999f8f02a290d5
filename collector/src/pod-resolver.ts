import { setTimeout as sleep } from 'node:timers/promises';
import {
  CoreV1Api,
  Watch,
  type KubeConfig,
  type V1ContainerStatus,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffDelay, beforeDeadline, type Component } from '@podmortem/contract/runtime';
import type { CgroupIdentity, ContainerRuntime } from './cgroup.ts';
import { AgentError } from './errors.ts';

// This node's pods, kept by a list + watch of the Kubernetes API (fieldSelector
// spec.nodeName=<node>), indexed by every container id the kubelet ever reported for them — the
// running one and the last terminated one, so the container that just crashed and was restarted
// still maps to its pod. Deleted pods stay as tombstones for a while: a pod can be gone by the
// time its crash is delivered, and the API cannot find a deleted pod by uid.

export interface PodContainer {
  name: string;
  runtime: ContainerRuntime;
  image?: string;
  imageDigest?: string;
}

export interface PodInfo {
  namespace: string;
  name: string;
  uid: string;
  labels: Record<string, string>;
  owner?: { kind: string; name: string };
  /** By container id (64 hex), every id seen for the pod. */
  containers: Map<string, PodContainer>;
  /** Spec container names with their images, for a container whose id is not reported yet. */
  specContainers: { name: string; image?: string }[];
  deletedAt?: number;
}

export type PodLookup =
  | { kind: 'found'; pod: PodInfo; container: PodContainer }
  /** The cgroup names the pod, but its status does not list the container id (yet). */
  | { kind: 'pod-only'; pod: PodInfo }
  | { kind: 'unknown' };

export interface PodResolverParams {
  kubeConfig: KubeConfig;
  nodeName: string;
  tombstoneMs: number;
  logger: Logger;
  /** Called with true once listed and watching, false while the API is unreachable. */
  onSynced?: (synced: boolean) => void;
  /** A fresh list is not asked for again within this time. */
  refreshMinIntervalMs?: number;
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
  private loop: Promise<void> | undefined;
  private syncedNow = false;
  private refreshing: Promise<void> | undefined;
  private lastRefresh = 0;

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

  /** Starts listing and watching; does not wait for the API (crashes wait in the spool instead). */
  start(): Promise<void> {
    if (!this.loop) {
      this.abort = new AbortController();
      this.loop = this.run(this.abort.signal);
    }
    return Promise.resolve();
  }

  async shutdown(deadline: number = Date.now() + 5000): Promise<void> {
    this.abort?.abort();
    this.watchAbort?.abort();
    if (this.loop) await beforeDeadline(this.loop, deadline, undefined);
    this.loop = undefined;
    this.setSynced(false);
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
    // Pods deleted while we were not watching.
    for (const [uid, pod] of this.pods)
      if (!seen.has(uid) && pod.deletedAt === undefined) pod.deletedAt = Date.now();
    this.lastRefresh = Date.now();
    return list.metadata?.resourceVersion;
  }

  private upsert(pod: V1Pod): string | undefined {
    const uid = pod.metadata?.uid;
    const info = podInfoOf(pod, uid === undefined ? undefined : this.pods.get(uid));
    if (!info) return undefined;
    this.pods.set(info.uid, info);
    for (const id of info.containers.keys()) this.byContainer.set(id, info.uid);
    return info.uid;
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
    this.syncedNow = synced;
    this.params.onSynced?.(synced);
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
          if (pod) pod.deletedAt = Date.now();
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
