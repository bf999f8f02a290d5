import { Counter, Registry, collectDefaultMetrics } from 'prom-client';

// Retention's self-telemetry, declared in one place. Labels stay low-cardinality: a rule from
// the planner's closed list, an operation name.

export interface RetentionTelemetry {
  registry: Registry;
  passes: Counter<'result'>;
  dumpsRemoved: Counter<'rule'>;
  bytesFreed: Counter<'rule'>;
  eventsDeleted: Counter;
  modulesDeleted: Counter;
  malformedEvents: Counter;
  deletionRequests: Counter<'result'>;
  errors: Counter<'operation'>;
}

export function createTelemetry(
  registry: Registry = new Registry(),
  defaultMetrics = true,
): RetentionTelemetry {
  if (defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'podmortem_retention_' });
  const registers = [registry];
  return {
    registry,
    passes: new Counter({
      name: 'podmortem_retention_passes_total',
      help: 'Retention passes, by result (done, dry-run, lease-lost, failed)',
      labelNames: ['result'],
      registers,
    }),
    dumpsRemoved: new Counter({
      name: 'podmortem_retention_dumps_removed_total',
      help: 'Cores removed, by rule (age, namespace-deleted, namespace-budget, total-budget)',
      labelNames: ['rule'],
      registers,
    }),
    bytesFreed: new Counter({
      name: 'podmortem_retention_bytes_freed_total',
      help: 'Stored bytes of the cores removed, by rule',
      labelNames: ['rule'],
      registers,
    }),
    eventsDeleted: new Counter({
      name: 'podmortem_retention_events_deleted_total',
      help: 'Crash events deleted from the store past the event age',
      registers,
    }),
    modulesDeleted: new Counter({
      name: 'podmortem_retention_modules_deleted_total',
      help: 'Captured module files deleted once no remaining core referenced them',
      registers,
    }),
    malformedEvents: new Counter({
      name: 'podmortem_retention_malformed_events_total',
      help: 'Stored events that were not a valid crash event of their key (left alone)',
      registers,
    }),
    deletionRequests: new Counter({
      name: 'podmortem_retention_deletion_requests_total',
      help: "Users' dump deletion requests done, by result (deleted, already-removed, invalid: passed over)",
      labelNames: ['result'],
      registers,
    }),
    errors: new Counter({
      name: 'podmortem_retention_errors_total',
      help: 'Failed operations (each retried: on the next pass, or a user deletion with backoff), by operation (scan, namespaces, remove, delete, user-delete)',
      labelNames: ['operation'],
      registers,
    }),
  };
}
