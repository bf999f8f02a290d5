import { createHash } from 'node:crypto';
import { DLQ_HEADERS } from '@podmortem/contract';
import {
  KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
  SessionProducer,
  beforeDeadline,
  messageOf,
  retry,
  type Component,
  type Logger,
  type RetryPolicy,
} from '@podmortem/contract/runtime';
import type { IHeaders, KafkaMessage, Message } from 'kafkajs';
import { IndexerError, type IndexerErrorCode } from './errors.ts';
import { truncateError } from './record-decoder.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// The dead-letter topic: a record that can never be indexed is written there unchanged (value,
// key, headers, timestamp) with headers saying why and where it came from, so it can be read,
// fixed and replayed. The producer is idempotent with acks=all; a send that fails for a reason
// that may pass (Kafka down, no leader, not authorised yet) is retried until the topic
// acknowledges or the indexer shuts down, and offsets never move past an unsent letter.
// Letters are at least once: a process killed between the DLQ's acknowledgement and the offset
// commit writes them again on re-delivery, with the same source partition and offset headers, by
// which readers of the DLQ tell them apart. (Kafka transactions would make this exactly once;
// kafkajs's transactions proved unreliable against Kafka 4 here: CONCURRENT_TRANSACTIONS errors.)
//
// The dead-letter path never blocks a partition for good (docs/architecture.md §3, "Dead
// letters"). A letter is bigger than its record (the headers), so a record the source topic just
// accepted may not fit the DLQ: a letter over the DLQ's max.message.bytes (read at start-up) is
// cut before it is sent, and a letter the topic refuses for what it is (too large, invalid,
// timestamp out of range) is sent again cut, then bare. A cut letter keeps the key, the head of
// the value that fits, the original headers when they leave room, the reason and the sha256 and
// size of the original value. A bare letter (no value, a short key, only our headers) refused as
// well is counted and logged as lost with its source partition and offset; the partition moves on.

export interface DeadLetter {
  topic: string;
  partition: number;
  message: KafkaMessage;
  code: IndexerErrorCode;
  error: string;
}

// Kafka's default max.message.bytes is assumed until the topic's own is known.
export { KAFKA_DEFAULT_MAX_MESSAGE_BYTES };

// What Kafka counts against max.message.bytes is a whole record batch. These bound its parts from
// above (batch header; a record's length, attributes, deltas and varint lengths; a header's).
const BATCH_OVERHEAD = 61;
const RECORD_OVERHEAD = 40;
const HEADER_OVERHEAD = 10;
/** Kept free below the limit for what the estimate may miss. */
const SAFETY_BYTES = 512;
/** The key of a bare letter, at most. */
const BARE_KEY_BYTES = 256;
/** The reason header of a cut letter, at most (characters). */
const MAX_REASON_TEXT = 300;

/** Errors by which Kafka refuses the records themselves: the same letter is never accepted. */
const REFUSALS = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
  'INVALID_TIMESTAMP',
]);

function ourHeaders(letter: DeadLetter): IHeaders {
  return {
    [DLQ_HEADERS.error]: truncateError(letter.error),
    [DLQ_HEADERS.errorCode]: letter.code,
    [DLQ_HEADERS.sourceTopic]: letter.topic,
    [DLQ_HEADERS.sourcePartition]: String(letter.partition),
    [DLQ_HEADERS.sourceOffset]: letter.message.offset,
  };
}

export function deadLetterMessage(letter: DeadLetter): Message {
  const { message } = letter;
  const headers: IHeaders = { ...(message.headers ?? {}), ...ourHeaders(letter) };
  return { key: message.key, value: message.value, headers, timestamp: message.timestamp };
}

function bytesOf(v: Buffer | string | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'string' ? Buffer.byteLength(v) : v.length;
}

function headersBytes(headers: IHeaders | undefined): number {
  let n = 0;
  for (const [k, v] of Object.entries(headers ?? {})) {
    for (const one of Array.isArray(v) ? v : [v]) n += HEADER_OVERHEAD + Buffer.byteLength(k) + bytesOf(one);
  }
  return n;
}

