import type { Logger } from '@podmortem/contract/runtime';
import type { Batch, EachBatchPayload, KafkaMessage } from 'kafkajs';
import type { AnalysisItem, AnalysisMerger, DumpRemovalMerger, RemovalItem } from './analysis-merger.ts';
import type { BulkItem, BulkWriter } from './bulk-writer.ts';
import type { DeadLetter, DeadLetterWriter } from './dead-letter.ts';
import type { IndexerErrorCode } from './errors.ts';
import { decodeAnalysis, decodeRecord, decodeRemoval } from './record-decoder.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// The kafkajs `eachBatch` handler: a batch is cut into chunks (bulkMaxRecords / bulkMaxBytes);
// for each chunk, valid events are bulk-indexed (a batch of the analysis topic: its records merged
// into their crashes' documents), the invalid and the rejected are dead-lettered,
// and only when Elasticsearch and the dead-letter topic have acknowledged every record of the
// chunk is its last offset resolved and committed. While a chunk waits for Elasticsearch (or the
// DLQ) its partition is paused and the group keeps getting heartbeats, so the member is not
// removed. On shutdown no new chunk starts and the one in flight finishes or, at the deadline, is
// abandoned uncommitted. A rebalance, felt through a failing heartbeat, abandons a chunk that is
// waiting (a moving one finishes and commits first) and hands the error to kafkajs, which
// re-joins the group.

export interface BatchHandlerParams {
  alias: string;
  bulk: Pick<BulkWriter, 'write'>;
  /** Batches of this topic are analysis records, merged by `merger`; all others are crashes. */
  analyses: { topic: string; merger: Pick<AnalysisMerger, 'write'> };
  /** Batches of this topic are dump removals, merged by `merger`. */
  removals?: { topic: string; merger: Pick<DumpRemovalMerger, 'write'> };
  deadLetter: Pick<DeadLetterWriter, 'send'>;
  telemetry: IndexerTelemetry;
  logger: Logger;
  bulkMaxRecords: number;
  bulkMaxBytes: number;
  heartbeatIntervalMs: number;
  /** True once the indexer shuts down: no further chunk is started. */
  stopping: () => boolean;
  /** Aborted when the chunk in flight is to be abandoned (shutdown deadline near). */
  abandonSignal: AbortSignal;
}

/** The part of kafkajs's `eachBatch` payload the handler uses. */
export interface BatchPayload extends Pick<
  EachBatchPayload,
  'heartbeat' | 'pause' | 'resolveOffset' | 'commitOffsetsIfNecessary' | 'isRunning' | 'isStale'
> {
  batch: Pick<Batch, 'topic' | 'partition' | 'highWatermark' | 'messages'>;
}

export interface BatchHandler {
  handle(payload: BatchPayload): Promise<void>;
  /** Partitions whose chunk is waiting for Elasticsearch or the DLQ to come back. */
  readonly waiting: number;
  /** Chunks being processed now. */
  readonly inFlight: number;
  /** Resolves when no chunk is in flight. */
  idle(): Promise<void>;
}

type ChunkOutcome = 'done' | 'abandoned';
type WaitOperation = 'elasticsearch' | 'dlq';

/** Where a chunk's records came from, for their dead letters. */
interface Source {
  topic: string;
  partition: number;
}

