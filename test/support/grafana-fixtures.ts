import {
  crashIndexFor,
  crashIndexTemplates,
  newCrashId,
  validExamples,
  type CrashEvent,
} from '@podmortem/contract';
import { remoteWrite, type Series } from './prometheus.ts';
import { stack, uniqueName } from './stack.ts';

// What test/grafana.test.ts puts in the servers of the local stack: the crashes indexed into an
// index set of its own (three namespaces, a crash loop, a crash outside any pod) and the series
// written to Prometheus (pod metrics and podmortem's own, 25 minutes of samples every 15 s), with
// one crash three days old (older than the dashboards' three hours, within the alerts' 30 days),
// the names and times the test computes what it expects from.

const esUrl = stack.elasticsearchUrl;
export const alias = uniqueName('pm-grafana');
export const nowMs = Math.floor(Date.now() / 60_000) * 60_000;
export const minutesAgo = (m: number) => nowMs - m * 60_000;
export const ns = { a: uniqueName('team-a'), b: uniqueName('team-b'), c: uniqueName('team-c') };
export const pods = { a: uniqueName('api'), b: uniqueName('worker'), web: 'web-0', loop: 'loop-0' };

const template = validExamples().find((e) => e.name === 'segv-stored')?.event;
if (!template) throw new Error('contract example segv-stored is missing');

const SIGNALS = { SIGSEGV: 11, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8 } as const;
function crash(spec: {
  at: number;
  namespace?: string;
  pod?: string;
  container?: string;
  signal: keyof typeof SIGNALS;
  status: CrashEvent['dump']['status'];
  executable: string;
  signature?: string;
}): CrashEvent {
  const e = structuredClone(template) as CrashEvent;
  e['@timestamp'] = new Date(spec.at).toISOString();
  e.crash.id = newCrashId(spec.at);
  if (spec.namespace === undefined) {
    delete e.kubernetes;
    delete e.container;
  } else if (e.kubernetes) {
    e.kubernetes.namespace = spec.namespace;
    e.kubernetes.pod.name = spec.pod ?? 'pod-0';
    e.kubernetes.container.name = spec.container ?? 'app';
  }
  e.signal = { number: SIGNALS[spec.signal], name: spec.signal, code: 1 };
  e.process.executable = spec.executable;
  e.process.name = spec.executable.split('/').pop() ?? 'x';
  e.dump.status = spec.status;
  if (spec.status === 'skipped' || spec.status === 'failed') {
    delete e.dump.path;
    e.dump.reason = 'rate limit of the container reached';
  }
  if (spec.signature)
    e.analysis = { signature: spec.signature, title: `${spec.signal} in ${spec.signature}` };
  else delete e.analysis;
  return e;
}

