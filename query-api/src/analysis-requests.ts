import {
  ANALYZER_FIELDS,
  crashKey,
  encodeCrashMessage,
  validateCrashEvent,
  type CrashEvent,
} from '@podmortem/contract';
import {
  ACKS_ALL,
  createIdempotentProducer,
  createKafka,
  messageOf,
  type Logger,
} from '@podmortem/contract/runtime';
import type { Producer } from 'kafkajs';
import { PM_ERR_BACKEND_UNAVAILABLE, PM_ERR_CRASH_INVALID } from './errors.ts';
import type { Telemetry } from './telemetry.ts';

// Re-analysis requests: a crash event as stored, without the analyzer's fields, published on the
// analysis-request topic through the idempotent producer, keyed and encoded like the crash topic.
// The producer connects on the first request, not at start: the API serves everything else (and
// is ready) while Kafka is down, and a request then is a 503 in a moment, never a hang.

export interface AnalysisRequestsParams {
  brokers: string[];
  clientId: string;
  topic: string;
  timeoutMs: number;
  logger: Logger;
  telemetry: Telemetry;
}

/** The crash event of a stored crash document: the contract's fields without the analyzer's. */
export function requestEventOf(stored: CrashEvent): CrashEvent {
  const { analysis, ...rest } = structuredClone(stored);
  if (!analysis) return rest;
  // Rebuilt without the analyzer's fields (a dynamic `delete` is what lint forbids).
  const owned = new Set<string>(ANALYZER_FIELDS);
  const collectors = Object.fromEntries(Object.entries(analysis).filter(([k]) => !owned.has(k)));
  return Object.keys(collectors).length === 0 ? rest : { ...rest, analysis: collectors };
}

export class AnalysisRequests {
  private readonly params: AnalysisRequestsParams;
  private producer: Promise<Producer> | undefined;

  constructor(params: AnalysisRequestsParams) {
    this.params = params;
  }

  private connected(): Promise<Producer> {
    if (!this.producer) {
      const { brokers, clientId, timeoutMs, logger } = this.params;
      const kafka = createKafka({
        brokers,
        clientId,
        logger,
        connectionTimeoutMs: timeoutMs,
        requestTimeoutMs: timeoutMs,
        // One quick retry of kafkajs's own; the caller hears of an outage as a 503 and retries.
        retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 1000 },
      });
      const producer = createIdempotentProducer(kafka);
      this.producer = producer.connect().then(() => producer);
    }
    return this.producer;
  }

  /** Publishes the request; resolves once every in-sync replica has it, else a 503. */
  async request(stored: CrashEvent): Promise<void> {
    const event = requestEventOf(stored);
    const valid = validateCrashEvent(event);
    if (!valid.ok) throw PM_ERR_CRASH_INVALID(stored.crash.id, valid.errors);
    const pending = this.connected();
    try {
      const producer = await pending;
      await producer.send({
        topic: this.params.topic,
        acks: ACKS_ALL,
        timeout: this.params.timeoutMs,
        messages: [{ key: crashKey(valid.value), value: encodeCrashMessage(valid.value) }],
      });
    } catch (err) {
      // A fresh producer for the next request: this one may be half-connected or fenced.
      if (this.producer === pending) this.producer = undefined;
      void pending.then((p) => p.disconnect()).catch(() => undefined);
      this.params.telemetry.backendErrors.inc({ backend: 'kafka' });
      throw PM_ERR_BACKEND_UNAVAILABLE('Kafka', messageOf(err));
    }
  }

  async close(): Promise<void> {
    const pending = this.producer;
    this.producer = undefined;
    if (pending) await pending.then((p) => p.disconnect()).catch(() => undefined);
  }
}