/** Cuts messages into runs of at most `maxRecords` records and about `maxBytes` bytes of values. */
export function chunkMessages(
  messages: KafkaMessage[],
  maxRecords: number,
  maxBytes: number,
): KafkaMessage[][] {
  const chunks: KafkaMessage[][] = [];
  let current: KafkaMessage[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = m.value?.length ?? 0;
    if (current.length > 0 && (current.length >= maxRecords || bytes + size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(m);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** A chunk's records as bulk items (the valid events) and dead letters (those never indexable). */
export function splitDecoded(
  chunk: KafkaMessage[],
  alias: string,
  source: Source,
): { items: BulkItem<KafkaMessage>[]; letters: DeadLetter[] } {
  const items: BulkItem<KafkaMessage>[] = [];
  const letters: DeadLetter[] = [];
  for (const message of chunk) {
    const decoded = decodeRecord(message.value, alias);
    if (decoded.ok) {
      items.push({ id: decoded.event.crash.id, index: decoded.index, document: decoded.event, ref: message });
    } else {
      letters.push({ ...source, message, code: decoded.code, error: decoded.error });
    }
  }
  return { items, letters };
}

/** A chunk of the analysis topic as analysis items and dead letters (see splitDecoded). */
export function splitAnalyses(
  chunk: KafkaMessage[],
  alias: string,
  source: Source,
): { items: AnalysisItem<KafkaMessage>[]; letters: DeadLetter[] } {
  const items: AnalysisItem<KafkaMessage>[] = [];
  const letters: DeadLetter[] = [];
  for (const message of chunk) {
    const decoded = decodeAnalysis(message.value, alias);
    if (decoded.ok) items.push({ index: decoded.index, record: decoded.record, ref: message });
    else letters.push({ ...source, message, code: decoded.code, error: decoded.error });
  }
  return { items, letters };
}

/** A chunk of the dump-removal topic as removal items and dead letters. */
export function splitRemovals(
  chunk: KafkaMessage[],
  alias: string,
  source: Source,
): { items: RemovalItem<KafkaMessage>[]; letters: DeadLetter[] } {
  const items: RemovalItem<KafkaMessage>[] = [];
  const letters: DeadLetter[] = [];
  for (const message of chunk) {
    const decoded = decodeRemoval(message.value, alias);
    if (decoded.ok) items.push({ index: decoded.index, record: decoded.record, ref: message });
    else letters.push({ ...source, message, code: decoded.code, error: decoded.error });
  }
  return { items, letters };
}

/** The dead letters of the items Elasticsearch rejected for good. */
function rejectedLetters(
  rejected: { item: { ref: KafkaMessage }; error: string; code?: IndexerErrorCode }[],
  source: Source,
): DeadLetter[] {
  return rejected.map((r) => ({
    ...source,
    message: r.item.ref,
    code: r.code ?? 'PM_ERR_ES_REJECTED',
    error: r.error,
  }));
}

/** The offset to commit after `offset`: Kafka commits the next record to read. */
export function nextOffset(offset: string): string {
  return (BigInt(offset) + 1n).toString();
}

/** Records of the partition after `committed`, never negative. */
export function lagAfter(highWatermark: string, committed: string): number {
  const lag = BigInt(highWatermark) - BigInt(committed);
  return Number(lag > 0n ? lag : 0n);
}

/** Calls `heartbeat` every `everyMs` (kafkajs sends one only when its interval is due). */
function keepHeartbeating(heartbeat: () => Promise<void>, everyMs: number, onError: (err: unknown) => void) {
  let sending = false;
  const timer = setInterval(() => {
    if (sending) return;
    sending = true;
    heartbeat()
      .catch(onError)
      .finally(() => {
        sending = false;
      });
  }, everyMs);
  return () => clearInterval(timer);
}

/** The heartbeats of a chunk in flight and the pause of its partition while it waits. */
interface ChunkGuard {
  /** Aborted to abandon the chunk: at the shutdown deadline, or on a rebalance while it waits. */
  readonly signal: AbortSignal;
  /** The first failed heartbeat (a rebalance), if any. */
  readonly heartbeatError: Error | undefined;
  /** An operation's onRetry: the partition is paused at its first retry. */
  pauseFor(operation: WaitOperation): () => void;
  /** Stops the heartbeats and resumes the partition if it was paused. */
  release(): void;
}

/** Counts the partitions paused, for the handler's `waiting`. */
interface PausedCount {
  value: number;
}

// A rebalance is felt as a failing heartbeat. A chunk that is moving finishes and commits (the
// group still accepts the commit of its current generation while it prepares the rebalance); one
// that is waiting for Elasticsearch is abandoned, so the member re-joins in time.
function guardChunk(payload: BatchPayload, params: BatchHandlerParams, paused: PausedCount): ChunkGuard {
  const { telemetry, logger } = params;
  const { topic, partition } = payload.batch;
  const chunkAbort = new AbortController();
  let heartbeatError: Error | undefined;
  let resume: (() => void) | undefined;
  let pausedFor: WaitOperation | undefined;
  const stopHeartbeats = keepHeartbeating(
    () => payload.heartbeat(),
    Math.min(1000, params.heartbeatIntervalMs),
    (err) => {
      heartbeatError ??= err instanceof Error ? err : new Error(String(err));
      if (resume) chunkAbort.abort(heartbeatError);
    },
  );
  return {
    signal: AbortSignal.any([params.abandonSignal, chunkAbort.signal]),
    get heartbeatError() {
      return heartbeatError;
    },
    pauseFor: (operation) => () => {
      if (heartbeatError) chunkAbort.abort(heartbeatError);
      if (resume) return;
      resume = payload.pause();
      pausedFor = operation;
      paused.value++;
      telemetry.waiting.inc({ operation });
      logger.warn({ topic, partition, operation }, 'partition paused until the chunk is acknowledged');
    },
    release() {
      stopHeartbeats();
      if (resume && pausedFor) {
        resume();
        paused.value--;
        telemetry.waiting.dec({ operation: pausedFor });
        logger.info({ topic, partition }, 'partition resumed');
      }
    },
  };
}

/** Returns once Elasticsearch has acknowledged or rejected every item and the DLQ every letter. */
async function acknowledge(
  params: BatchHandlerParams,
  source: Source,
  chunk: KafkaMessage[],
  guard: ChunkGuard,
): Promise<void> {
  const { signal } = guard;
  const options = { signal, onRetry: guard.pauseFor('elasticsearch') };
  let letters: DeadLetter[];
  if (source.topic === params.analyses.topic) {
    const decoded = splitAnalyses(chunk, params.alias, source);
    const merged = await params.analyses.merger.write(decoded.items, options);
    letters = [...decoded.letters, ...rejectedLetters(merged.rejected, source)];
  } else if (source.topic === params.removals?.topic) {
    const decoded = splitRemovals(chunk, params.alias, source);
    const merged = await params.removals.merger.write(decoded.items, options);
    letters = [...decoded.letters, ...rejectedLetters(merged.rejected, source)];
  } else {
    const decoded = splitDecoded(chunk, params.alias, source);
    const written = await params.bulk.write(decoded.items, options);
    letters = [...decoded.letters, ...rejectedLetters(written.rejected, source)];
  }
  await params.deadLetter.send(letters, { signal, onRetry: guard.pauseFor('dlq') });
}

/** Resolves and commits the offset after the chunk's last record. */
async function commitThrough(
  payload: BatchPayload,
  last: KafkaMessage,
  records: number,
  telemetry: IndexerTelemetry,
) {
  const { topic, partition, highWatermark } = payload.batch;
  const next = nextOffset(last.offset);
  payload.resolveOffset(last.offset);
  await payload.commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset: next }] }] });
  telemetry.committed.inc({ topic }, records);
  telemetry.consumerLag.set({ topic, partition: String(partition) }, lagAfter(highWatermark, next));
}

