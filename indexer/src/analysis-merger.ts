import type { Client } from '@elastic/elasticsearch';
import type { AnalysisRecord } from '@podmortem/contract';
import { isRetriable, retry, type Logger, type RetryPolicy } from '@podmortem/contract/runtime';
import type { BulkWriter, WriteOptions } from './bulk-writer.ts';
import { newestPerDocument, planAnalysis, type BulkOperation } from './crash-merge.ts';
import { readDocuments } from './document-reader.ts';
import { IndexerError, type IndexerErrorCode } from './errors.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// Merges a chunk of analysis records into their crashes' documents (the rule: crash-merge.ts):
// one mget of the chunk's documents, one bulk of the planned writes, and for the writes that lost
// against a concurrent one, the same again after a backoff. Returns once every analysis is
// merged, found stale, or rejected by Elasticsearch for good.

export interface AnalysisItem<R> {
  index: string;
  record: AnalysisRecord;
  /** The caller's handle on the item (its Kafka record). */
  ref: R;
}

export interface AnalysisMergeResult<R> {
  /** Rejected by Elasticsearch for good, or (code PM_ERR_DUPLICATE_ID) of another crash of the id. */
  rejected: { item: AnalysisItem<R>; error: string; code?: IndexerErrorCode }[];
}

export interface AnalysisMergerParams {
  es: Client;
  bulk: Pick<BulkWriter, 'writeOperations'>;
  telemetry: IndexerTelemetry;
  logger: Logger;
  retry: RetryPolicy;
}

interface PlannedWrite<R> {
  item: AnalysisItem<R>;
  operation: BulkOperation;
}

export class AnalysisMerger {
  private readonly params: AnalysisMergerParams;

  constructor(params: AnalysisMergerParams) {
    this.params = params;
  }

  async write<R>(items: AnalysisItem<R>[], options: WriteOptions): Promise<AnalysisMergeResult<R>> {
    const { telemetry, logger } = this.params;
    const result: AnalysisMergeResult<R> = { rejected: [] };
    const { newest, superseded } = newestPerDocument(items);
    telemetry.analysesMerged.inc({ result: 'stale' }, superseded.length);
    let pending = newest;
    await retry(
      'analysis merge',
      async () => {
        if (pending.length === 0) return;
        const existing = await readDocuments(
          this.params.es,
          pending.map((i) => ({ index: i.index, id: i.record.crash.id })),
          options.signal,
        );
        const writes: PlannedWrite<R>[] = [];
        pending.forEach((item, i) => {
          const plan = planAnalysis(item.record, item.index, existing[i]);
          if (plan.kind === 'skip') telemetry.analysesMerged.inc({ result: plan.result });
          else if (plan.kind === 'duplicate') {
            telemetry.duplicateIds.inc({ record: 'analysis' });
            logger.warn(
              { index: item.index, id: item.record.crash.id, reason: plan.reason },
              'analysis of another crash with the same id: dead-lettered',
            );
            result.rejected.push({ item, error: plan.reason, code: 'PM_ERR_DUPLICATE_ID' });
          } else writes.push({ item, operation: plan.operation });
        });
        const written = await this.params.bulk.writeOperations(writes, (w) => w.operation, options, 'return');
        for (const { result: r } of written.indexed) telemetry.analysesMerged.inc({ result: r });
        result.rejected.push(...written.rejected.map((r) => ({ item: r.item.item, error: r.error })));
        pending = written.conflicted.map((w) => w.item);
        if (pending.length > 0) {
          throw new IndexerError(
            'PM_ERR_ES_RETRY',
            `${pending.length} analyses met a concurrent write of their document: read again`,
          );
        }
      },
      {
        ...this.params.retry,
        signal: options.signal,
        // As for bulk writes: the records stay in Kafka and the consumer waits.
        retriable: (err) => err instanceof IndexerError || isRetriable(err),
        onRetry: (err, attempt, delayMs) => {
          telemetry.retried.inc({ operation: 'merge' });
          logger.warn(
            { err: err instanceof Error ? err.message : err, attempt, delayMs, records: pending.length },
            'analysis merge failed, retrying',
          );
          options.onRetry?.();
        },
      },
    );
    return result;
  }
}
