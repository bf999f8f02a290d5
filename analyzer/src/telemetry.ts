import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// The analyzer's self-telemetry, declared in one place. Labels stay low-cardinality: an analysis
// status, a failure reason from a closed list, an operation name.

export interface AnalyzerTelemetry {
  registry: Registry;
  consumed: Counter<'topic'>;
  analysed: Counter<'status'>;
  failures: Counter<'reason'>;
  invalid: Counter;
  unwindDuration: Histogram<'result'>;
  retried: Counter<'operation'>;
  committed: Counter<'topic'>;
}

export function createTelemetry(
  registry: Registry = new Registry(),
  defaultMetrics = true,
): AnalyzerTelemetry {
  if (defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'podmortem_analyzer_' });
  const registers = [registry];
  return {
    registry,
    consumed: new Counter({
      name: 'podmortem_analyzer_records_consumed_total',
      help: 'Kafka records taken from the crash topic',
      labelNames: ['topic'],
      registers,
    }),
    analysed: new Counter({
      name: 'podmortem_analyzer_crashes_analysed_total',
      help: 'Analysis records published and acknowledged, by status (ok, partial, failed, skipped)',
      labelNames: ['status'],
      registers,
    }),
    failures: new Counter({
      name: 'podmortem_analyzer_failures_total',
      help: 'Crashes analysed as failed or skipped, by reason (timeout, not-a-core, executable-missing, ...)',
      labelNames: ['reason'],
      registers,
    }),
    invalid: new Counter({
      name: 'podmortem_analyzer_records_invalid_total',
      help: 'Crash-topic records that are no valid crash event, passed over (the indexer dead-letters them)',
      registers,
    }),
    unwindDuration: new Histogram({
      name: 'podmortem_analyzer_unwind_duration_seconds',
      help: 'Wall-clock time of one unwinder run, by result (ok, or the failure reason)',
      labelNames: ['result'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    retried: new Counter({
      name: 'podmortem_analyzer_retries_total',
      help: 'Attempts made again after a retriable failure, by operation (store, publish)',
      labelNames: ['operation'],
      registers,
    }),
    committed: new Counter({
      name: 'podmortem_analyzer_offsets_committed_total',
      help: 'Crash records whose offsets were committed after their analysis was acknowledged',
      labelNames: ['topic'],
      registers,
    }),
  };
}