/** Counts the chunks in flight and wakes those waiting for none. */
function inFlightTracker() {
  let count = 0;
  let idleWaiters: (() => void)[] = [];
  return {
    get count() {
      return count;
    },
    idle(): Promise<void> {
      if (count === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    async run<T>(work: () => Promise<T>): Promise<T> {
      count++;
      try {
        return await work();
      } finally {
        count--;
        if (count === 0) {
          const waiters = idleWaiters;
          idleWaiters = [];
          for (const w of waiters) w();
        }
      }
    },
  };
}

export function createBatchHandler(params: BatchHandlerParams): BatchHandler {
  const { telemetry, logger } = params;
  const paused: PausedCount = { value: 0 };
  const chunks = inFlightTracker();

  async function handleChunk(payload: BatchPayload, chunk: KafkaMessage[]): Promise<ChunkOutcome> {
    const { topic, partition } = payload.batch;
    const source = { topic, partition };
    telemetry.consumed.inc({ topic }, chunk.length);
    const guard = guardChunk(payload, params, paused);
    try {
      await acknowledge(params, source, chunk, guard);
    } catch (err) {
      if (guard.heartbeatError !== undefined) throw guard.heartbeatError;
      if (guard.signal.aborted) return 'abandoned';
      throw err;
    } finally {
      guard.release();
    }
    const last = chunk[chunk.length - 1];
    if (!last) return 'done';
    await commitThrough(payload, last, chunk.length, telemetry);
    if (guard.heartbeatError !== undefined) throw guard.heartbeatError;
    return 'done';
  }

  function logAbandoned(payload: BatchPayload, chunk: KafkaMessage[]) {
    const { topic, partition } = payload.batch;
    logger.info(
      { topic, partition, from: chunk[0]?.offset, records: chunk.length },
      'chunk abandoned uncommitted',
    );
  }

  return {
    get waiting() {
      return paused.value;
    },
    get inFlight() {
      return chunks.count;
    },
    idle: () => chunks.idle(),
    async handle(payload) {
      const { batch } = payload;
      for (const chunk of chunkMessages(batch.messages, params.bulkMaxRecords, params.bulkMaxBytes)) {
        if (params.stopping() || !payload.isRunning() || payload.isStale()) return;
        const outcome = await chunks.run(async () => {
          const handled = await handleChunk(payload, chunk);
          if (handled === 'abandoned') logAbandoned(payload, chunk);
          return handled;
        });
        if (outcome === 'abandoned') return;
      }
    },
  };
}
