import type { CrashEvent } from '@podmortem/contract';
import { messageOf, type Logger, type SessionProducer } from '@podmortem/contract/runtime';
import {
  isStoreError,
  removeDump,
  type RemovalProducer,
  type RemovedDump,
  type Store,
} from '@podmortem/contract/store';
import { apiProducer, requestEventOf } from './analysis-requests.ts';
import { PM_ERR_BACKEND_UNAVAILABLE } from './errors.ts';
import type { Telemetry } from './telemetry.ts';

// A user's deletion of a stored core: the contract's removeDump (core deleted, stored event
// marked, DumpRemoval produced with acks=all) with the API's store and a producer of its own. Like
// the re-analysis producer it connects on the first deletion, not at start, so an API whose
// Kafka is down serves everything else and a deletion then is a quick 503.

export interface DumpRemovalsParams {
  store: Store;
  brokers: string[];
  clientId: string;
  topic: string;
  timeoutMs: number;
  logger: Logger;
  telemetry: Telemetry;
}

/** A failed send, told apart from the store's failures so that a 503 names the right backend. */
class KafkaSendError extends Error {}

export class DumpRemovals {
  private readonly params: DumpRemovalsParams;
  private readonly producer: SessionProducer;

  constructor(params: DumpRemovalsParams) {
    this.params = params;
    this.producer = apiProducer(params);
  }

  /**
   * Deletes the crash's dump as `username`. Idempotent: a dump removed before keeps the first
   * removal's facts (changed: false). A failed step is a 503 naming its backend; calling again
   * completes the removal.
   */
  async delete(indexed: CrashEvent, username: string, now = new Date()): Promise<RemovedDump> {
    const producer: RemovalProducer = {
      send: async (record) => {
        try {
          return await this.producer.send(record);
        } catch (err) {
          throw new KafkaSendError(messageOf(err), { cause: err });
        }
      },
    };
    try {
      return await removeDump({
        store: this.params.store,
        producer,
        // The indexed document carries the analyzer's fields; the store keeps the collector's.
        event: requestEventOf(indexed),
        change: {
          status: 'deleted',
          reason: `deleted by ${username}`,
          removed_at: now,
          removed_by: username,
        },
        topic: this.params.topic,
        timeoutMs: this.params.timeoutMs,
      });
    } catch (err) {
      if (err instanceof KafkaSendError) {
        this.params.telemetry.backendErrors.inc({ backend: 'kafka' });
        throw PM_ERR_BACKEND_UNAVAILABLE('Kafka', err.message);
      }
      if (isStoreError(err)) {
        this.params.telemetry.backendErrors.inc({ backend: 'storage' });
        throw PM_ERR_BACKEND_UNAVAILABLE('storage', err.message);
      }
      throw err;
    }
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}
