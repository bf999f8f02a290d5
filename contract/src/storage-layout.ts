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

// Keys of a store are these relative paths; a folder is a key prefix of whole segments. Bounded
// so that a key from a request cannot make a store walk or resolve without end.
const MAX_KEY_SEGMENTS = 8;
const MAX_KEY_LENGTH = 1024;

/** The segments of a key (or folder), or why it is not one: anything but plain safe segments. */
export function keySegments(key: string): { segments: string[] } | { refused: string } {
  if (key.length === 0 || key.length > MAX_KEY_LENGTH) return { refused: 'key length out of bounds' };
  const segments = key.split('/');
  if (segments.length > MAX_KEY_SEGMENTS) return { refused: 'too many segments' };
  const bad = segments.find((s) => !isSafeSegment(s));
  return bad === undefined ? { segments } : { refused: `unsafe segment ${JSON.stringify(bad)}` };
}

/** The folder of a pod incarnation's crashes (of one container, when given). */
export function podFolder(namespace: string, podUid: string, container?: string): string {
  return [namespace, podUid, ...(container === undefined ? [] : [container])].join('/');
}

export function isDumpKey(key: string): boolean {
  return key.endsWith(DUMP_SUFFIX);
}

export interface PodCrashFile {
  namespace: string;
  podUid: string;
  container: string;
  crashId: string;
  kind: 'dump' | 'event';
}

/**
 * What a pod crash file's key names, or undefined for anything else there: temporary names of
 * files still being written, foreign files, files at another depth.
 */
export function podCrashFileOf(key: string): PodCrashFile | undefined {
  const [namespace, podUid, container, name, ...rest] = key.split('/');
  if (namespace === undefined || podUid === undefined || container === undefined || name === undefined)
    return undefined;
  if (rest.length > 0) return undefined;
  const kind = name.endsWith(DUMP_SUFFIX) ? 'dump' : name.endsWith(EVENT_SUFFIX) ? 'event' : undefined;
  if (kind === undefined) return undefined;
  const crashId = name.slice(0, -(kind === 'dump' ? DUMP_SUFFIX : EVENT_SUFFIX).length);
  return isCrashId(crashId) ? { namespace, podUid, container, crashId, kind } : undefined;
}

// Modules (executables and shared libraries) captured at crash time are kept once per GNU build
// id, as debuginfod lays them out: _buildid/<build-id>/executable (and /debuginfo where a debug
// file is known). The leading underscore keeps them out of every namespace's folder.
export const MODULES_FOLDER = '_buildid';
const buildIdRe = /^[0-9a-f]{2,128}$/;

export function isBuildId(value: string): boolean {
  return buildIdRe.test(value);
}

/** Key of a stored module by its build id. */
export function moduleKey(buildId: string, kind: 'executable' | 'debuginfo' = 'executable'): string {
  if (!isBuildId(buildId)) throw new Error(`build id ${JSON.stringify(buildId)} is not lower-case hex`);
  return [MODULES_FOLDER, buildId, kind].join('/');
}
