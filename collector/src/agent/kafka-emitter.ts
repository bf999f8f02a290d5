import type { Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { crashKey, encodeCrashMessage, type CrashEvent } from '@podmortem/contract';
import { ACKS_ALL, createIdempotentProducer, createKafka } from '@podmortem/contract/runtime';
import { AgentError } from './errors.ts';
import type { Sink } from './sink.ts';

// Announces each crash on Kafka: a CloudEvents structured JSON record keyed namespace/pod-uid, by
// an idempotent producer with acks=all, so an acknowledged record is on every in-sync replica and
// a retried send does not write it twice within a producer session (across sessions the crash id
// makes the duplicate harmless).
//
// One send at a time, and a new producer session after any failed send. kafkajs hands back a
// partition's sequence numbers when a send fails, even when the broker may have written the batch
// (a timeout waiting for the in-sync replicas, a leader lost mid-request); the next batch of that
// session then reuses them, and the broker drops it as a duplicate while acknowledging it: a
// crash lost, seen when a broker of a three-broker cluster was killed. Sends that overlap make it
// worse (one's rollback hands its numbers to the other). A new session (a new producer id) starts
// its sequences afresh, so a failed send costs at most one duplicate record, never a lost one.

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
  private producer: Producer | undefined;
  private connecting: Promise<Producer> | undefined;
  /** The send in flight (settled or not): the next one starts after it. */
  private sending: Promise<unknown> = Promise.resolve();

  constructor(params: KafkaEmitterParams) {
    this.params = params;
  }

  /** Connecting waits for the first send: the agent starts (and spools) with Kafka down. */
  start(): Promise<void> {
    return Promise.resolve();
  }

  private connect(): Promise<Producer> {
    this.connecting ??= (async () => {
      const kafka = createKafka({
        clientId: this.params.clientId,
        brokers: this.params.brokers,
        logger: this.params.logger,
        connectionTimeoutMs: Math.min(this.params.timeoutMs, 10_000),
        requestTimeoutMs: this.params.timeoutMs,
        // Our own retry (per delivery step, with backoff) takes over after a short burst.
        retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 2000 },
      });
      const producer = createIdempotentProducer(kafka);
      try {
        await producer.connect();
      } catch (err) {
        await producer.disconnect().catch(() => undefined);
        throw err;
      }
      this.producer = producer;
      return producer;
    })();
    this.connecting.catch(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** Resolves once the brokers acknowledged the record (acks=all). */
  announce(event: CrashEvent): Promise<void> {
    const sent = this.sending.then(() => this.send(event));
    this.sending = sent.catch(() => undefined);
    return sent;
  }

  private async send(event: CrashEvent): Promise<void> {
    let producer: Producer | undefined;
    try {
      producer = await this.connect();
      await producer.send({
        topic: this.params.topic,
        acks: ACKS_ALL,
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
      if (producer) this.abandon(producer);
      throw new AgentError('PM_ERR_KAFKA', `topic ${this.params.topic}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** Ends the producer's session: the next send connects a new producer (a new producer id). */
  private abandon(producer: Producer): void {
    if (this.producer !== producer) return;
    this.producer = undefined;
    this.connecting = undefined;
    producer.disconnect().catch(() => undefined);
  }

  async shutdown(): Promise<void> {
    const connecting = this.connecting;
    this.connecting = undefined;
    this.producer = undefined;
    if (!connecting) return;
    const producer = await connecting.catch(() => undefined);
    await producer?.disconnect().catch(() => undefined);
  }
}
