import type { Logger } from 'pino';
import { crashKey, encodeCrashMessage, type CrashEvent } from '@podmortem/contract';
import {
  beforeDeadline,
  createKafka,
  ensureTopics,
  kafkaWaitOut,
  retry,
  SessionProducer,
  type KafkaSecurity,
  type RetryPolicy,
  type TopicSpec,
} from '@podmortem/contract/runtime';
import type { Kafka } from 'kafkajs';
import { AgentError } from './errors.ts';
import type { Sink } from './sink.ts';

// Announces each crash on Kafka: a CloudEvents structured JSON record keyed namespace/pod-uid, by
// the runtime's SessionProducer (idempotent, acks=all, one send at a time, a new session after a
// failed send), so an acknowledged record is on every in-sync replica and a failed send costs at
// most one duplicate record, which the crash id makes harmless. With topicSetup it also creates
// the crash topic when it is missing, in the background: the agent never waits for Kafka to start.

export interface KafkaEmitterParams {
  brokers: string[];
  topic: string;
  clientId: string;
  timeoutMs: number;
  /** TLS and SASL (see kafkaSecurity); none: plaintext. */
  security?: KafkaSecurity;
  logger: Logger;
  /** Create the topic when missing (PODMORTEM_COLLECTOR_CREATE_TOPICS), retried until Kafka answers. */
  topicSetup?: { spec: TopicSpec; createVariable: string; retry: RetryPolicy };
}

export class KafkaEmitter implements Sink {
  readonly name = 'kafka';
  private readonly params: KafkaEmitterParams;
  private readonly producer: SessionProducer;
  private readonly kafka: Kafka;
  private readonly stopSetup = new AbortController();
  private setup: Promise<void> | undefined;

  constructor(params: KafkaEmitterParams) {
    this.params = params;
    const kafka = createKafka({
      clientId: params.clientId,
      brokers: params.brokers,
      logger: params.logger,
      connectionTimeoutMs: Math.min(params.timeoutMs, 10_000),
      requestTimeoutMs: params.timeoutMs,
      // Our own retry (per delivery step, with backoff) takes over after a short burst.
      retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 2000 },
      ...(params.security ? { security: params.security } : {}),
    });
    this.kafka = kafka;
    this.producer = new SessionProducer(kafka);
  }

  /** Connecting waits for the first send: the agent starts (and spools) with Kafka down. */
  start(): Promise<void> {
    const setup = this.params.topicSetup;
    if (setup) this.setup ??= this.setUpTopic(setup);
    return Promise.resolve();
  }

  /** Never throws: a send to a topic still missing fails and is retried by the delivery. */
  private async setUpTopic(setup: NonNullable<KafkaEmitterParams['topicSetup']>): Promise<void> {
    const { logger, brokers } = this.params;
    const signal = this.stopSetup.signal;
    try {
      await retry(
        'kafka crash topic setup',
        () =>
          ensureTopics(this.kafka, [setup.spec], {
            create: true,
            logger,
            brokers,
            createVariable: setup.createVariable,
            timeoutMs: this.params.timeoutMs,
          }),
        kafkaWaitOut(setup.retry, signal, logger),
      );
    } catch (err) {
      if (!signal.aborted)
        logger.warn({ err: (err as Error).message, topic: setup.spec.topic }, 'crash topic setup gave up');
    }
  }

  /** Resolves once the brokers acknowledged the record (acks=all). */
  async announce(event: CrashEvent): Promise<void> {
    try {
      await this.producer.send({
        topic: this.params.topic,
        timeout: this.params.timeoutMs,
        messages: [
          {
            key: crashKey(event),
            value: encodeCrashMessage(event),
            headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' },
          },
        ],
      });
    } catch (err) {
      throw new AgentError('PM_ERR_KAFKA', `topic ${this.params.topic}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** A setup still talking to Kafka is left behind at the deadline (it holds nothing to flush). */
  async shutdown(deadline: number): Promise<void> {
    this.stopSetup.abort();
    if (this.setup) await beforeDeadline(this.setup, deadline, undefined);
    await this.producer.disconnect();
  }
}
