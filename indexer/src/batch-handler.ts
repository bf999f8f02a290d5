import type { Logger } from '@podmortem/contract/runtime';
import type { EachBatchPayload, KafkaMessage } from 'kafkajs';
import type { BulkItem, BulkWriter } from './bulk-writer.ts';
import type { DeadLetter, DeadLetterWriter } from './dead-letter.ts';
import { decodeRecord } from './record-decoder.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// The kafkajs `eachBatch` handler: a batch is cut into chunks (bulkMaxRecords / bulkMaxBytes);
// for each chunk, valid events are bulk-indexed, the invalid and the rejected are dead-lettered,
// and only when Elasticsearch and the dead-letter topic have acknowledged every record of the
// chunk is its last offset resolved and committed. While a chunk waits for Elasticsearch (or the
// DLQ) its partition is paused and the group keeps getting heartbeats, so the member is not
// removed. On shutdown no new chunk starts and the one in flight finishes or, at the deadline, is
// abandoned uncommitted. A rebalance, felt through a failing heartbeat, abandons a chunk that is
// waiting (a moving one finishes and commits first) and hands the error to kafkajs, which
// re-joins the group.

export interface BatchHandlerParams {
  alias: string;
  bulk: BulkWriter;
  deadLetter: DeadLetterWriter;
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

export interface BatchHandler {
  handle(payload: EachBatchPayload): Promise<void>;
  /** Partitions whose chunk is waiting for Elasticsearch or the DLQ to come back. */
  readonly waiting: number;
  /** Chunks being processed now. */
  readonly inFlight: number;
  /** Resolves when no chunk is in flight. */
  idle(): Promise<void>;
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

export function createBatchHandler(params: BatchHandlerParams): BatchHandler {
  const { alias, bulk, deadLetter, telemetry, logger, abandonSignal } = params;
  let waiting = 0;
  let inFlight = 0;
  let idleWaiters: (() => void)[] = [];

  async function handleChunk(
    payload: EachBatchPayload,
    chunk: KafkaMessage[],
  ): Promise<'done' | 'abandoned'> {
    const { batch } = payload;
    const { topic, partition } = batch;
    telemetry.consumed.inc({ topic }, chunk.length);
    const items: BulkItem<KafkaMessage>[] = [];
    const letters: DeadLetter[] = [];
    for (const message of chunk) {
      const decoded = decodeRecord(message.value, alias);
      if (decoded.ok) {
        items.push({
          id: decoded.event.crash.id,
          index: decoded.index,
          document: decoded.event,
          ref: message,
        });
      } else {
        letters.push({ topic, partition, message, code: decoded.code, error: decoded.error });
      }
    }

    // A rebalance is felt as a failing heartbeat. A chunk that is moving finishes and commits (the
    // group still accepts the commit of its current generation while it prepares the rebalance);
    // one that is waiting for Elasticsearch is abandoned, so the member re-joins in time.
    const chunkAbort = new AbortController();
    let heartbeatError: Error | undefined;
    let resume: (() => void) | undefined;
    let pausedFor: 'elasticsearch' | 'dlq' | undefined;
    const stopHeartbeats = keepHeartbeating(
      () => payload.heartbeat(),
      Math.min(1000, params.heartbeatIntervalMs),
      (err) => {
        heartbeatError ??= err instanceof Error ? err : new Error(String(err));
        if (resume) chunkAbort.abort(heartbeatError);
      },
    );
    const pauseFor = (operation: 'elasticsearch' | 'dlq') => () => {
      if (heartbeatError) chunkAbort.abort(heartbeatError);
      if (resume) return;
      resume = payload.pause();
      pausedFor = operation;
      waiting++;
      telemetry.waiting.inc({ operation });
      logger.warn({ topic, partition, operation }, 'partition paused until the chunk is acknowledged');
    };
    const signal = AbortSignal.any([abandonSignal, chunkAbort.signal]);
    try {
      const written = await bulk.write(items, { signal, onRetry: pauseFor('elasticsearch') });
      for (const r of written.rejected) {
        letters.push({ topic, partition, message: r.item.ref, code: 'PM_ERR_ES_REJECTED', error: r.error });
      }
      await deadLetter.send(letters, { signal, onRetry: pauseFor('dlq') });
    } catch (err) {
      if (heartbeatError !== undefined) throw heartbeatError;
      if (signal.aborted) return 'abandoned';
      throw err;
    } finally {
      stopHeartbeats();
      if (resume && pausedFor) {
        resume();
        waiting--;
        telemetry.waiting.dec({ operation: pausedFor });
        logger.info({ topic, partition }, 'partition resumed');
      }
    }

    const last = chunk[chunk.length - 1];
    if (!last) return 'done';
    const next = (BigInt(last.offset) + 1n).toString();
    payload.resolveOffset(last.offset);
    await payload.commitOffsetsIfNecessary({
      topics: [{ topic, partitions: [{ partition, offset: next }] }],
    });
    telemetry.committed.inc({ topic }, chunk.length);
    const lag = BigInt(batch.highWatermark) - BigInt(next);
    telemetry.consumerLag.set({ topic, partition: String(partition) }, Number(lag > 0n ? lag : 0n));
    if (heartbeatError !== undefined) throw heartbeatError;
    return 'done';
  }

  return {
    get waiting() {
      return waiting;
    },
    get inFlight() {
      return inFlight;
    },
    idle() {
      if (inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    async handle(payload) {
      const { batch } = payload;
      for (const chunk of chunkMessages(batch.messages, params.bulkMaxRecords, params.bulkMaxBytes)) {
        if (params.stopping() || !payload.isRunning() || payload.isStale()) return;
        inFlight++;
        try {
          if ((await handleChunk(payload, chunk)) === 'abandoned') {
            logger.info(
              {
                topic: batch.topic,
                partition: batch.partition,
                from: chunk[0]?.offset,
                records: chunk.length,
              },
              'chunk abandoned uncommitted',
            );
            return;
          }
        } finally {
          inFlight--;
          if (inFlight === 0) {
            const waiters = idleWaiters;
            idleWaiters = [];
            for (const w of waiters) w();
          }
        }
      }
    },
  };
}
