import {
  Kafka,
  logLevel,
  Partitioners,
  type LogEntry,
  type logCreator,
  type Producer,
  type ProducerConfig,
  type RetryOptions as KafkaRetryOptions,
} from 'kafkajs';
import type { Logger } from 'pino';

// The Kafka client of every service: kafkajs logging through pino as JSON like the rest of the
// service, and the one producer configuration under which a send is acknowledged by every
// in-sync replica and a retried send is not written twice within a producer session.

export interface KafkaParams {
  brokers: string[];
  clientId: string;
  logger: Logger;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** kafkajs's own retry, before the caller's retry (with its backoff) takes over. */
  retry?: KafkaRetryOptions;
}

/** The `acks` of every send: all in-sync replicas. */
export const ACKS_ALL = -1;

export const idempotentProducerConfig: Readonly<ProducerConfig> = Object.freeze({
  idempotent: true,
  // More than one in flight may reorder the records of a partition after a retry.
  maxInFlightRequests: 1,
  // A topic appears through deploy/, with its partitions and replication; never by a typo.
  allowAutoTopicCreation: false,
  createPartitioner: Partitioners.DefaultPartitioner,
});

export function kafkaLogCreator(logger: Logger): logCreator {
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      const { message, ...extra } = log;
      // kafkajs repeats its own timestamp and logger name; pino has both.
      const fields: Record<string, unknown> = { kafkajs: namespace, ...extra };
      delete fields.timestamp;
      delete fields.logger;
      if (level === logLevel.ERROR) logger.error(fields, message);
      else if (level === logLevel.WARN) logger.warn(fields, message);
      else if (level === logLevel.INFO) logger.info(fields, message);
      else logger.debug(fields, message);
    };
}

export function createKafka(params: KafkaParams): Kafka {
  return new Kafka({
    clientId: params.clientId,
    brokers: params.brokers,
    ...(params.connectionTimeoutMs === undefined ? {} : { connectionTimeout: params.connectionTimeoutMs }),
    ...(params.requestTimeoutMs === undefined ? {} : { requestTimeout: params.requestTimeoutMs }),
    ...(params.retry === undefined ? {} : { retry: params.retry }),
    logLevel: logLevel.WARN,
    logCreator: kafkaLogCreator(params.logger.child({ component: 'kafkajs' })),
  });
}

export function createIdempotentProducer(kafka: Kafka): Producer {
  return kafka.producer({ ...idempotentProducerConfig });
}
