import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// The indexer's self-telemetry, declared in one place. Labels stay low-cardinality: the Kafka
// partition (bounded by the topic), an outcome or error code, an operation name.

export interface IndexerTelemetry {
  registry: Registry;
  consumed: Counter<'topic'>;
  indexed: Counter<'result'>;
  analysesMerged: Counter<'result'>;
  removalsMerged: Counter<'result'>;
  deadLettered: Counter<'code'>;
  duplicateIds: Counter<'record'>;
  deadLettersTruncated: Counter<'reason'>;
  deadLettersLost: Counter<'reason'>;
  topicMaxMessageBytes: Gauge<'topic'>;
  retried: Counter<'operation'>;
  committed: Counter<'topic'>;
  bulkDuration: Histogram<'status'>;
  bulkSplits: Counter;
  consumerLag: Gauge<'topic' | 'partition'>;
  waiting: Gauge<'operation'>;
  templatesInstalled: Counter<'template'>;
  indicesDeleted: Counter;
  retentionRuns: Counter<'status'>;
}

export function createTelemetry(
  registry: Registry = new Registry(),
  defaultMetrics = true,
): IndexerTelemetry {
  if (defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'podmortem_indexer_' });
  const registers = [registry];
  return {
    registry,
    consumed: new Counter({
      name: 'podmortem_indexer_records_consumed_total',
      help: 'Kafka records taken from the crash and analysis topics',
      labelNames: ['topic'],
      registers,
    }),
    indexed: new Counter({
      name: 'podmortem_indexer_records_indexed_total',
      help: 'Records Elasticsearch acknowledged, by result (created, or updated on re-delivery)',
      labelNames: ['result'],
      registers,
    }),
    analysesMerged: new Counter({
      name: 'podmortem_indexer_analyses_merged_total',
      help: "Analysis records merged into their crash's document, by result (created: before the crash, updated, stale: a newer analysis is there, noop: this one is)",
      labelNames: ['result'],
      registers,
    }),
    removalsMerged: new Counter({
      name: 'podmortem_indexer_dump_removals_merged_total',
      help: "Dump removals merged into their crash's document, by result (created: before the crash, updated, noop: the dump was removed already)",
      labelNames: ['result'],
      registers,
    }),
    deadLettered: new Counter({
      name: 'podmortem_indexer_records_dead_lettered_total',
      help: 'Records written to the dead-letter topic, by error code',
      labelNames: ['code'],
      registers,
    }),
    duplicateIds: new Counter({
      name: 'podmortem_indexer_duplicate_ids_total',
      help: 'Records of a crash id already held by another crash (another time, namespace, pod or node), by record (crash, analysis, dump-removal): never merged, dead-lettered',
      labelNames: ['record'],
      registers,
    }),
    deadLettersTruncated: new Counter({
      name: 'podmortem_indexer_dead_letters_truncated_total',
      help: "Dead letters written cut to fit the dead-letter topic (value head, sha256 of the original), by reason (over-limit: over the topic's max.message.bytes; else the Kafka error that refused it whole)",
      labelNames: ['reason'],
      registers,
    }),
    deadLettersLost: new Counter({
      name: 'podmortem_indexer_dead_letters_lost_total',
      help: 'Records the dead-letter topic refused even cut and bare, logged with their partition and offset and skipped, by the Kafka error',
      labelNames: ['reason'],
      registers,
    }),
    topicMaxMessageBytes: new Gauge({
      name: 'podmortem_indexer_topic_max_message_bytes',
      help: 'max.message.bytes of the crash, analysis and dead-letter topics, read at start-up',
      labelNames: ['topic'],
      registers,
    }),
    retried: new Counter({
      name: 'podmortem_indexer_retries_total',
      help: 'Attempts made again after a retriable failure, by operation',
      labelNames: ['operation'],
      registers,
    }),
    committed: new Counter({
      name: 'podmortem_indexer_offsets_committed_total',
      help: 'Records whose offsets were committed after Elasticsearch (and the DLQ) acknowledged them',
      labelNames: ['topic'],
      registers,
    }),
    bulkDuration: new Histogram({
      name: 'podmortem_indexer_bulk_duration_seconds',
      help: 'Latency of one bulk request to Elasticsearch, by status (ok, partial, error)',
      labelNames: ['status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    bulkSplits: new Counter({
      name: 'podmortem_indexer_bulk_splits_total',
      help: 'Bulk requests Elasticsearch refused as too large (HTTP 413), sent again in halves',
      registers,
    }),
    consumerLag: new Gauge({
      name: 'podmortem_indexer_consumer_lag',
      help: 'Records of a partition not yet committed by this group (high watermark - committed offset)',
      labelNames: ['topic', 'partition'],
      registers,
    }),
    waiting: new Gauge({
      name: 'podmortem_indexer_waiting',
      help: 'Partitions paused while their batch waits for an operation to succeed again (elasticsearch, dlq)',
      labelNames: ['operation'],
      registers,
    }),
    templatesInstalled: new Counter({
      name: 'podmortem_indexer_templates_installed_total',
      help: 'Component and index templates installed or upgraded at start-up',
      labelNames: ['template'],
      registers,
    }),
    indicesDeleted: new Counter({
      name: 'podmortem_indexer_retention_indices_deleted_total',
      help: 'Monthly crash indices deleted by the retention job',
      registers,
    }),
    retentionRuns: new Counter({
      name: 'podmortem_indexer_retention_runs_total',
      help: 'Runs of the retention job, by status (ok, error)',
      labelNames: ['status'],
      registers,
    }),
  };
}
