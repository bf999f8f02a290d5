import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Histogram } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import {
  CRASH_ALIAS,
  crashIndexFor,
  crashIndexTemplates,
  crashMappings,
  newCrashId,
  validExamples,
  type CrashEvent,
} from '@podmortem/contract';
import { createTelemetry as collectorTelemetry } from '../collector/src/agent/telemetry.ts';
import { createTelemetry as indexerTelemetry } from '../indexer/src/telemetry.ts';
import { readConfig } from '../query-api/src/config.ts';
import { grafanaLink } from '../query-api/src/links.ts';
import { createTelemetry as apiTelemetry } from '../query-api/src/telemetry.ts';
import type { AlertRule } from '../grafana/src/alert-rules.ts';
import { allPanels, type Dashboard, type EsTarget } from '../grafana/src/dashboard-json.ts';
import { TIME_FIELD } from '../grafana/src/datasources.ts';
import {
  annotationSearch,
  bucketRows,
  targetSearch,
  termsVariableSearch,
  type QueryContext,
} from '../grafana/src/es-search-body.ts';
import { generatedFiles, grafanaObjects, REPO_DIR } from '../grafana/src/generated-files.ts';
import { DATA_VIEW_ID, type SavedSearchObject, type SearchSource } from '../grafana/src/kibana-objects.ts';
import { POD_DASHBOARD_UID, withVariables } from '../grafana/src/pod-dashboard.ts';
import { alertQueries, dashboardQueries, type FoundQuery } from '../grafana/src/queries.ts';
import { interpolate, type VariableValue } from '../grafana/src/template-vars.ts';
import { remoteWrite, type Series } from './support/prometheus.ts';
import { stack, uniqueName } from './support/stack.ts';

// The Grafana dashboards, alert rules and provisioning, and the Kibana saved objects: the
// committed files are what `npm run grafana` generates; every datasource, uid, link and field they
// name exists; and every query in them runs on the real Prometheus and Elasticsearch of the local
// stack, over series and crashes this test put there, giving the results the panels promise.
// No Grafana or Kibana can be run here, so each query goes out as Grafana would send it
// (grafana/src/es-search-body.ts, template-vars.ts).

const objects = grafanaObjects();
const byUid = new Map(objects.dashboards.map((d) => [d.uid, d]));
function dashboardOf(uid: string): Dashboard {
  const d = byUid.get(uid);
  if (!d) throw new Error(`no dashboard ${uid}`);
  return d;
}
const rules: AlertRule[] = objects.alerting.groups.flatMap((g) => g.rules);
const savedSearches = objects.kibana.filter((o): o is SavedSearchObject => o.type === 'search');

// ---------------------------------------------------------------- what the test puts in the servers

const esUrl = stack.elasticsearchUrl;
const alias = uniqueName('pm-grafana');
const nowMs = Math.floor(Date.now() / 60_000) * 60_000;
const minutesAgo = (m: number) => nowMs - m * 60_000;
const ns = { a: uniqueName('team-a'), b: uniqueName('team-b'), c: uniqueName('team-c') };
const pods = { a: uniqueName('api'), b: uniqueName('worker'), web: 'web-0', loop: 'loop-0' };

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

const events: CrashEvent[] = [
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
    }),
  ),
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

t.teardown(async () => {
  const indices = Object.keys((await esRequest('GET', `/${alias}-*?allow_no_indices=true`)) as object);
  if (indices.length > 0) await esRequest('DELETE', `/${indices.join(',')}`);
  await esRequest('DELETE', `/_index_template/${alias}`);
  for (const suffix of ['settings', 'mappings'])
    await esRequest('DELETE', `/_component_template/${alias}-${suffix}`);
});

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

interface SearchResponse {
  hits: { hits: { _id: string; _source: CrashEvent }[] };
  aggregations?: Record<string, unknown>;
}

const search = (body: unknown, index = alias) =>
  esRequest('POST', `/${index}/_search`, body) as Promise<SearchResponse>;

const STEP_S = 15;
/** Samples every 15 s from 25 minutes before `endS` up to it. */
const endS = Math.floor(Date.now() / 1000 / STEP_S) * STEP_S - STEP_S;
const startS = endS - 25 * 60;
const instance = `${uniqueName('pm-grafana')}:9402`;
const topic = uniqueName('pm-grafana.crashes');

