import {
  ANALYZER_FIELDS,
  crashKey,
  encodeCrashMessage,
  validateCrashEvent,
  type CrashEvent,
} from '@podmortem/contract';
import {
  createKafka,
  messageOf,
  SessionProducer,
  type KafkaSecurity,
  type Logger,
} from '@podmortem/contract/runtime';
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
  /** TLS and SASL (see kafkaSecurity); none: plaintext. */
  security?: KafkaSecurity;
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

/**
 * A producer of the API's (re-analysis requests, dump removals). It connects on the first send,
 * not at start, so an API whose Kafka is down serves everything else and such a request then is a
 * quick 503: one quick retry of kafkajs's own, then the caller hears of the outage.
 */
export function apiProducer(params: {
  brokers: string[];
  clientId: string;
  timeoutMs: number;
  security?: KafkaSecurity;
  logger: Logger;
}): SessionProducer {
  const { brokers, clientId, timeoutMs, security, logger } = params;
  const kafka = createKafka({
    brokers,
    clientId,
    logger,
    ...(security ? { security } : {}),
    connectionTimeoutMs: timeoutMs,
    requestTimeoutMs: timeoutMs,
    retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  return new SessionProducer(kafka);
}

export class AnalysisRequests {
  private readonly params: AnalysisRequestsParams;
  private readonly producer: SessionProducer;

  constructor(params: AnalysisRequestsParams) {
    this.params = params;
    this.producer = apiProducer(params);
  }

  /** Publishes the request; resolves once every in-sync replica has it, else a 503. */
  async request(stored: CrashEvent): Promise<void> {
    const event = requestEventOf(stored);
    const valid = validateCrashEvent(event);
    if (!valid.ok) throw PM_ERR_CRASH_INVALID(stored.crash.id, valid.errors);
    try {
      await this.producer.send({
        topic: this.params.topic,
        timeout: this.params.timeoutMs,
        messages: [{ key: crashKey(valid.value), value: encodeCrashMessage(valid.value) }],
      });
    } catch (err) {
      this.params.telemetry.backendErrors.inc({ backend: 'kafka' });
      throw PM_ERR_BACKEND_UNAVAILABLE('Kafka', messageOf(err));
    }
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}