export const events: CrashEvent[] = [
  crash({
    at: minutesAgo(50),
    namespace: ns.a,
    pod: pods.a,
    container: 'api',
    signal: 'SIGSEGV',
    status: 'stored',
    executable: '/srv/api',
    signature: 'api!parse+0x1',
  }),
  crash({
    at: minutesAgo(40),
    namespace: ns.a,
    pod: pods.a,
    container: 'api',
    signal: 'SIGSEGV',
    status: 'truncated',
    executable: '/srv/api',
    signature: 'api!parse+0x1',
  }),
  crash({
    at: minutesAgo(30),
    namespace: ns.a,
    pod: pods.a,
    container: 'api',
    signal: 'SIGABRT',
    status: 'skipped',
    executable: '/srv/api',
  }),
  crash({
    at: minutesAgo(45),
    namespace: ns.a,
    pod: pods.a,
    container: 'sidecar',
    signal: 'SIGSEGV',
    status: 'stored',
    executable: '/bin/envoy',
    signature: 'envoy!run+0x9',
  }),
  crash({
    at: minutesAgo(35),
    namespace: ns.a,
    pod: pods.b,
    container: 'api',
    signal: 'SIGBUS',
    status: 'failed',
    executable: '/srv/api',
  }),
  crash({
    at: minutesAgo(90),
    namespace: ns.b,
    pod: pods.web,
    container: 'web',
    signal: 'SIGSEGV',
    status: 'stored',
    executable: '/usr/sbin/nginx',
    signature: 'nginx!main+0x3',
  }),
  crash({
    at: minutesAgo(80),
    namespace: ns.b,
    pod: pods.web,
    container: 'web',
    signal: 'SIGSEGV',
    status: 'stored',
    executable: '/usr/sbin/nginx',
    signature: 'nginx!main+0x3',
  }),
  // A crash loop: 12 crashes in the last 9 minutes, above the crash-rate alert's 10.
  ...Array.from({ length: 12 }, (_, i) =>
    crash({
      at: minutesAgo(9) + i * 40_000,
      namespace: ns.c,
      pod: pods.loop,
      container: 'app',
      signal: 'SIGABRT',
      status: 'stored',
      executable: '/app/loop',
      signature: 'loop!spin+0x2',
    }),
  ),
  // The crash loop's bug, seen three days ago already: its group is not new.
  crash({
    at: minutesAgo(3 * 24 * 60),
    namespace: ns.c,
    pod: pods.loop,
    container: 'app',
    signal: 'SIGABRT',
    status: 'stored',
    executable: '/app/loop',
    signature: 'loop!spin+0x2',
  }),
  crash({ at: minutesAgo(20), signal: 'SIGFPE', status: 'failed', executable: '/usr/bin/calc' }),
];

async function indexCrashes(): Promise<void> {
  const { componentTemplates, indexTemplate } = crashIndexTemplates({ replicas: 0, shards: 1, alias });
  for (const c of componentTemplates)
    await esRequest('PUT', `/_component_template/${c.name}`, {
      template: c.template,
      version: c.version,
      _meta: c._meta,
    });
  const { name, ...body } = indexTemplate;
  await esRequest('PUT', `/_index_template/${name}`, body);
  const bulk =
    events
      .flatMap((e) => [
        JSON.stringify({ index: { _index: crashIndexFor(e['@timestamp'], alias), _id: e.crash.id } }),
        JSON.stringify(e),
      ])
      .join('\n') + '\n';
  const res = await fetch(`${esUrl}/_bulk?refresh=wait_for`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: bulk,
  });
  const result = (await res.json()) as { errors: boolean; items: unknown[] };
  if (!res.ok || result.errors) throw new Error(`bulk failed: ${JSON.stringify(result.items)}`);
}