function series(labels: Record<string, string>, value: (i: number) => number): Series {
  const samples = [];
  for (let i = 0, s = startS; s <= endS; i++, s += STEP_S)
    samples.push({ timestampMs: s * 1000, value: value(i) });
  return { labels, samples };
}
const samplesUntilEnd = (endS - startS) / STEP_S;
const memoryOf = (i: number, base: number) => base + i * 1024;

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

t.before(async () => {
  await indexCrashes();
  await writeSeries();
});

// ---------------------------------------------------------------- the files

t.test('the committed files are exactly what `npm run grafana` generates', async (t) => {
  const files = await generatedFiles(objects);
  for (const f of files) {
    let committed = '';
    try {
      committed = readFileSync(join(REPO_DIR, f.path), 'utf8');
    } catch {
      t.fail(`${f.path} is missing: run npm run grafana`);
      continue;
    }
    t.ok(committed === f.content, `${f.path} is what the generator makes (run npm run grafana)`);
  }
  const onDisk = [
    'dashboards',
    'provisioning/datasources',
    'provisioning/dashboards',
    'provisioning/alerting',
    'kibana',
  ]
    .flatMap((dir) => readdirSync(join(REPO_DIR, 'grafana', dir)).map((name) => `grafana/${dir}/${name}`))
    .sort();
  t.same(onDisk, files.map((f) => f.path).sort(), 'no file there that the generator does not make');

  for (const f of files) {
    if (f.path.endsWith('.json')) {
      const parsed = JSON.parse(f.content) as Record<string, unknown>;
      t.same(parsed, f.value, `${f.path} parses back to the dashboard`);
      t.equal(Object.keys(parsed)[0], 'description', `${f.path} opens with its description`);
      t.match(String(parsed.description), /Generated by `npm run grafana` from grafana\/src\//);
    } else if (f.path.endsWith('.yaml')) {
      t.same(parseYaml(f.content), f.value, `${f.path} parses back to the provisioning object`);
      t.match(
        f.content.split('\n')[0] ?? '',
        /^# Generated by `npm run grafana` from grafana\/src\/[a-z-]+\.ts/,
        `${f.path} header`,
      );
    } else {
      const lines = f.content.trimEnd().split('\n');
      t.same(
        lines.map((l) => JSON.parse(l) as unknown),
        f.value,
        `${f.path}: one saved object a line`,
      );
      const first = JSON.parse(lines[0] ?? '{}') as { attributes?: { description?: string } };
      t.match(first.attributes?.description ?? '', /Generated by `npm run grafana` from grafana\/src\//);
    }
  }
});

t.test('the generator: --check passes, --help prints usage, a bad argument exits non-zero', async (t) => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['grafana/src/generate.ts', ...args], { cwd: REPO_DIR, encoding: 'utf8' });
  const check = run('--check');
  t.equal(check.status, 0, `--check: ${check.stderr}`);
  const help = run('--help');
  t.equal(help.status, 0);
  t.match(help.stdout, /^usage: npm run grafana/);
  const bad = run('--frobnicate');
  t.equal(bad.status, 2);
  t.match(bad.stderr, /Unknown option '--frobnicate'/);
  t.match(bad.stderr, /usage: npm run grafana/);
  t.equal(run('dashboards').status, 2, 'no positional arguments');
});

// ---------------------------------------------------------------- references between the files

