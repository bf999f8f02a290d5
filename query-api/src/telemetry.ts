import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider, type SpanProcessor } from '@opentelemetry/sdk-trace';

// The query API's self-telemetry, declared in one place. Labels stay low-cardinality: route
// patterns (not URLs), namespace, status — never a pod, crash id, user or executable.

export interface Telemetry {
  registry: Registry;
  requests: Counter<'route' | 'method' | 'status'>;
  requestSeconds: Histogram<'route'>;
  downloads: Counter<'kind' | 'namespace' | 'outcome'>;
  downloadBytes: Counter<'kind' | 'namespace'>;
  authentications: Counter<'result'>;
  accessReviews: Counter<'verb' | 'allowed'>;
  backendErrors: Counter<'backend'>;
}

export function createTelemetry(registry = new Registry(), defaultMetrics = true): Telemetry {
  if (defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'podmortem_api_' });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'podmortem_api_requests_total',
      help: 'HTTP requests answered, by route pattern, method and status code',
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    requestSeconds: new Histogram({
      name: 'podmortem_api_request_duration_seconds',
      help: 'Time to answer a request (until the last byte of a stream)',
      labelNames: ['route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
      registers,
    }),
    downloads: new Counter({
      name: 'podmortem_api_downloads_total',
      help: 'Downloads (kind dump, archive, executable or debuginfo), by namespace and outcome (complete, aborted)',
      labelNames: ['kind', 'namespace', 'outcome'],
      registers,
    }),
    downloadBytes: new Counter({
      name: 'podmortem_api_download_bytes_total',
      help: 'Bytes of dumps and archives sent',
      labelNames: ['kind', 'namespace'],
      registers,
    }),
    authentications: new Counter({
      name: 'podmortem_api_authentications_total',
      help: 'Bearer tokens checked, by result (authenticated, rejected, missing, unavailable)',
      labelNames: ['result'],
      registers,
    }),
    accessReviews: new Counter({
      name: 'podmortem_api_access_reviews_total',
      help: 'SubjectAccessReviews sent to the Kubernetes API (cache misses), by verb and answer',
      labelNames: ['verb', 'allowed'],
      registers,
    }),
    backendErrors: new Counter({
      name: 'podmortem_api_backend_errors_total',
      help: 'Failed calls to a backend (elasticsearch, prometheus, kubernetes, storage)',
      labelNames: ['backend'],
      registers,
    }),
  };
}

/**
 * The tracer provider: spans exported over OTLP/HTTP when an endpoint is configured; without
 * one, spans are still made (ids for logs) but go nowhere.
 */
export function createTracerProvider(params: {
  otlpEndpoint: string;
  version: string;
  /** More processors (tests collect spans with one). */
  spanProcessors?: SpanProcessor[];
}): TracerProvider {
  const spanProcessors: SpanProcessor[] = [...(params.spanProcessors ?? [])];
  if (params.otlpEndpoint !== '')
    spanProcessors.push(
      new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: params.otlpEndpoint }) }),
    );
  return new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': 'podmortem-query-api',
      'service.version': params.version,
    }),
    spanProcessors,
  });
}