async function esRequest(method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${esUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as unknown;
}

export interface SearchResponse {
  hits: { hits: { _id: string; _source: CrashEvent }[] };
  aggregations?: Record<string, unknown>;
}

export const search = (body: unknown, index = alias) =>
  esRequest('POST', `/${index}/_search`, body) as Promise<SearchResponse>;

export const STEP_S = 15;
/** Samples every 15 s from 25 minutes before `endS` up to it. */
export const endS = Math.floor(Date.now() / 1000 / STEP_S) * STEP_S - STEP_S;
export const startS = endS - 25 * 60;
export const instance = `${uniqueName('pm-grafana')}:9402`;
export const topic = uniqueName('pm-grafana.crashes');

function series(labels: Record<string, string>, value: (i: number) => number): Series {
  const samples = [];
  for (let i = 0, s = startS; s <= endS; i++, s += STEP_S)
    samples.push({ timestampMs: s * 1000, value: value(i) });
  return { labels, samples };
}
export const samplesUntilEnd = (endS - startS) / STEP_S;
export const memoryOf = (i: number, base: number) => base + i * 1024;

function histogram(name: string, labels: Record<string, string>): Series[] {
  // Every observation between 0.05 s and 0.1 s: p50 0.075, p99 0.0995.
  const bounds = [
    '0.005',
    '0.01',
    '0.025',
    '0.05',
    '0.1',
    '0.25',
    '0.5',
    '1',
    '2.5',
    '5',
    '10',
    '30',
    '+Inf',
  ];
  return bounds.map((le) =>
    series({ __name__: `${name}_bucket`, instance, job: 'podmortem', ...labels, le }, (i) =>
      Number(le) < 0.1 ? 0 : 4 * i,
    ),
  );
}

async function writeSeries(): Promise<void> {
  const self = { instance, job: 'podmortem' };
  const container = (pod: string, c: string) => ({ namespace: ns.a, pod, container: c });
  await remoteWrite([
    series({ __name__: 'container_memory_working_set_bytes', ...container(pods.a, 'api') }, (i) =>
      memoryOf(i, 100 << 20),
    ),
    series({ __name__: 'container_memory_working_set_bytes', ...container(pods.a, 'sidecar') }, (i) =>
      memoryOf(i, 10 << 20),
    ),
    series({ __name__: 'container_memory_working_set_bytes', ...container(pods.b, 'api') }, (i) =>
      memoryOf(i, 500 << 20),
    ),
    series({ __name__: 'container_cpu_usage_seconds_total', ...container(pods.a, 'api') }, (i) => i * 0.5),
    series({ __name__: 'container_cpu_usage_seconds_total', ...container(pods.b, 'api') }, (i) => i * 3),
    series({ __name__: 'kube_pod_container_status_restarts_total', ...container(pods.a, 'api') }, (i) =>
      i < 40 ? 2 : 3,
    ),
    series({ __name__: 'kube_pod_container_status_restarts_total', ...container(pods.b, 'api') }, () => 7),
    series(
      {
        __name__: 'kube_pod_container_status_last_terminated_reason',
        ...container(pods.a, 'api'),
        reason: 'OOMKilled',
      },
      () => 1,
    ),
    series(
      {
        __name__: 'kube_pod_container_status_last_terminated_reason',
        ...container(pods.b, 'api'),
        reason: 'Error',
      },
      () => 1,
    ),

    series(
      {
        __name__: 'podmortem_collector_crashes_total',
        ...self,
        namespace: 'team-a',
        signal: 'SIGSEGV',
        dump_status: 'stored',
      },
      (i) => i,
    ),
    series(
      {
        __name__: 'podmortem_collector_delivery_failures_total',
        ...self,
        step: 'kafka',
        code: 'PM_ERR_KAFKA_SEND',
      },
      (i) => i,
    ),
    series({ __name__: 'podmortem_collector_spool_entries', ...self }, (i) => Math.floor(i / 4)),
    series({ __name__: 'podmortem_collector_spool_bytes', ...self }, (i) => Math.floor(i / 4) * 1048576),
    series(
      { __name__: 'podmortem_indexer_records_indexed_total', ...self, result: 'created' },
      (i) => 30 * i,
    ),
    series(
      { __name__: 'podmortem_indexer_records_dead_lettered_total', ...self, code: 'PM_ERR_INVALID_EVENT' },
      (i) => i,
    ),
    series({ __name__: 'podmortem_indexer_consumer_lag', ...self, topic, partition: '0' }, () => 5000),
    ...histogram('podmortem_indexer_bulk_duration_seconds', { status: 'ok' }),
    series(
      {
        __name__: 'podmortem_api_requests_total',
        ...self,
        route: '/v1/crashes',
        method: 'GET',
        status: '200',
      },
      (i) => 15 * i,
    ),
    ...histogram('podmortem_api_request_duration_seconds', { route: '/v1/crashes' }),
    series(
      {
        __name__: 'podmortem_api_downloads_total',
        ...self,
        kind: 'dump',
        namespace: 'team-a',
        outcome: 'complete',
      },
      (i) => i,
    ),
  ]);
}

/** Puts the crashes into the test's own index set and the series into Prometheus. */
export async function seedServers(): Promise<void> {
  await indexCrashes();
  await writeSeries();
}

/** Removes the test's index set and its templates. */
export async function removeSeeded(): Promise<void> {
  const indices = Object.keys((await esRequest('GET', `/${alias}-*?allow_no_indices=true`)) as object);
  if (indices.length > 0) await esRequest('DELETE', `/${indices.join(',')}`);
  await esRequest('DELETE', `/_index_template/${alias}`);
  for (const suffix of ['settings', 'mappings'])
    await esRequest('DELETE', `/_component_template/${alias}-${suffix}`);
}