t.test('datasource uids are the provisioned ones; dashboard, panel and rule uids are unique', async (t) => {
  const provisioned = new Map(objects.datasources.datasources.map((d) => [d.uid, d]));
  const es = [...provisioned.values()].find((d) => d.type === 'elasticsearch');
  t.equal(es?.jsonData.index, CRASH_ALIAS, 'Elasticsearch reads the crash alias');
  t.equal(es?.jsonData.timeField, TIME_FIELD);
  t.equal(
    new Set(objects.dashboards.map((d) => d.uid)).size,
    objects.dashboards.length,
    'dashboard uids unique',
  );
  for (const d of objects.dashboards) {
    const refs = [
      ...d.templating.list.map((v) => ({ what: `variable ${v.name}`, ref: v.datasource })),
      ...d.annotations.list.flatMap((a) =>
        'target' in a ? [{ what: `annotation ${a.name}`, ref: a.datasource }] : [],
      ),
      ...allPanels(d).flatMap((p) => [
        ...(p.datasource ? [{ what: `panel ${p.title}`, ref: p.datasource }] : []),
        ...(p.targets ?? []).map((q) => ({ what: `panel ${p.title} ${q.refId}`, ref: q.datasource })),
      ]),
    ];
    for (const { what, ref } of refs)
      t.equal(provisioned.get(ref.uid)?.type, ref.type, `${d.uid} ${what}: datasource ${ref.uid}`);
    const ids = allPanels(d).map((p) => p.id);
    t.equal(new Set(ids).size, ids.length, `${d.uid}: panel ids unique`);
    for (const p of allPanels(d)) t.ok(p.gridPos.x + p.gridPos.w <= 24, `${d.uid} ${p.title} fits the grid`);
  }
  t.equal(new Set(rules.map((r) => r.uid)).size, rules.length, 'rule uids unique');
  for (const r of rules) {
    for (const q of r.data)
      t.ok(
        q.datasourceUid === '__expr__' || provisioned.has(q.datasourceUid),
        `${r.uid} ${q.refId} datasource`,
      );
    const panel = allPanels(dashboardOf(r.dashboardUid)).find((p) => p.id === r.panelId);
    t.ok(panel?.targets?.length, `${r.uid} links a panel with queries (${r.dashboardUid} #${r.panelId})`);
    for (const [k, v] of Object.entries(r.labels))
      t.notMatch(
        v,
        /\$/,
        `${r.uid} label ${k}: no $ (provisioning would expand it as an environment variable)`,
      );
  }
  const dataView = objects.kibana.find((o) => o.type === 'index-pattern');
  t.equal(dataView?.id, DATA_VIEW_ID);
  t.equal(dataView?.attributes.title, `${CRASH_ALIAS}*`);
  for (const s of savedSearches)
    t.same(
      s.references.map((r) => [r.type, r.id]),
      [['index-pattern', DATA_VIEW_ID]],
      `${s.id} uses the data view`,
    );
});

t.test('the pod dashboard takes the link the query API makes', async (t) => {
  const config = readConfig({});
  const link = grafanaLink('https://grafana.example/', config.grafanaDashboardUid, {
    namespace: 'ns',
    pod: 'p',
    container: 'c',
    fromMs: 1,
    toMs: 2,
  });
  const url = new URL(link ?? '');
  t.equal(url.pathname, `/d/${POD_DASHBOARD_UID}/`, 'the query API links the pod dashboard by its uid');
  const pod = dashboardOf(POD_DASHBOARD_UID);
  const variables = pod.templating.list.map((v) => v.name);
  const linked = [...url.searchParams.keys()].filter((k) => k.startsWith('var-')).map((k) => k.slice(4));
  t.same(linked, ['namespace', 'pod', 'container']);
  for (const name of linked) t.ok(variables.includes(name), `the pod dashboard has the variable ${name}`);
  t.ok(url.searchParams.has('from') && url.searchParams.has('to'), 'and the time window');
  const exprs = dashboardQueries(pod).flatMap((q) => (q.kind === 'promql' ? [q.expr] : []));
  for (const key of ['promqlMemory', 'promqlCpu', 'promqlRestarts', 'promqlOomKills'] as const)
    t.ok(exprs.includes(withVariables(config[key])), `the query API's ${key} is on the dashboard`);

  const crashes = dashboardOf('podmortem-crashes');
  const links = allPanels(crashes).flatMap((p) => p.fieldConfig?.overrides ?? []);
  const podLink = links.flatMap((o) => o.properties).find((p) => p.id === 'links');
  const href = (podLink?.value as { url: string }[] | undefined)?.[0]?.url ?? '';
  t.match(href, new RegExp(`^/d/${POD_DASHBOARD_UID}/\\?var-namespace=.*&var-pod=.*&var-container=`));
});

// ---------------------------------------------------------------- fields

interface MappingNode {
  type?: string;
  properties?: Record<string, MappingNode>;
  fields?: Record<string, MappingNode>;
}

/** A field the crash mapping can search, aggregate or show: a leaf, a multi-field, or under a flattened one. */
function inMapping(field: string): boolean {
  let node: MappingNode = crashMappings;
  const parts = field.split('.');
  for (const [i, part] of parts.entries()) {
    const next: MappingNode | undefined = node.properties?.[part] ?? node.fields?.[part];
    if (!next) return false;
    if (next.type === 'flattened') return true;
    node = next;
    if (i === parts.length - 1) return node.type !== undefined;
  }
  return false;
}

