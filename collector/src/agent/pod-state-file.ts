import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { makeDirDurably, messageOf, TMP_PREFIX, writeJsonAtomically } from '@podmortem/contract/runtime';
import { AgentError } from './errors.ts';
import type { PodInfo } from './pod-info.ts';

// What the pod resolver knows of this node's pods, kept in the agent's state dir (a hostPath) so
// that it outlives the agent: a crash can wait in the spool across an agent restart, and its pod
// may be deleted meanwhile — the Kubernetes API cannot find a deleted pod, this file still can.
// The file is only ever replaced whole (temporary name, fsync, rename); anything in it that does
// not match the schema below makes the whole file untrusted.

export const POD_STATE_FILE = 'pods.json';

const PodContainerRecord = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    runtime: Type.Union([
      Type.Literal('containerd'),
      Type.Literal('cri-o'),
      Type.Literal('docker'),
      Type.Literal('unknown'),
    ]),
    image: Type.Optional(Type.String()),
    imageDigest: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const PodRecord = Type.Object(
  {
    namespace: Type.String({ minLength: 1 }),
    name: Type.String({ minLength: 1 }),
    uid: Type.String({ minLength: 1 }),
    labels: Type.Record(Type.String(), Type.String()),
    owner: Type.Optional(
      Type.Object({ kind: Type.String(), name: Type.String() }, { additionalProperties: false }),
    ),
    /** The podmortem.io/capture label and annotation (absent in files of older agents). */
    capture: Type.Optional(
      Type.Object(
        { label: Type.Optional(Type.String()), annotation: Type.Optional(Type.String()) },
        { additionalProperties: false },
      ),
    ),
    /** By container id. */
    containers: Type.Record(Type.String(), PodContainerRecord),
    specContainers: Type.Array(
      Type.Object(
        { name: Type.String(), image: Type.Optional(Type.String()) },
        { additionalProperties: false },
      ),
    ),
    deletedAt: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

const PodStateSchema = Type.Object(
  {
    version: Type.Literal(1),
    node: Type.String({ minLength: 1 }),
    /** When the pods without deletedAt were last known to be alive (the resolver was synced). */
    aliveAt: Type.Optional(Type.Integer({ minimum: 0 })),
    pods: Type.Array(PodRecord),
  },
  { additionalProperties: false },
);

type PodRecord = Static<typeof PodRecord>;

export interface PodState {
  node: string;
  aliveAt?: number;
  pods: PodInfo[];
}

/** A pod as the file keeps it: JSON has no Map. */
export function podRecord(pod: PodInfo): PodRecord {
  const record: PodRecord = {
    namespace: pod.namespace,
    name: pod.name,
    uid: pod.uid,
    labels: pod.labels,
    containers: Object.fromEntries(pod.containers),
    specContainers: pod.specContainers,
  };
  if (pod.owner) record.owner = pod.owner;
  if (pod.capture) record.capture = pod.capture;
  if (pod.deletedAt !== undefined) record.deletedAt = pod.deletedAt;
  return record;
}

function podInfoOfRecord(record: PodRecord): PodInfo {
  const pod: PodInfo = {
    namespace: record.namespace,
    name: record.name,
    uid: record.uid,
    labels: record.labels,
    containers: new Map(Object.entries(record.containers)),
    specContainers: record.specContainers,
  };
  if (record.owner) pod.owner = record.owner;
  if (record.capture) pod.capture = record.capture;
  if (record.deletedAt !== undefined) pod.deletedAt = record.deletedAt;
  return pod;
}

/**
 * The pods kept in `file`; undefined when there is no file (a first start). Throws
 * PM_ERR_POD_STATE when it cannot be read or is not a file this module wrote.
 */
export async function readPodState(file: string): Promise<PodState | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AgentError('PM_ERR_POD_STATE', `${file}: ${messageOf(err)}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new AgentError('PM_ERR_POD_STATE', `${file}: ${messageOf(err)}`, { cause: err });
  }
  if (!Value.Check(PodStateSchema, value)) {
    const first = Value.Errors(PodStateSchema, value).First();
    throw new AgentError(
      'PM_ERR_POD_STATE',
      `${file}: ${first ? `${first.path || '/'} ${first.message}` : 'does not match its schema'}`,
    );
  }
  const state: PodState = { node: value.node, pods: value.pods.map(podInfoOfRecord) };
  if (value.aliveAt !== undefined) state.aliveAt = value.aliveAt;
  return state;
}

/** Replaces `file` with `state`, atomically. */
export async function writePodState(file: string, state: PodState): Promise<void> {
  // Encoded before any await: the resolver goes on changing its pods while the write runs.
  const value: Static<typeof PodStateSchema> = {
    version: 1,
    node: state.node,
    pods: state.pods.map(podRecord),
  };
  if (state.aliveAt !== undefined) value.aliveAt = state.aliveAt;
  await makeDirDurably(dirname(file));
  await writeJsonAtomically(file, value);
}

/**
 * Removes temporaries of `file` older than `olderThanMs`, left by an agent killed mid-write. A
 * younger one may be another agent's write in progress (a rolling update can overlap two).
 */
export async function removeStaleTemporaries(file: string, olderThanMs = 60_000): Promise<void> {
  const dir = dirname(file);
  // Named as temporaryPath() names them: .tmp-<random>-<name>; versions before it wrote
  // <name>.<random>.tmp, which an agent upgraded after a kill mid-write still finds.
  const suffix = '-' + basename(file);
  const ours = (name: string) =>
    (name.startsWith(TMP_PREFIX) && name.endsWith(suffix)) ||
    (name.startsWith(basename(file) + '.') && name.endsWith('.tmp'));
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!ours(name)) continue;
    const path = join(dir, name);
    try {
      if (Date.now() - (await stat(path)).mtimeMs > olderThanMs) await rm(path, { force: true });
    } catch {
      // Gone already, or not ours to remove: either way nothing to do.
    }
  }
}
