import type { Client } from '@elastic/elasticsearch';
import type { CrashEvent } from '@podmortem/contract';
import {
  isRetriable,
  retry,
  type Logger,
  type RetryOptions,
  type RetryPolicy,
} from '@podmortem/contract/runtime';
import { crashCreateOperation, planCrash, type BulkOperation } from './crash-merge.ts';
import { readDocuments } from './document-reader.ts';
import {
  elasticsearchStatus,
  fromElasticsearchError,
  IndexerError,
  retriableStatus,
  type IndexerErrorCode,
} from './errors.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// Bulk-writes crash events by id (a `create`, and for an id already there a conditional `update`
// of the same crash or nothing for another crash of the id, crash-merge.ts: a re-delivered event
// merges into itself, never doubles, keeps an analysis already merged, and a duplicate id is
// refused) and sorts every item's answer: acknowledged, to try again (429, 5xx, blocks), rejected for good (mapping errors), or in
// conflict with a concurrent write (a conditional write's 409, handed back to be planned again). A
// write returns only when each item has an answer; until then the items still wanted are retried
// with backoff, whatever the cause.

export interface BulkItem<R> {
  id: string;
  index: string;
  document: CrashEvent;
  /** The caller's handle on the item (its Kafka record). */
  ref: R;
}

export interface BulkWriteResult<R> {
  indexed: { item: BulkItem<R>; result: string }[];
  /** Rejected by Elasticsearch for good, or (code PM_ERR_DUPLICATE_ID) held by another crash. */
  rejected: { item: BulkItem<R>; error: string; code?: IndexerErrorCode }[];
}

/** What Elasticsearch said about one item of a bulk request. */
export interface BulkItemAnswer {
  status: number;
  result?: string;
  error?: { type?: string; reason?: string | null; caused_by?: { type?: string; reason?: string | null } };
}

export type ItemOutcome =
  | { kind: 'indexed'; result: string }
  | { kind: 'retry'; reason: string }
  | { kind: 'conflict'; reason: string }
  | { kind: 'rejected'; reason: string };

/** Error types that pass once something outside the document changes (blocks, overload). */
const retriableTypes = new Set([
  'cluster_block_exception',
  'es_rejected_execution_exception',
  'unavailable_shards_exception',
  'circuit_breaking_exception',
  'node_not_connected_exception',
  'no_shard_available_action_exception',
  'process_cluster_event_timeout_exception',
]);

function reasonOf(answer: BulkItemAnswer): string {
  const e = answer.error;
  if (!e) return `status ${answer.status}`;
  const cause = e.caused_by ? ` (caused by ${e.caused_by.type ?? 'error'}: ${e.caused_by.reason ?? ''})` : '';
  return `${e.type ?? 'error'}: ${e.reason ?? ''}${cause}`;
}

export function classifyBulkItem(answer: BulkItemAnswer | undefined): ItemOutcome {
  if (!answer) return { kind: 'retry', reason: 'no answer for the item' };
  if (answer.status >= 200 && answer.status < 300 && !answer.error) {
    return { kind: 'indexed', result: answer.result ?? 'indexed' };
  }
  const reason = reasonOf(answer);
  if (answer.status === 409 && answer.error?.type === 'version_conflict_engine_exception') {
    return { kind: 'conflict', reason };
  }
  if (retriableStatus(answer.status) || retriableTypes.has(answer.error?.type ?? '')) {
    return { kind: 'retry', reason };
  }
  return { kind: 'rejected', reason };
}

export interface BulkWriterParams {
  es: Client;
  telemetry: IndexerTelemetry;
  logger: Logger;
  retry: RetryPolicy;
  /** Bulk `timeout`: how long Elasticsearch waits for an unavailable shard. */
  shardWaitMs: number;
}

export interface WriteOptions {
  signal: AbortSignal;
  /** Called before each wait after a failure (the caller pauses its input, once). */
  onRetry?: () => void;
}

export interface OperationsResult<T> {
  indexed: { item: T; result: string }[];
  rejected: { item: T; error: string }[];
  /** Conditional writes that lost against a concurrent one: to be read and planned again. */
  conflicted: T[];
}

export class BulkWriter {
  private readonly params: BulkWriterParams;

  constructor(params: BulkWriterParams) {
    this.params = params;
  }