/** The fields a Lucene query string names (`field:value`, and `_exists_:field`). */
function luceneFields(query: string): string[] {
  const unquoted = query.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...unquoted.matchAll(/(?<![\w.@\\])([A-Za-z_@][\w.@]*):([\w.@]*)/g)].map((m) =>
    m[1] === '_exists_' ? (m[2] ?? '') : (m[1] ?? ''),
  );
}

function targetFields(target: EsTarget): string[] {
  return [target.timeField, ...target.bucketAggs.map((a) => a.field), ...luceneFields(target.query)];
}

t.test('every field a dashboard, alert rule or saved search names is in the crash mapping', async (t) => {
  t.notOk(inMapping('kubernetes.namespaces'), 'a misspelt field is caught');
  t.notOk(inMapping('kubernetes.pod'), 'an object is not a field');
  t.ok(inMapping('process.executable.text') && inMapping('kubernetes.labels.app'), 'multi-fields, flattened');
  t.same(luceneFields('a.b:$x AND NOT _exists_:c.d AND e:"f:g"'), ['a.b', 'c.d', 'e']);

  const named: { where: string; field: string }[] = [];
  const add = (where: string, fields: string[]) => named.push(...fields.map((field) => ({ where, field })));
  for (const d of objects.dashboards) {
    for (const q of dashboardQueries(d)) {
      if (q.kind === 'es-target') add(q.where, targetFields(q.target));
      if (q.kind === 'es-terms') add(q.where, [q.find.field, ...luceneFields(q.find.query ?? '')]);
      if (q.kind === 'es-annotation') {
        const a = q.annotation;
        add(q.where, [a.timeField, a.textField, a.tagsField, ...luceneFields(a.target.query)]);
      }
    }
    for (const p of allPanels(d))
      for (const tr of p.transformations ?? [])
        if (tr.id === 'filterFieldsByName')
          add(`${d.uid} panel ${p.title}`, (tr.options as { include: { names: string[] } }).include.names);
  }
  for (const q of alertQueries(objects.alerting.groups))
    if (q.kind === 'es-target') add(q.where, targetFields(q.target));
  for (const o of objects.kibana) {
    if (o.type === 'index-pattern') add(o.id, [o.attributes.timeFieldName]);
    else {
      const source = JSON.parse(o.attributes.kibanaSavedObjectMeta.searchSourceJSON) as SearchSource;
      add(o.id, [
        ...o.attributes.columns,
        ...o.attributes.sort.map(([f]) => f),
        ...luceneFields(source.query.query),
      ]);
    }
  }
  t.ok(named.length > 50, `${named.length} field references found`);
  for (const { where, field } of named) t.ok(inMapping(field), `${where}: ${field} is in the crash mapping`);
});

