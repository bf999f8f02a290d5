import {
  Kafka,
  logLevel,
  Partitioners,
  type Admin,
  type AdminConfig,
  type Consumer,
  type ConsumerConfig,
  type KafkaConfig,
  type LogEntry,
  type logCreator,
  type Producer,
  type ProducerConfig,
  type ProducerRecord,
  type RecordMetadata,
  type RetryOptions as KafkaRetryOptions,
} from 'kafkajs';
import type { Logger } from 'pino';
import { namedKafkaAuthError, type KafkaSecurity } from './kafka-security.ts';

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
  /** TLS and SASL (see kafkaSecurity); none: plaintext. */
  security?: KafkaSecurity;
}

/** The `acks` of every send: all in-sync replicas. */
export const ACKS_ALL = -1;

export const idempotentProducerConfig: Readonly<ProducerConfig> = Object.freeze({
  idempotent: true,
  // More than one in flight may reorder the records of a partition after a retry.
  maxInFlightRequests: 1,
  // A topic is made on purpose, with its partitions and replication (topics-setup.ts); never by a
  // typo.
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

/** A client whose connect() turns a SASL refusal into a KafkaAuthError naming the variables. */
function namingRefusals<T extends { connect(): Promise<void> }>(client: T, variables: string[]): T {
  const connect = client.connect.bind(client);
  client.connect = () =>
    connect().catch((err: unknown) => {
      throw namedKafkaAuthError(err, variables);
    });
  return client;
}

/**
 * Kafka whose producers, consumers and admins say which settings hold the credentials the broker
 * refused: kafkajs' own error names neither, and a refusal is the one connect failure that no
 * retry mends.
 */
class NamedCredentialsKafka extends Kafka {
  readonly #variables: string[];

  constructor(config: KafkaConfig, variables: string[]) {
    super(config);
    this.#variables = variables;
  }

  override producer(config?: ProducerConfig): Producer {
    return namingRefusals(super.producer(config), this.#variables);
  }

  override consumer(config: ConsumerConfig): Consumer {
    return namingRefusals(super.consumer(config), this.#variables);
  }

  override admin(config?: AdminConfig): Admin {
    return namingRefusals(super.admin(config), this.#variables);
  }
}

export function createKafka(params: KafkaParams): Kafka {
  const { security } = params;
  const config: KafkaConfig = {
    clientId: params.clientId,
    brokers: params.brokers,
    ...(params.connectionTimeoutMs === undefined ? {} : { connectionTimeout: params.connectionTimeoutMs }),
    ...(params.requestTimeoutMs === undefined ? {} : { requestTimeout: params.requestTimeoutMs }),
    ...(params.retry === undefined ? {} : { retry: params.retry }),
    ...(security?.ssl === undefined ? {} : { ssl: security.ssl }),
    ...(security?.sasl === undefined ? {} : { sasl: security.sasl }),
    logLevel: logLevel.WARN,
    logCreator: kafkaLogCreator(params.logger.child({ component: 'kafkajs' })),
  };
  return security?.sasl === undefined
    ? new Kafka(config)
    : new NamedCredentialsKafka(config, security.credentialVariables);
}

export function createIdempotentProducer(kafka: Kafka): Producer {
  return kafka.producer({ ...idempotentProducerConfig });
}

/**
 * An idempotent producer (acks=all) that sends one record batch at a time and ends its session
 * after any failed send. kafkajs hands a partition's sequence numbers back when a send fails, even
 * when the broker may have written the batch (a timeout waiting for the in-sync replicas, a leader
 * lost mid-request); the session's next batch then reuses them and the broker drops it as a
 * duplicate while acknowledging it, so a record is lost. Overlapping sends make it worse (one's
 * rollback hands its numbers to the other). A new session (a new producer id) starts its
 * sequences afresh: a failed send costs at most one duplicate record, never a lost one. Seen with
 * a broker of a three-broker cluster killed under load (test/cluster-kafka-broker-loss.test.ts).
 */
export class SessionProducer {
  private readonly kafka: Kafka;
  private session: Promise<Producer> | undefined;
  /** The send in flight (settled or not): the next one starts after it. */
  private sending: Promise<unknown> = Promise.resolve();

  constructor(kafka: Kafka) {
    this.kafka = kafka;
  }

  /** Connects now (a send connects by itself otherwise); a failure leaves no session behind. */
  async connect(): Promise<void> {
    await this.connected();
  }

  /** Resolves once every in-sync replica has the batch. Sends run one after the other. */
  send(record: Omit<ProducerRecord, 'acks'>): Promise<RecordMetadata[]> {
    const sent = this.sending.then(() => this.sendNow(record));
    this.sending = sent.catch(() => undefined);
    return sent;
  }

  /** Ends the session (a send in flight fails); a send after this connects a new one. Never throws. */
  async disconnect(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (session) await session.then((p) => p.disconnect()).catch(() => undefined);
  }

  private connected(): Promise<Producer> {
    if (!this.session) {
      const producer = createIdempotentProducer(this.kafka);
      const session = producer.connect().then(
        () => producer,
        async (err: unknown) => {
          await producer.disconnect().catch(() => undefined);
          throw err;
        },
      );
      this.session = session;
      session.catch(() => {
        if (this.session === session) this.session = undefined;
      });
    }
    return this.session;
  }

  private async sendNow(record: Omit<ProducerRecord, 'acks'>): Promise<RecordMetadata[]> {
    const session = this.connected();
    try {
      const producer = await session;
      return await producer.send({ ...record, acks: ACKS_ALL });
    } catch (err) {
      if (this.session === session) this.session = undefined;
      void session.then((p) => p.disconnect()).catch(() => undefined);
      throw err;
    }
  }
}
