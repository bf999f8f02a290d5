import type { CaptureMarks } from './capture-policy.ts';
import type { ContainerRuntime } from './cgroup.ts';

// What the agent knows of one pod of its node, as the resolver keeps it and its state file stores it.

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
  /** Its podmortem.io/capture label and annotation, when it has either (capture-policy.ts). */
  capture?: CaptureMarks;
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