t.test('every podmortem metric a query names is one a service exports, with those labels', async (t) => {
  const registries = [
    collectorTelemetry(() => Promise.resolve({ entries: 0, bytes: 0 })).registry,
    indexerTelemetry(undefined, false).registry,
    apiTelemetry(undefined, false).registry,
  ];
  const exported = new Map<string, { histogram: boolean; labels: string[] }>();
  for (const r of registries)
    for (const m of r.getMetricsAsArray()) {
      const labels = (m as { labelNames?: readonly string[] }).labelNames ?? [];
      exported.set(m.name, { histogram: m instanceof Histogram, labels: [...labels] });
    }
  const exprs = [
    ...objects.dashboards.flatMap((d) => dashboardQueries(d)),
    ...alertQueries(objects.alerting.groups),
  ].flatMap((q) => (q.kind === 'promql' ? [{ where: q.where, expr: q.expr }] : []));
  let checked = 0;
  for (const { where, expr } of exprs) {
    for (const m of expr.matchAll(/\b(podmortem_[a-z_]+)(\{[^}]*\})?/g)) {
      const name = m[1] ?? '';
      const base = name.replace(/_bucket$/, '');
      const metric = exported.get(name) ?? exported.get(base);
      if (!metric) {
        t.fail(`${where}: ${name} is exported by no service`);
        continue;
      }
      const allowed = new Set([...metric.labels, 'instance', 'job', ...(metric.histogram ? ['le'] : [])]);
      const matchers = [...(m[2] ?? '').matchAll(/([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1] ?? '');
      const grouped = [...expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((b) =>
        (b[1] ?? '').split(',').map((l) => l.trim()),
      );
      for (const label of [...matchers, ...grouped])
        t.ok(allowed.has(label), `${where}: ${name} has the label ${label}`);
      checked++;
    }
  }
  t.ok(checked >= 15, `${checked} metric references checked`);
});

// ---------------------------------------------------------------- the real Elasticsearch

/** Counts per terms key (keys joined by `/`; '' without terms), zeros dropped: what a panel shows. */
function countsOf(response: SearchResponse, target: EsTarget): Record<string, number> {
  const out: Record<string, number> = {};
  for (const row of bucketRows(response.aggregations ?? {}, target.bucketAggs)) {
    const key = target.bucketAggs
      .flatMap((a) => (a.type === 'terms' ? [String(row.keys[a.field])] : []))
      .join('/');
    out[key] = (out[key] ?? 0) + row.count;
  }
  return Object.fromEntries(Object.entries(out).filter(([, n]) => n > 0));
}

function tally(list: CrashEvent[], key: (e: CrashEvent) => string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of list) {
    const k = key(e);
    if (k !== undefined) out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

const newestFirst = (list: CrashEvent[]) =>
  [...list].sort((x, y) => y['@timestamp'].localeCompare(x['@timestamp'])).map((e) => e.crash.id);
const countOf = (n: number): Record<string, number> => (n === 0 ? {} : { '': n });

const range = { fromMs: minutesAgo(180), toMs: nowMs, intervalMs: 60_000 };

/** What each Elasticsearch query of the crash overview shows for the crashes of `selected` namespaces. */
function crashesExpected(selected: (namespace: string) => boolean) {
  const shown = events.filter((e) => e.kubernetes && selected(e.kubernetes.namespace));
  const notStored = shown.filter((e) => ['skipped', 'truncated', 'failed'].includes(e.dump.status));
  const at = (panel: string) => `podmortem-crashes: panel "${panel}" A`;
  return {
    [at('Crashes')]: countOf(shown.length),
    [at('Dumps not stored')]: countOf(notStored.length),
    [at('Crashes by namespace')]: tally(shown, (e) => e.kubernetes?.namespace),
    [at('Top signals')]: tally(shown, (e) => e.signal.name),
    [at('Top signatures')]: tally(shown, (e) => e.analysis?.signature),
    [at('Top executables')]: tally(shown, (e) => e.process.executable),
    [at('Dump status')]: tally(shown, (e) => e.dump.status),
    [at('Recent crashes')]: newestFirst(shown),
  };
}

async function runTarget(target: EsTarget, ctx: QueryContext): Promise<Record<string, number> | string[]> {
  const response = await search(targetSearch(target, ctx));
  if (target.metrics.some((m) => m.type === 'raw_data')) return response.hits.hits.map((h) => h._id);
  return countsOf(response, target);
}

t.test('the crash overview counts the crashes of the chosen namespaces', async (t) => {
  const queries = dashboardQueries(dashboardOf('podmortem-crashes'));
  const selections: { name: string; value: VariableValue; selected: (n: string) => boolean }[] = [
    { name: 'All', value: { raw: '*' }, selected: () => true },
    { name: 'two namespaces', value: [ns.a, ns.b], selected: (n) => n === ns.a || n === ns.b },
  ];
  for (const s of selections) {
    const expected = crashesExpected(s.selected);
    const ctx = { ...range, values: { namespace: s.value } };
    for (const q of queries) {
      if (q.kind === 'es-terms') {
        const res = await search(termsVariableSearch(q.find, TIME_FIELD, ctx));
        const keys = (res.aggregations?.['1'] as { buckets: { key: string }[] }).buckets.map((b) => b.key);
        t.same(keys, [ns.a, ns.b, ns.c].sort(), `${q.where}: every namespace with crashes, in order`);
        continue;
      }
      if (q.kind !== 'es-target') {
        t.fail(`${q.where}: unexpected ${q.kind} on the crash overview`);
        continue;
      }
      if (!(q.where in expected)) {
        t.fail(`${q.where}: no expectation in this test`);
        continue;
      }
      t.same(await runTarget(q.target, ctx), expected[q.where], `${q.where} (${s.name})`);
    }
  }
});

t.test('the pod dashboard shows the crashes of its pod and container, not another', async (t) => {
  const values = { namespace: ns.a, pod: pods.a, container: 'api' };
  const mine = events.filter(
    (e) =>
      e.kubernetes?.namespace === ns.a &&
      e.kubernetes.pod.name === pods.a &&
      e.kubernetes.container.name === 'api',
  );
  t.equal(mine.length, 3);
  const expectedVariables: Record<string, string[]> = {
    'podmortem-pod: variable namespace': [ns.a, ns.b, ns.c].sort(),
    'podmortem-pod: variable pod': [pods.a, pods.b].sort(),
    'podmortem-pod: variable container': ['api', 'sidecar'],
  };
  const expectedPanels: Record<string, Record<string, number> | string[]> = {
    'podmortem-pod: panel "Crashes" A': countOf(3),
    'podmortem-pod: panel "Crashes of this container" A': newestFirst(mine),
  };
  const ctx = { ...range, values };
  let ran = 0;
  for (const q of dashboardQueries(dashboardOf(POD_DASHBOARD_UID))) {
    if (q.kind === 'promql') continue;
    ran++;
    if (q.kind === 'es-terms') {
      const res = await search(termsVariableSearch(q.find, TIME_FIELD, ctx));
      const buckets = (res.aggregations?.['1'] as { buckets: { key: string }[] }).buckets.map((b) => b.key);
      t.same(buckets, expectedVariables[q.where], q.where);
    } else if (q.kind === 'es-annotation') {
      await t.rejects(
        search(annotationSearch(q.annotation, ctx, true)),
        /\[range\] query does not support \[from\]/,
        `${q.where}: the request of Grafana before 12.2.4 is refused by Elasticsearch 9`,
      );
      const res = await search(annotationSearch(q.annotation, ctx));
      t.same(
        res.hits.hits.map((h) => h._id).sort(),
        mine.map((e) => e.crash.id).sort(),
        `${q.where}: a marker per crash`,
      );
      for (const h of res.hits.hits) {
        t.ok(h._source.process.executable, 'the marker text is in the document');
        t.match(h._source.signal.name, /^SIG/, 'and its tag');
      }
    } else if (q.kind === 'es-target') {
      t.same(await runTarget(q.target, ctx), expectedPanels[q.where], q.where);
    } else t.fail(`${q.where}: unexpected ${q.kind}`);
  }
  t.equal(ran, 6, 'three variables, the annotation, two panels');
});

function alertThreshold(rule: AlertRule): { reducer: string; above: number } {
  const [, reduce, threshold] = rule.data;
  return { reducer: reduce.model.reducer, above: threshold.model.conditions[0]?.evaluator.params[0] ?? NaN };
}

t.test('the crash-rate alert fires for the namespace in a crash loop only', async (t) => {
  const rule = rules.find((r) => r.uid === 'podmortem-crash-rate');
  const q = alertQueries(objects.alerting.groups).find((x) => x.where === 'alert podmortem-crash-rate');
  if (!rule || q?.kind !== 'es-target') throw new Error('no crash-rate rule');
  const window = rule.data[0].relativeTimeRange?.from ?? 0;
  const ctx = { fromMs: nowMs - window * 1000, toMs: nowMs, intervalMs: 60_000, values: {} };
  const counts = await runTarget(q.target, ctx);
  t.same(counts, { [ns.c]: 12 }, 'crashes per namespace in the window');
  const { reducer, above } = alertThreshold(rule);
  t.equal(reducer, 'sum', 'the buckets of the window are added up');
  const firing = Object.entries(counts as Record<string, number>).filter(([, n]) => n > above);
  t.same(
    firing.map(([k]) => k),
    [ns.c],
  );
});

t.test('the Kibana data view and saved searches find the crashes they are named for', async (t) => {
  const expected: Record<string, CrashEvent[]> = {
    'podmortem-dumps-not-kept': events.filter(
      (e) => e.dump.status === 'truncated' || e.dump.status === 'skipped',
    ),
    'podmortem-sigsegv': events.filter((e) => e.signal.name === 'SIGSEGV'),
    'podmortem-host-crashes': events.filter((e) => !e.kubernetes),
  };
  t.same(savedSearches.map((s) => s.id).sort(), Object.keys(expected).sort());
  const dataView = objects.kibana.find((o) => o.type === 'index-pattern');
  // The data view's pattern, on this test's own indices.
  const pattern = (dataView?.attributes.title ?? '').replace(CRASH_ALIAS, alias);
  for (const s of savedSearches) {
    const source = JSON.parse(s.attributes.kibanaSavedObjectMeta.searchSourceJSON) as SearchSource;
    t.equal(source.query.language, 'lucene');
    const res = await search(
      {
        size: 100,
        query: { bool: { filter: [{ query_string: { query: source.query.query } }] } },
        sort: s.attributes.sort.map(([field, order]) => ({ [field]: { order } })),
      },
      pattern,
    );
    t.same(
      res.hits.hits.map((h) => h._id),
      newestFirst(expected[s.id] ?? []),
      `${s.id}: ${source.query.query}`,
    );
  }
});

// ---------------------------------------------------------------- the real Prometheus

interface PromResult {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}

async function promQuery(
  path: 'query' | 'query_range',
  params: Record<string, string>,
): Promise<PromResult[]> {
  const res = await fetch(`${stack.prometheusUrl}/api/v1/${path}?${new URLSearchParams(params).toString()}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: PromResult[] } };
  if (!res.ok || body.status !== 'success')
    throw new Error(`${path} ${params.query ?? ''}: ${res.status} ${body.error ?? ''}`);
  return body.data?.result ?? [];
}

const builtIns = { __rate_interval: { raw: '1m' }, __interval: { raw: '1m' }, __range: { raw: '25m' } };

t.test('the pod dashboard PromQL returns the series of its pod and container, not another', async (t) => {
  const queries = dashboardQueries(dashboardOf(POD_DASHBOARD_UID)).filter(
    (q): q is Extract<FoundQuery, { kind: 'promql' }> => q.kind === 'promql',
  );
  t.equal(queries.length, 5, 'restarts twice, OOM kills, memory, CPU');
  const from = endS - 600;
  const steps = Array.from({ length: 11 }, (_, k) => from + k * 60);
  const indexAt = (s: number) => (s - startS) / STEP_S;
  for (const pod of [pods.a, pods.b]) {
    const values = { namespace: ns.a, pod, container: 'api', ...builtIns };
    const expected: Record<string, (s: number) => number> = {
      'Memory working set': (s) => memoryOf(indexAt(s), pod === pods.a ? 100 << 20 : 500 << 20),
      CPU: () => (pod === pods.a ? 0.5 : 3) / STEP_S,
      Restarts: (s) => (pod === pods.a ? (indexAt(s) < 40 ? 2 : 3) : 7),
      'Restarts over time': (s) => (pod === pods.a ? (indexAt(s) < 40 ? 2 : 3) : 7),
      'Last terminated: OOMKilled': () => 1,
    };
    for (const q of queries) {
      const panel = /panel "(.*)" A$/.exec(q.where)?.[1] ?? '';
      const expr = interpolate(q.expr, values, 'promql');
      const result = await promQuery('query_range', {
        query: expr,
        start: String(from),
        end: String(endS),
        step: '60',
      });
      if (panel === 'Last terminated: OOMKilled' && pod === pods.b) {
        t.same(result, [], `${q.where} for ${pod}: its last termination was no OOM kill`);
        continue;
      }
      t.equal(result.length, 1, `${q.where} for ${pod}: one series`);
      t.match(
        result[0]?.metric,
        { namespace: ns.a, pod, container: 'api' },
        `${q.where}: the pod's own series`,
      );
      const want = expected[panel];
      if (!want) {
        t.fail(`${q.where}: no expectation in this test`);
        continue;
      }
      const got = (result[0]?.values ?? []).map(([s, v]) => [s, Number(v)]);
      t.same(
        got.map(([s]) => s),
        steps,
        `${q.where}: a value every minute`,
      );
      t.ok(
        got.every(([s = 0, v = NaN]) => Math.abs(v - want(s)) <= 1e-9 * Math.max(1, Math.abs(want(s)))),
        `${q.where} for ${pod}: the values written`,
      );
    }
  }
});

