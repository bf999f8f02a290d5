import type { CrashEvent } from './crash-event.ts';
import { isCrashId } from './crash-id.ts';

// Layout on the storage root (the NFS volume), shared by the collector that writes it and the
// query API that reads it: <namespace>/<pod-uid>/<container>/<crash-id>.core.zst and .json.
// A crash outside any pod goes under _host/<node>/_process/, which no namespace can shadow
// (Kubernetes names never start with an underscore).

export const DUMP_SUFFIX = '.core.zst';
export const EVENT_SUFFIX = '.json';

const segmentRe = /^[A-Za-z0-9_]([A-Za-z0-9._-]{0,252})$/;

/** A path segment that cannot climb out of, or hide in, the storage root. */
export function isSafeSegment(segment: string): boolean {
  return segmentRe.test(segment) && !segment.includes('..');
}

export function crashDirSegments(event: CrashEvent): string[] {
  const k8s = event.kubernetes;
  const segments = k8s
    ? [k8s.namespace, k8s.pod.uid, k8s.container.name]
    : ['_host', event.collector.node, '_process'];
  for (const s of segments) {
    if (!isSafeSegment(s)) throw new Error(`unsafe storage path segment ${JSON.stringify(s)}`);
  }
  return segments;
}

function fileOf(event: CrashEvent, suffix: string): string {
  if (!isCrashId(event.crash.id))
    throw new Error(`crash.id ${JSON.stringify(event.crash.id)} is not a UUIDv7`);
  return [...crashDirSegments(event), event.crash.id + suffix].join('/');
}

/** Relative path of the stored core (always '/'-separated). */
export function dumpRelPath(event: CrashEvent): string {
  return fileOf(event, DUMP_SUFFIX);
}

/** Relative path of the stored event JSON beside the core. */
export function eventRelPath(event: CrashEvent): string {
  return fileOf(event, EVENT_SUFFIX);
}
