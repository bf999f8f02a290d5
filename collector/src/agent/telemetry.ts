import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

// The agent's self-telemetry, declared in one place. Labels stay low-cardinality: namespace,
// signal, dump status, delivery step, error code — never pod, crash id or executable.

/** 'prepare', 'storage', 'spool', or the name of the sink the crash is announced to. */
export type DeliveryStep = string;

export interface SpoolUsage {
  entries: number;
  bytes: number;
}

export function createTelemetry(spoolUsage: () => Promise<SpoolUsage>) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'podmortem_collector_' });
  const crashes = new Counter({
    name: 'podmortem_collector_crashes_total',
    help: 'Crashes delivered (stored, announced over OTLP and Kafka), by namespace, signal and dump status',
    labelNames: ['namespace', 'signal', 'dump_status'] as const,
    registers: [registry],
  });
  const deliveryFailures = new Counter({
    name: 'podmortem_collector_delivery_failures_total',
    help: 'Failed attempts of a delivery step (each is retried), by step and error code',
    labelNames: ['step', 'code'] as const,
    registers: [registry],
  });
  const rejected = new Counter({
    name: 'podmortem_collector_rejected_total',
    help: 'Spool entries that can never be delivered, moved to the spool rejected folder, by error code',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  const unresolved = new Counter({
    name: 'podmortem_collector_pods_unresolved_total',
    help: "Crashes in a container whose pod the Kubernetes API never showed, delivered with the cgroup's facts",
    registers: [registry],
  });
  const spoolSweeps = new Counter({
    name: 'podmortem_collector_spool_sweeps_total',
    help: 'Sweeps of the spool (at start and periodically)',
    registers: [registry],
  });
  // Both spool gauges are collected at once (prom-client collects in parallel): one scan serves both.
  let lastUsage: SpoolUsage = { entries: 0, bytes: 0 };
  let scanning: Promise<SpoolUsage> | undefined;
  const refresh = () =>
    (scanning ??= spoolUsage()
      .then(
        (usage) => (lastUsage = usage),
        // A spool that cannot be read right now keeps its last figures; the watcher logs why.
        () => lastUsage,
      )
      .finally(() => (scanning = undefined)));
  new Gauge({
    name: 'podmortem_collector_spool_entries',
    help: 'Crashes waiting in the spool',
    registers: [registry],
    async collect() {
      this.set((await refresh()).entries);
    },
  });
  new Gauge({
    name: 'podmortem_collector_spool_bytes',
    help: 'Bytes in the spool (compressed dumps and metadata)',
    registers: [registry],
    async collect() {
      this.set((await refresh()).bytes);
    },
  });
  const inFlight = new Gauge({
    name: 'podmortem_collector_deliveries_in_flight',
    help: 'Spool entries being delivered now',
    registers: [registry],
  });
  const kubeReady = new Gauge({
    name: 'podmortem_collector_kube_pod_cache_synced',
    help: "1 when this node's pods are listed and watched, 0 while the Kubernetes API is unreachable",
    registers: [registry],
  });
  const podCacheFileErrors = new Counter({
    name: 'podmortem_collector_pod_cache_file_errors_total',
    help: 'Pod cache file failures, by op: load (unreadable or malformed; the agent started without it) or save',
    labelNames: ['op'] as const,
    registers: [registry],
  });
  const modulesStored = new Counter({
    name: 'podmortem_collector_modules_stored_total',
    help: 'Modules (executables, libraries) put into the store by build id; one already there is not counted',
    registers: [registry],
  });
  const modulesSkipped = new Counter({
    name: 'podmortem_collector_modules_skipped_total',
    help: 'Mapped modules of delivered crashes the handler did not capture, by reason (budget, too-large, unreadable, no-build-id, cache-full, cache-error)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  return {
    registry,
    modulesStored,
    modulesSkipped,
    crashes,
    deliveryFailures,
    rejected,
    unresolved,
    spoolSweeps,
    inFlight,
    kubeReady,
    podCacheFileErrors,
  };
}

export type Telemetry = ReturnType<typeof createTelemetry>;