t.test('the self dashboard PromQL shows the self-metrics of the chosen instance', async (t) => {
  const dashboard = dashboardOf('podmortem-self');
  const at = (panel: string, ref = 'A') => `podmortem-self: panel "${panel}" ${ref}`;
  const p50 = 0.05 + 0.05 * 0.5;
  const p99 = 0.05 + 0.05 * 0.99;
  const entries = Math.floor(samplesUntilEnd / 4);
  const expected: Record<string, { labels: Record<string, string>; value: number }[]> = {
    [at('Crashes delivered')]: [{ labels: { namespace: 'team-a' }, value: 1 / 15 }],
    [at('Crashes by dump status')]: [{ labels: { dump_status: 'stored' }, value: 1 / 15 }],
    [at('Delivery failures')]: [{ labels: { step: 'kafka', code: 'PM_ERR_KAFKA_SEND' }, value: 1 / 15 }],
    [at('Spool entries')]: [{ labels: { instance }, value: entries }],
    [at('Spool size')]: [{ labels: { instance }, value: entries * 1048576 }],
    [at('Records indexed')]: [{ labels: { result: 'created' }, value: 2 }],
    [at('Records dead-lettered')]: [{ labels: { code: 'PM_ERR_INVALID_EVENT' }, value: 1 / 15 }],
    [at('Consumer lag')]: [{ labels: { topic }, value: 5000 }],
    [at('Bulk latency', 'A')]: [{ labels: {}, value: p50 }],
    [at('Bulk latency', 'B')]: [{ labels: {}, value: p99 }],
    [at('Requests')]: [{ labels: { status: '200' }, value: 1 }],
    [at('Request latency', 'A')]: [{ labels: { route: '/v1/crashes' }, value: p50 }],
    [at('Request latency', 'B')]: [{ labels: { route: '/v1/crashes' }, value: p99 }],
    [at('Downloads')]: [{ labels: { kind: 'dump', outcome: 'complete' }, value: 1 / 15 }],
  };
  const values = { instance, ...builtIns };
  let ran = 0;
  for (const q of dashboardQueries(dashboard)) {
    if (q.kind === 'prom-label-values') {
      const res = await fetch(
        `${stack.prometheusUrl}/api/v1/label/${q.label}/values?${new URLSearchParams({ 'match[]': q.selector, start: String(startS), end: String(endS) }).toString()}`,
      );
      const body = (await res.json()) as { data: string[] };
      t.ok(body.data.includes(instance), `${q.where}: the test's instance is offered`);
      continue;
    }
    if (q.kind !== 'promql') {
      t.fail(`${q.where}: unexpected ${q.kind}`);
      continue;
    }
    ran++;
    const result = await promQuery('query', {
      query: interpolate(q.expr, values, 'promql'),
      time: String(endS),
    });
    const want = expected[q.where];
    if (!want) {
      t.fail(`${q.where}: no expectation in this test`);
      continue;
    }
    t.same(
      result.map((r) => r.metric),
      want.map((w) => w.labels),
      `${q.where}: the series of the instance`,
    );
    for (const [i, w] of want.entries()) {
      const got = Number(result[i]?.value?.[1]);
      t.ok(Math.abs(got - w.value) < 1e-9 * Math.max(1, w.value), `${q.where}: ${got} is ${w.value}`);
    }
  }
  t.equal(ran, Object.keys(expected).length, 'every query has run');
});

