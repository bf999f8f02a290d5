import type { Client } from '@elastic/elasticsearch';
import type { AnalysisRecord, DumpRemoval } from '@podmortem/contract';
import type { Counter } from 'prom-client';
import { isRetriable, retry, type Logger, type RetryPolicy } from '@podmortem/contract/runtime';
import type { BulkWriter, WriteOptions } from './bulk-writer.ts';
import {
  newestPerDocument,
  planAnalysis,
  planRemoval,
  type BulkOperation,
  type ExistingDocument,
} from './crash-merge.ts';
import { readDocuments } from './document-reader.ts';
import { IndexerError, type IndexerErrorCode } from './errors.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// Merges a chunk of analysis records (or of dump removals) into their crashes' documents (the rule: crash-merge.ts):
// one mget of the chunk's documents, one bulk of the planned writes, and for the writes that lost
// against a concurrent one, the same again after a backoff. Returns once every analysis is
// merged, found stale, or rejected by Elasticsearch for good.

export interface AnalysisItem<R> {
  index: string;
  record: AnalysisRecord;
  /** The caller's handle on the item (its Kafka record). */
  ref: R;
}

export interface MergeResult<I> {
  /** Rejected by Elasticsearch for good, or (code PM_ERR_DUPLICATE_ID) of another crash of the id. */
  rejected: { item: I; error: string; code?: IndexerErrorCode }[];
}

export type AnalysisMergeResult<R> = MergeResult<AnalysisItem<R>>;

export interface AnalysisMergerParams {
  es: Client;
  bulk: Pick<BulkWriter, 'writeOperations'>;
  telemetry: IndexerTelemetry;
  logger: Logger;
  retry: RetryPolicy;
}

export class AnalysisMerger {
  private readonly params: AnalysisMergerParams;

  constructor(params: AnalysisMergerParams) {
    this.params = params;
  }

  async write<R>(items: AnalysisItem<R>[], options: WriteOptions): Promise<AnalysisMergeResult<R>> {
    const { newest, superseded } = newestPerDocument(items);
    this.params.telemetry.analysesMerged.inc({ result: 'stale' }, superseded.length);
    return mergeRecords(this.params, newest, options, {
      what: 'analysis',
      plural: 'analyses',
      plan: planAnalysis,
      counter: this.params.telemetry.analysesMerged,
    });
  }
}

export interface RemovalItem<R> {
  index: string;
  record: DumpRemoval;
  ref: R;
}

/**
 * Merges dump removals as analyses are merged. One removal per document per chunk is written
 * (the first: a later one of the same dump would find it removed and change nothing).
 */
export class DumpRemovalMerger {
  private readonly params: AnalysisMergerParams;

  constructor(params: AnalysisMergerParams) {
    this.params = params;
  }

  async write<R>(items: RemovalItem<R>[], options: WriteOptions): Promise<MergeResult<RemovalItem<R>>> {
    const seen = new Set<string>();
    const first = items.filter((i) => {
      const key = `${i.index}/${i.record.crash.id}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    this.params.telemetry.removalsMerged.inc({ result: 'noop' }, items.length - first.length);
    return mergeRecords(this.params, first, options, {
      what: 'dump removal',
      plural: 'dump removals',
      plan: planRemoval,
      counter: this.params.telemetry.removalsMerged,
    });
  }
}

interface MergeKind<Rec> {
  what: string;
  plural: string;
  plan: (
    record: Rec,
    index: string,
    existing: ExistingDocument | undefined,
  ) =>
    | { kind: 'write'; operation: BulkOperation }
    | { kind: 'duplicate'; reason: string }
    | { kind: 'skip'; result: string };
  counter: Counter<'result'>;
}

async function mergeRecords<
  Rec extends { crash: { id: string } },
  Item extends { index: string; record: Rec },
>(
  params: AnalysisMergerParams,
  items: Item[],
  options: WriteOptions,
  kind: MergeKind<Rec>,
): Promise<MergeResult<Item>> {
  const { telemetry, logger } = params;
  const result: MergeResult<Item> = { rejected: [] };
  let pending = items;
  await retry(
    `${kind.what} merge`,
    async () => {
      if (pending.length === 0) return;
      const existing = await readDocuments(
        params.es,
        pending.map((i) => ({ index: i.index, id: i.record.crash.id })),
        options.signal,
      );
      const writes: { item: Item; operation: BulkOperation }[] = [];
      pending.forEach((item, i) => {
        const plan = kind.plan(item.record, item.index, existing[i]);
        if (plan.kind === 'skip') kind.counter.inc({ result: plan.result });
        else if (plan.kind === 'duplicate') {
          telemetry.duplicateIds.inc({ record: kind.what === 'analysis' ? 'analysis' : 'dump-removal' });
          logger.warn(
            { index: item.index, id: item.record.crash.id, reason: plan.reason },
            `${kind.what} of another crash with the same id: dead-lettered`,
          );
          result.rejected.push({ item, error: plan.reason, code: 'PM_ERR_DUPLICATE_ID' });
        } else writes.push({ item, operation: plan.operation });
      });
      const written = await params.bulk.writeOperations(writes, (w) => w.operation, options, 'return');
      for (const { result: r } of written.indexed) kind.counter.inc({ result: r });
      result.rejected.push(...written.rejected.map((r) => ({ item: r.item.item, error: r.error })));
      pending = written.conflicted.map((w) => w.item);
      if (pending.length > 0) {
        throw new IndexerError(
          'PM_ERR_ES_RETRY',
          `${pending.length} ${kind.plural} met a concurrent write of their document: read again`,
        );
      }
    },
    {
      ...params.retry,
      signal: options.signal,
      // As for bulk writes: the records stay in Kafka and the consumer waits.
      retriable: (err) => err instanceof IndexerError || isRetriable(err),
      onRetry: (err, attempt, delayMs) => {
        telemetry.retried.inc({ operation: 'merge' });
        logger.warn(
          { err: err instanceof Error ? err.message : err, attempt, delayMs, records: pending.length },
          `${kind.what} merge failed, retrying`,
        );
        options.onRetry?.();
      },
    },
  );
  return result;
}