  async write<R>(items: BulkItem<R>[], options: WriteOptions): Promise<BulkWriteResult<R>> {
    const { telemetry, logger } = this.params;
    const result: BulkWriteResult<R> = { indexed: [], rejected: [] };
    const collect = (written: OperationsResult<{ item: BulkItem<R> }>) => {
      for (const { item, result: r } of written.indexed) {
        result.indexed.push({ item: item.item, result: r });
        telemetry.indexed.inc({ result: r });
      }
      result.rejected.push(...written.rejected.map((r) => ({ item: r.item.item, error: r.error })));
      return written.conflicted.map((c) => c.item);
    };
    // Most crashes are new: one create each. Those that met a document are read and planned.
    let toCreate = items.map((item) => ({ item, operation: crashCreateOperation(item) }));
    let toPlan: BulkItem<R>[] = [];
    await retry(
      'crash write',
      async () => {
        if (toCreate.length > 0) {
          toPlan.push(
            ...collect(await this.writeOperations(toCreate, (w) => w.operation, options, 'return')),
          );
          toCreate = [];
        }
        if (toPlan.length === 0) return;
        const existing = await readDocuments(
          this.params.es,
          toPlan.map((i) => ({ index: i.index, id: i.id })),
          options.signal,
        );
        const writes: { item: BulkItem<R>; operation: BulkOperation }[] = [];
        toPlan.forEach((item, i) => {
          const plan = planCrash(item, existing[i]);
          if (plan.kind === 'duplicate') {
            telemetry.duplicateIds.inc({ record: 'crash' });
            logger.warn(
              { index: item.index, id: item.id, reason: plan.reason },
              'duplicate crash id: dead-lettered',
            );
            result.rejected.push({ item, error: plan.reason, code: 'PM_ERR_DUPLICATE_ID' });
            return;
          }
          if (plan.replaces !== undefined) {
            telemetry.duplicateIds.inc({ record: 'analysis' });
            logger.warn(
              { index: item.index, id: item.id, reason: plan.replaces },
              "a placeholder of another crash's analysis replaced by the crash of the id",
            );
          }
          writes.push({ item, operation: plan.operation });
        });
        toPlan = collect(await this.writeOperations(writes, (w) => w.operation, options, 'return'));
        if (toPlan.length > 0) {
          throw new IndexerError(
            'PM_ERR_ES_RETRY',
            `${toPlan.length} crashes met a concurrent write of their document: read again`,
          );
        }
      },
      this.bulkRetry(options, () => toPlan.length),
    );
    return result;
  }

  /** Writes one operation per item; conflicts are retried (`retry`) or handed back (`return`). */
  async writeOperations<T>(
    items: T[],
    operationOf: (item: T) => BulkOperation,
    options: WriteOptions,
    conflicts: 'retry' | 'return',
  ): Promise<OperationsResult<T>> {
    const result: OperationsResult<T> = { indexed: [], rejected: [], conflicted: [] };
    if (items.length === 0) return result;
    let pending = items;
    await retry(
      'bulk index',
      async () => {
        const answers = await this.bulkOnce(pending.map(operationOf), options.signal);
        const again: T[] = [];
        let firstReason = '';
        pending.forEach((item, i) => {
          const outcome = classifyBulkItem(answers[i]);
          if (outcome.kind === 'indexed') result.indexed.push({ item, result: outcome.result });
          else if (outcome.kind === 'rejected') result.rejected.push({ item, error: outcome.reason });
          else if (outcome.kind === 'conflict' && conflicts === 'return') result.conflicted.push(item);
          else {
            again.push(item);
            firstReason ||= outcome.reason;
          }
        });
        pending = again;
        if (again.length > 0) {
          throw new IndexerError(
            'PM_ERR_ES_RETRY',
            `${again.length} of ${answers.length} documents to try again: ${firstReason}`,
          );
        }
      },
      this.bulkRetry(options, () => pending.length),
    );
    return result;
  }

  /**
   * The retry of every bulk write: whatever the request failed with (network, 5xx, even 401/403
   * while credentials are fixed), the records stay in Kafka and the consumer waits; nothing is
   * dropped for a request-level failure. Programmer errors are not retried.
   */
  private bulkRetry(options: WriteOptions, records: () => number): Partial<RetryOptions> {
    const { telemetry, logger } = this.params;
    return {
      ...this.params.retry,
      signal: options.signal,
      retriable: (err) => err instanceof IndexerError || isRetriable(err),
      onRetry: (err, attempt, delayMs) => {
        telemetry.retried.inc({ operation: 'bulk' });
        logger.warn(
          { err: err instanceof Error ? err.message : err, attempt, delayMs, records: records() },
          'bulk index failed, retrying',
        );
        options.onRetry?.();
      },
    };
  }

  /** One bulk request; its answers in the order of `items`, or a request-level error. */
  private async bulkOnce(
    items: BulkOperation[],
    signal: AbortSignal,
  ): Promise<(BulkItemAnswer | undefined)[]> {
    const { es, telemetry } = this.params;
    const operations: unknown[] = [];
    for (const item of items) operations.push({ [item.action]: item.meta }, item.body);
    const end = telemetry.bulkDuration.startTimer();
    try {
      const res = await es.bulk({ operations, timeout: `${this.params.shardWaitMs}ms` }, { signal });
      end({ status: res.errors ? 'partial' : 'ok' });
      if (res.items.length !== items.length) {
        throw new IndexerError(
          'PM_ERR_ES_UNAVAILABLE',
          `bulk answered ${res.items.length} items for ${items.length} documents`,
        );
      }
      return res.items.map((entry, i) => {
        const action = items[i]?.action;
        const answer = action === undefined ? undefined : entry[action];
        return answer ? { status: answer.status, result: answer.result, error: answer.error } : undefined;
      });
    } catch (err) {
      if (!(err instanceof IndexerError)) end({ status: 'error' });
      if (elasticsearchStatus(err) === 413 && items.length > 1) {
        telemetry.bulkSplits.inc();
        this.params.logger.warn(
          { documents: items.length },
          'bulk too large for Elasticsearch (413): sent again in halves',
        );
        return this.bulkInHalves(items, signal);
      }
      if (elasticsearchStatus(err) === 413) {
        return [{ status: 413, error: { type: 'request_entity_too_large', reason: 'document too large' } }];
      }
      throw fromElasticsearchError('bulk index', err);
    }
  }

  private async bulkInHalves(items: BulkOperation[], signal: AbortSignal) {
    const half = Math.ceil(items.length / 2);
    return [
      ...(await this.bulkOnce(items.slice(0, half), signal)),
      ...(await this.bulkOnce(items.slice(half), signal)),
    ];
  }
}