t.test('the Prometheus alert rules fire on the series the test wrote', async (t) => {
  const fired: Record<string, Record<string, string>> = {
    'podmortem-spool-backlog': { instance },
    'podmortem-delivery-failures': { instance, step: 'kafka' },
    'podmortem-dead-letters': { instance, code: 'PM_ERR_INVALID_EVENT' },
    'podmortem-consumer-lag': { topic },
  };
  for (const q of alertQueries(objects.alerting.groups)) {
    if (q.kind !== 'promql') continue;
    const uid = q.where.replace(/^alert /, '');
    const rule = rules.find((r) => r.uid === uid);
    const labels = fired[uid];
    if (!rule || !labels) {
      t.fail(`${q.where}: no expectation in this test`);
      continue;
    }
    const result = await promQuery('query', { query: q.expr, time: String(endS) });
    const mine = result.filter((r) => Object.entries(labels).every(([k, v]) => r.metric[k] === v));
    t.equal(mine.length, 1, `${q.where}: one series for the test's ${JSON.stringify(labels)}`);
    const { reducer, above } = alertThreshold(rule);
    t.equal(reducer, 'last', `${q.where}: an instant value`);
    const value = Number(mine[0]?.value?.[1]);
    t.ok(value > above, `${q.where}: ${value} is above ${above}, so the rule fires`);
  }
});