/** An upper bound of the bytes a message takes alone in a record batch. */
export function batchBytes(m: Pick<Message, 'key' | 'value' | 'headers'>): number {
  return BATCH_OVERHEAD + RECORD_OVERHEAD + bytesOf(m.key) + bytesOf(m.value) + headersBytes(m.headers);
}

/**
 * A letter cut to fit `limitBytes`: the head of the value that fits (none when `bare`), the
 * original headers when they take at most a quarter of the limit (never when `bare`), the reason,
 * and the sha256 and size of the original value.
 */
export function cutDeadLetterMessage(
  letter: DeadLetter,
  limitBytes: number,
  why: string,
  bare = false,
): Message {
  const { message } = letter;
  const value = message.value ?? Buffer.alloc(0);
  const key = bare && message.key ? message.key.subarray(0, BARE_KEY_BYTES) : message.key;
  const cuts: string[] = [];
  let headers: IHeaders = {
    ...ourHeaders(letter),
    [DLQ_HEADERS.originalSha256]: createHash('sha256').update(value).digest('hex'),
    [DLQ_HEADERS.originalBytes]: String(value.length),
  };
  const original = message.headers ?? {};
  if (!bare && headersBytes(original) <= limitBytes / 4) headers = { ...original, ...headers };
  else if (Object.keys(original).length > 0) cuts.push('original headers dropped');
  if (bare && message.key && message.key.length > BARE_KEY_BYTES)
    cuts.push(`key cut to ${BARE_KEY_BYTES} bytes`);
  const fixed = batchBytes({ key, value: null, headers }) + HEADER_OVERHEAD + MAX_REASON_TEXT * 4;
  const room = bare ? 0 : Math.max(0, limitBytes - SAFETY_BYTES - fixed);
  const head = value.subarray(0, Math.min(value.length, room));
  cuts.unshift(`value cut to ${head.length} of ${value.length} bytes`);
  const reason = `${why}: ${cuts.join(', ')}`;
  headers[DLQ_HEADERS.truncated] =
    reason.length <= MAX_REASON_TEXT ? reason : `${reason.slice(0, MAX_REASON_TEXT - 1)}…`;
  // A bare letter takes the producer's time: the original timestamp may be what was refused.
  return bare ? { key, value: head, headers } : { key, value: head, headers, timestamp: message.timestamp };
}

/** The Kafka error type by which the records were refused, or undefined for any other failure. */
export function refusalOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 4; depth++) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === 'string' && REFUSALS.has(type)) return type;
    e = (e as { cause?: unknown }).cause ?? (e as { originalError?: unknown }).originalError;
  }
  return undefined;
}

type Form = 'whole' | 'cut' | 'bare';

interface Attempt {
  letter: DeadLetter;
  message: Message;
  form: Form;
  /** Why the letter is not whole: 'over-limit' (cut before sending) or the Kafka error refusing it. */
  reason?: string;
}

export interface DeadLetterWriterParams {
  producer: SessionProducer;
  topic: string;
  telemetry: IndexerTelemetry;
  logger: Logger;
  retry: RetryPolicy;
  /** The DLQ topic's max.message.bytes; Kafka's default until known (setMaxMessageBytes). */
  maxMessageBytes?: number;
}

export interface SendOptions {
  signal: AbortSignal;
  /** Called before each wait after a failure. */
  onRetry?: () => void;
}

export class DeadLetterWriter implements Component {
  readonly name = 'dead-letter';
  private readonly params: DeadLetterWriterParams;
  private connected = false;
  private maxMessageBytes: number;

  constructor(params: DeadLetterWriterParams) {
    this.params = params;
    this.maxMessageBytes = params.maxMessageBytes ?? KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
  }

  async start(): Promise<void> {
    if (this.connected) return;
    await this.params.producer.connect();
    this.connected = true;
  }

  /** The DLQ topic's max.message.bytes, as read at start-up. */
  setMaxMessageBytes(bytes: number): void {
    this.maxMessageBytes = bytes;
  }

