import type { Logger } from 'pino';
import { crashKey, encodeCrashMessage, type CrashEvent } from '@podmortem/contract';
import { createKafka, SessionProducer } from '@podmortem/contract/runtime';
import { AgentError } from './errors.ts';
import type { Sink } from './sink.ts';

// Announces each crash on Kafka: a CloudEvents structured JSON record keyed namespace/pod-uid, by
// the runtime's SessionProducer (idempotent, acks=all, one send at a time, a new session after a
// failed send), so an acknowledged record is on every in-sync replica and a failed send costs at
// most one duplicate record, which the crash id makes harmless.

export interface KafkaEmitterParams {
  brokers: string[];
  topic: string;
  clientId: string;
  timeoutMs: number;
  logger: Logger;
}

export class KafkaEmitter implements Sink {
  readonly name = 'kafka';
  private readonly params: KafkaEmitterParams;
  private readonly producer: SessionProducer;

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
    });
    this.producer = new SessionProducer(kafka);
  }

  /** Connecting waits for the first send: the agent starts (and spools) with Kafka down. */
  start(): Promise<void> {
    return Promise.resolve();
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

  shutdown(): Promise<void> {
    return this.producer.disconnect();
  }
}
