import {
  crashKey,
  encodeDumpDeletionMessage,
  isRemovedDumpStatus,
  validateCrashEvent,
  type CrashEvent,
} from '@podmortem/contract';
import { messageOf, type SessionProducer } from '@podmortem/contract/runtime';
import { isStoreError, readStoredEvent, type Store } from '@podmortem/contract/store';
import { apiProducer, requestEventOf, type AnalysisRequestsParams } from './analysis-requests.ts';
import { PM_ERR_BACKEND_UNAVAILABLE, PM_ERR_CRASH_INVALID } from './errors.ts';

// A user's deletion of a stored core, as the API takes part in it: once the route has checked the
// caller's rights, the API reads the crash's stored event (the truth about its dump, whatever the
// index says yet) and, unless the dump is gone already, publishes a deletion request (acks=all) on
// the deletion topic. The retention service consumes it and removes the core, so the API needs
// neither a writable storage mount nor credentials that may delete. Like the re-analysis producer
// the producer connects on the first deletion, so an API whose Kafka is down serves everything
// else and a deletion then is a quick 503.

/** The re-analysis requests' brokers, timeout and security, and the store to read events from. */
export interface DumpDeletionsParams extends AnalysisRequestsParams {
  store: Store;
}

export type DeletionOutcome =
  /** Removed before (by a user or by retention): the first removal's facts stand. */
  | { kind: 'removed'; dump: CrashEvent['dump'] }
  /** The request is on the deletion topic; `dump` is the dump as it still is. */
  | { kind: 'requested'; dump: CrashEvent['dump']; requestedAt: Date };

export class DumpDeletions {
  private readonly params: DumpDeletionsParams;
  private readonly producer: SessionProducer;

  constructor(params: DumpDeletionsParams) {
    this.params = params;
    this.producer = apiProducer(params);
  }

  /** Asks for the crash's dump to be deleted as `username`; a 503 names the backend that failed. */
  async request(indexed: CrashEvent, username: string, now = new Date()): Promise<DeletionOutcome> {
    // The indexed document carries the analyzer's fields; the store keeps the collector's.
    const event = requestEventOf(indexed);
    const valid = validateCrashEvent(event);
    if (!valid.ok) throw PM_ERR_CRASH_INVALID(indexed.crash.id, valid.errors);
    let stored: CrashEvent | undefined;
    try {
      stored = await readStoredEvent(this.params.store, valid.value);
    } catch (err) {
      if (!isStoreError(err)) throw err;
      this.params.telemetry.backendErrors.inc({ backend: 'storage' });
      throw PM_ERR_BACKEND_UNAVAILABLE('storage', err.message);
    }
    const removed = [stored, valid.value].find((e) => e !== undefined && isRemovedDumpStatus(e.dump.status));
    if (removed) return { kind: 'removed', dump: removed.dump };
    try {
      await this.producer.send({
        topic: this.params.topic,
        timeout: this.params.timeoutMs,
        messages: [
          {
            key: crashKey(valid.value),
            value: encodeDumpDeletionMessage({
              event: stored ?? valid.value,
              requestedBy: username,
              requestedAt: now,
            }),
          },
        ],
      });
    } catch (err) {
      this.params.telemetry.backendErrors.inc({ backend: 'kafka' });
      throw PM_ERR_BACKEND_UNAVAILABLE('Kafka', messageOf(err));
    }
    return { kind: 'requested', dump: (stored ?? valid.value).dump, requestedAt: now };
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}
