import type { CrashEvent } from '../crash-event.ts';
import { isRemovedDumpStatus } from '../crash-event.ts';
import { encodeDumpRemovalMessage } from '../cloudevent.ts';
import { dumpRemovalOf, type DumpChange, type DumpRemoval } from '../dump-removal.ts';
import { ACKS_ALL } from '../runtime/kafka.ts';
import { dumpRelPath, eventRelPath } from '../storage-layout.ts';
import { crashKey, DUMP_REMOVAL_TOPIC } from '../topics.ts';
import { validateCrashEvent } from '../validate.ts';
import { isStoreError, readBytes, type Store } from './store.ts';

// Taking a stored core away, for the retention service (expired) and the query API (deleted by a
// user), in one place so both leave the same three traces in the same order: the core is deleted
// from the store first (what the removal is for: once it is gone no reader can get it), then the
// stored event says so (the store alone tells the truth after a lost index), then the removal
// goes to Kafka for the indexer. Each step is idempotent, so a caller that failed part-way just
// calls again: the first removal's facts (status, reason, time, who) are kept from the stored
// event, and the record produced again is the same one.

/** What a removal is published with: a kafkajs producer or the runtime's SessionProducer. */
export interface RemovalProducer {
  send(record: {
    topic: string;
    acks?: number;
    timeout?: number;
    messages: { key: string; value: Buffer }[];
  }): Promise<unknown>;
}

export interface RemoveDumpParams {
  store: Store;
  producer: RemovalProducer;
  /** The crash as its caller knows it (from the index or the store); validated here. */
  event: CrashEvent;
  /** Used unless the dump was removed already; then the first removal's facts stand. */
  change: DumpChange;
  /** DUMP_REMOVAL_TOPIC unless told. */
  topic?: string;
  /** Of the Kafka send. */
  timeoutMs?: number;
}

export interface RemovedDump {
  /** The event as the store keeps it now, its dump marked removed. */
  event: CrashEvent;
  removal: DumpRemoval;
  /** False when the dump had been removed before (by this or another caller): nothing changed. */
  changed: boolean;
}

/** Largest stored event read back; the collector's events are a few KiB. */
const MAX_EVENT_BYTES = 4 * 1024 * 1024;

/**
 * Deletes the crash's core from the store, marks its stored event removed and publishes the
 * DumpRemoval (acks=all), in that order. Throws what a step threw (StoreError, a Kafka error);
 * calling again completes the job.
 */
export async function removeDump(params: RemoveDumpParams): Promise<RemovedDump> {
  const given = validateCrashEvent(params.event);
  if (!given.ok) throw new Error(`crash event: ${given.errors.join('; ')}`);
  const event = given.value;
  const { store } = params;
  // Derived from the crash's identity, never from dump.path: an event cannot aim at another
  // pod's objects.
  const dumpKey = dumpRelPath(event);
  const eventKey = eventRelPath(event);

  const stored = await storedEventAt(store, eventKey, event.crash.id);
  const base = stored ?? event;
  const earlier = [stored, event].find((e) => e !== undefined && isRemovedDumpStatus(e.dump.status));
  const change: DumpChange = earlier === undefined ? params.change : (changeOf(earlier) ?? params.change);

  await store.delete(dumpKey);

  const removal = dumpRemovalOf(event, change);
  const marked: CrashEvent = { ...base, dump: { ...base.dump, ...removal.dump } };
  const rewrite = stored === undefined || !sameDump(stored, marked);
  if (rewrite) await store.putBytes(eventKey, Buffer.from(JSON.stringify(marked) + '\n'));

  await params.producer.send({
    topic: params.topic ?? DUMP_REMOVAL_TOPIC,
    acks: ACKS_ALL,
    ...(params.timeoutMs === undefined ? {} : { timeout: params.timeoutMs }),
    messages: [{ key: crashKey(removal), value: encodeDumpRemovalMessage(removal) }],
  });
  return { event: marked, removal, changed: earlier === undefined };
}

/**
 * The crash's event as the store keeps it (the truth about its dump, however far the index is
 * behind), or undefined when there is none or what is there is no event of this crash.
 */
export function readStoredEvent(store: Store, event: CrashEvent): Promise<CrashEvent | undefined> {
  return storedEventAt(store, eventRelPath(event), event.crash.id);
}

/**
 * The stored event at `key` if it is the crash's, else undefined (then removeDump replaces it by
 * the caller's, marked).
 */
async function storedEventAt(store: Store, key: string, id: string): Promise<CrashEvent | undefined> {
  let bytes: Buffer | undefined;
  try {
    bytes = await readBytes(store, key, MAX_EVENT_BYTES);
  } catch (err) {
    if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) return undefined;
    throw err;
  }
  if (bytes === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  const valid = validateCrashEvent(parsed);
  return valid.ok && valid.value.crash.id === id ? valid.value : undefined;
}

function changeOf(event: CrashEvent): DumpChange | undefined {
  const { status, reason, removed_at, removed_by } = event.dump;
  if (!isRemovedDumpStatus(status) || !reason || !removed_at || !removed_by) return undefined;
  return { status, reason, removed_at: new Date(removed_at), removed_by };
}

function sameDump(a: CrashEvent, b: CrashEvent): boolean {
  return JSON.stringify(a.dump) === JSON.stringify(b.dump);
}
