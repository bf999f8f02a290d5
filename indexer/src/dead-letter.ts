import { DLQ_HEADERS } from '@podmortem/contract';
import {
  ACKS_ALL,
  beforeDeadline,
  messageOf,
  retry,
  type Component,
  type Logger,
  type RetryPolicy,
} from '@podmortem/contract/runtime';
import type { IHeaders, KafkaMessage, Message, Producer } from 'kafkajs';
import { IndexerError, type IndexerErrorCode } from './errors.ts';
import { truncateError } from './record-decoder.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// The dead-letter topic: a record that can never be indexed is written there unchanged (value,
// key, headers, timestamp) with headers saying why and where it came from, so it can be read,
// fixed and replayed. The producer is idempotent with acks=all; a send is retried until the
// topic acknowledges or the indexer shuts down, and offsets never move past an unsent letter.
// Letters are at least once: a process killed between the DLQ's acknowledgement and the offset
// commit writes them again on re-delivery, with the same source partition and offset headers, by
// which readers of the DLQ tell them apart. (Kafka transactions would make this exactly once;
// kafkajs's transactions proved unreliable against Kafka 4 here: CONCURRENT_TRANSACTIONS errors.)

export interface DeadLetter {
  topic: string;
  partition: number;
  message: KafkaMessage;
  code: IndexerErrorCode;
  error: string;
}

export function deadLetterMessage(letter: DeadLetter): Message {
  const { message } = letter;
  const headers: IHeaders = {
    ...(message.headers ?? {}),
    [DLQ_HEADERS.error]: truncateError(letter.error),
    [DLQ_HEADERS.errorCode]: letter.code,
    [DLQ_HEADERS.sourceTopic]: letter.topic,
    [DLQ_HEADERS.sourcePartition]: String(letter.partition),
    [DLQ_HEADERS.sourceOffset]: message.offset,
  };
  return { key: message.key, value: message.value, headers, timestamp: message.timestamp };
}

export interface DeadLetterWriterParams {
  producer: Producer;
  topic: string;
  telemetry: IndexerTelemetry;
  logger: Logger;
  retry: RetryPolicy;
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

  constructor(params: DeadLetterWriterParams) {
    this.params = params;
  }

  async start(): Promise<void> {
    if (this.connected) return;
    await this.params.producer.connect();
    this.connected = true;
  }

  async send(letters: DeadLetter[], options: SendOptions): Promise<void> {
    if (letters.length === 0) return;
    const { producer, topic, telemetry, logger } = this.params;
    await retry(
      'dead-letter send',
      async () => {
        try {
          await producer.send({ topic, acks: ACKS_ALL, messages: letters.map(deadLetterMessage) });
        } catch (err) {
          throw new IndexerError('PM_ERR_DLQ', `${topic}: ${messageOf(err)}`, err);
        }
      },
      {
        ...this.params.retry,
        signal: options.signal,
        onRetry: (err, attempt, delayMs) => {
          telemetry.retried.inc({ operation: 'dlq' });
          logger.warn(
            { err, attempt, delayMs, records: letters.length },
            'dead-letter topic failed, retrying',
          );
          options.onRetry?.();
        },
      },
    );
    for (const l of letters) {
      telemetry.deadLettered.inc({ code: l.code });
      logger.warn(
        { code: l.code, error: l.error, partition: l.partition, offset: l.message.offset },
        'record dead-lettered',
      );
    }
  }

  async shutdown(deadline: number): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await beforeDeadline(this.params.producer.disconnect(), deadline, undefined);
  }
}