  /** Resolves once every letter is in the DLQ (whole or cut) or counted as lost. */
  async send(letters: DeadLetter[], options: SendOptions): Promise<void> {
    if (letters.length === 0) return;
    const limit = this.maxMessageBytes;
    const attempts = letters.map((letter): Attempt => {
      const whole = deadLetterMessage(letter);
      if (batchBytes(whole) + SAFETY_BYTES <= limit) return { letter, message: whole, form: 'whole' };
      const why = `over the dead-letter topic's max.message.bytes (${limit})`;
      return { letter, message: cutDeadLetterMessage(letter, limit, why), form: 'cut', reason: 'over-limit' };
    });
    for (const group of groupsWithin(attempts, limit - SAFETY_BYTES)) await this.deliver(group, options);
  }

  /** Sends a group; refused, each letter alone, and a letter refused alone in its next form. */
  private async deliver(group: Attempt[], options: SendOptions): Promise<void> {
    const refused = await this.produce(group, options);
    if (refused === undefined) {
      for (const a of group) this.delivered(a);
      return;
    }
    if (group.length > 1) {
      for (const a of group) await this.deliver([a], options);
      return;
    }
    const [a] = group;
    if (!a) return;
    const why = `refused by the dead-letter topic (${refused})`;
    if (a.form === 'bare') {
      this.lost(a, refused);
      return;
    }
    const bare = a.form === 'cut';
    const message = cutDeadLetterMessage(a.letter, this.maxMessageBytes, why, bare);
    await this.deliver(
      [{ letter: a.letter, message, form: bare ? 'bare' : 'cut', reason: refused }],
      options,
    );
  }

  /** One send, retried while its failure may pass; the Kafka error type if the records were refused. */
  private async produce(group: Attempt[], options: SendOptions): Promise<string | undefined> {
    const { producer, topic, telemetry, logger } = this.params;
    return retry(
      'dead-letter send',
      async () => {
        try {
          await producer.send({ topic, messages: group.map((a) => a.message) });
          return undefined;
        } catch (err) {
          const refused = refusalOf(err);
          if (refused !== undefined) return refused;
          throw new IndexerError('PM_ERR_DLQ', `${topic}: ${messageOf(err)}`, err);
        }
      },
      {
        ...this.params.retry,
        signal: options.signal,
        onRetry: (err, attempt, delayMs) => {
          telemetry.retried.inc({ operation: 'dlq' });
          logger.warn({ err, attempt, delayMs, records: group.length }, 'dead-letter topic failed, retrying');
          options.onRetry?.();
        },
      },
    );
  }

  private delivered(a: Attempt): void {
    const { telemetry, logger } = this.params;
    const { code, error, partition, message } = a.letter;
    telemetry.deadLettered.inc({ code });
    const where = { code, error, topic: a.letter.topic, partition, offset: message.offset };
    if (a.form === 'whole') {
      logger.warn(where, 'record dead-lettered');
      return;
    }
    const reason = a.reason ?? 'over-limit';
    telemetry.deadLettersTruncated.inc({ reason });
    logger.warn(
      {
        ...where,
        reason,
        form: a.form,
        bytes: message.value?.length ?? 0,
        sentBytes: bytesOf(a.message.value),
      },
      'record dead-lettered cut to fit the dead-letter topic',
    );
  }

  private lost(a: Attempt, reason: string): void {
    const { telemetry, logger, topic: dlq } = this.params;
    const { code, error, topic, partition, message } = a.letter;
    telemetry.deadLettersLost.inc({ reason });
    logger.error(
      {
        code,
        error,
        topic,
        partition,
        offset: message.offset,
        dlq,
        reason,
        bytes: message.value?.length ?? 0,
      },
      'dead letter lost: the dead-letter topic refused it even bare; the partition moves on',
    );
  }

  async shutdown(deadline: number): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await beforeDeadline(this.params.producer.disconnect(), deadline, undefined);
  }
}

/** Consecutive attempts in groups of at most `bytes` (a group holds one attempt at least). */
function groupsWithin(attempts: Attempt[], bytes: number): Attempt[][] {
  const groups: Attempt[][] = [];
  let current: Attempt[] = [];
  let size = BATCH_OVERHEAD;
  for (const a of attempts) {
    const own = batchBytes(a.message) - BATCH_OVERHEAD;
    if (current.length > 0 && size + own > bytes) {
      groups.push(current);
      current = [];
      size = BATCH_OVERHEAD;
    }
    current.push(a);
    size += own;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}
