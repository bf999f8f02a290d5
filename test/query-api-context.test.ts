import { Client } from '@elastic/elasticsearch';
import t from 'tap';
import { freePort } from './support/ports.ts';
import { remoteWrite, type Series } from './support/prometheus.ts';
import { stack, uniqueName } from './support/stack.ts';
import {
  addUser,
  bearer,
  harness,
  makeCrash,
  seedLogs,
  type Harness,
  type LogDoc,
} from './support/query-api.ts';

// The crash context against the real Prometheus and the real Elasticsearch: the series and log
// lines the test put there for the crashed pod and window come back, and nothing of other pods,
// containers, namespaces or times; ECS and OTel log field names; the pod's other crashes; the
// Grafana and Kibana links; and a Prometheus that is down leaves only its part empty.

interface Context {
  crash: { id: string; pod?: string };
  window: { from: string; to: string; step_seconds: number };
  metrics: {
    name: string;
    query: string;
    series: { metric: Record<string, string>; values: [number, string][] }[];
  }[];
  logs: { index: string; lines: { timestamp: string; message: string }[] };
  other_crashes: {
    crash: { id: string };
    kubernetes?: { namespace: string; pod: { uid: string; name: string } };
  }[];
  links: { grafana?: string; kibana?: string };
  errors: { source: string; message: string }[];
}

const es = new Client({ node: stack.elasticsearchUrl });
t.teardown(() => es.close());

const ns = 'team-a';
const pod = uniqueName('api');
const otherPod = `${pod}-other`;
const minute = 60_000;
// Whole minutes, so the samples and the window line up.
const crashAt = Math.floor((Date.now() - 20 * minute) / minute) * minute;
const before = 900;
const after = 300;
const fromMs = crashAt - before * 1000;
const toMs = crashAt + after * 1000;
const sampleTimes = Array.from({ length: 31 }, (_, i) => crashAt - 20 * minute + i * minute);

const labels = (name: string, p: string, container: string, extra: Record<string, string> = {}) => ({
  __name__: name,
  namespace: ns,
  pod: p,
  container,
  ...extra,
});
const series = (l: Record<string, string>, value: (i: number) => number): Series => ({
  labels: l,
  samples: sampleTimes.map((timestampMs, i) => ({ timestampMs, value: value(i) })),
});
await remoteWrite([
  series(labels('container_memory_working_set_bytes', pod, 'api'), (i) => 1000 + i),
  series(labels('container_memory_working_set_bytes', pod, 'sidecar'), (i) => 5_000_000 + i),
  series(labels('container_memory_working_set_bytes', otherPod, 'api'), (i) => 9_000_000 + i),
  series(labels('container_cpu_usage_seconds_total', pod, 'api'), (i) => 6 * i),
  series(labels('container_cpu_usage_seconds_total', otherPod, 'api'), (i) => 60 * i),
  series(labels('kube_pod_container_status_restarts_total', pod, 'api'), (i) => (i < 20 ? 0 : 1)),
  series(
    labels('kube_pod_container_status_last_terminated_reason', pod, 'api', { reason: 'OOMKilled' }),
    () => 1,
  ),
  series(
    labels('kube_pod_container_status_last_terminated_reason', pod, 'api', { reason: 'Error' }),
    () => 1,
  ),
]);

const logDocs: LogDoc[] = [
  ...[-30, -14, -10, -5, -1, 0, 4].map((m, i) => ({
    at: crashAt + m * minute,
    ns,
    pod,
    container: 'api',
    message: `api line ${i} at ${m}m`,
  })),
  { at: crashAt - minute, ns, pod, container: 'sidecar', message: 'sidecar line' },
  { at: crashAt - minute, ns, pod: otherPod, container: 'api', message: 'other pod line' },
  { at: crashAt - minute, ns: 'team-b', pod, container: 'api', message: 'same pod name, other namespace' },
  { at: crashAt + 10 * minute, ns, pod, container: 'api', message: 'after the window' },
];
const inWindow = logDocs.filter(
  (d) => d.ns === ns && d.pod === pod && d.container === 'api' && d.at >= fromMs && d.at <= toMs,
);

const ecsIndex = uniqueName('pm-logs-ecs');
const otelIndex = uniqueName('pm-logs-otel');
t.teardown(() => es.indices.delete({ index: [ecsIndex, otelIndex], ignore_unavailable: true }));
await seedLogs(es, ecsIndex, logDocs);
await seedLogs(es, otelIndex, logDocs, (d) => ({
  '@timestamp': new Date(d.at).toISOString(),
  body: { text: d.message },
  resource: {
    attributes: { 'k8s.namespace.name': d.ns, 'k8s.pod.name': d.pod, 'k8s.container.name': d.container },
  },
}));

const crash = makeCrash({ namespace: ns, pod, container: 'api', at: crashAt });
const uid = crash.event.kubernetes?.pod.uid ?? '';
const earlier = makeCrash({ namespace: ns, pod, uid, container: 'api', at: crashAt - 10 * minute });
const sidecarCrash = makeCrash({ namespace: ns, pod, uid, container: 'sidecar', at: crashAt - 5 * minute });
const otherPodCrash = makeCrash({ namespace: ns, pod: otherPod, at: crashAt - 5 * minute });
const crashes = [crash, earlier, sidecarCrash, otherPodCrash].map((c) => c.event);

async function contextOf(h: Harness, token: string, query = ''): Promise<Context> {
  const res = await h.app.inject({
    url: `/v1/crashes/${crash.event.crash.id}/context?before=${before}&after=${after}${query}`,
    headers: bearer(token),
  });
  if (res.statusCode !== 200) throw new Error(`context: ${res.statusCode} ${res.body}`);
  return res.json<Context>();
}

t.test('ECS logs, metrics, other crashes and links', async (t) => {
  const h = await harness({
    logsIndex: ecsIndex,
    grafanaUrl: 'http://grafana.example:3000/',
    kibanaUrl: 'http://kibana.example:5601',
  });
  t.teardown(() => h.close());
  await h.index.add(crashes);
  const alice = addUser(h.kube, 'alice', [ns]);
  const ctx = await contextOf(h, alice);

  t.same(ctx.errors, []);
  t.equal(ctx.window.from, new Date(fromMs).toISOString());
  t.equal(ctx.window.to, new Date(toMs).toISOString());
  const byName = Object.fromEntries(ctx.metrics.map((m) => [m.name, m]));
  t.same(Object.keys(byName).sort(), ['cpu', 'memory', 'oom_kills', 'restarts']);

  const memory = byName.memory?.series ?? [];
  t.equal(memory.length, 1, 'one memory series: the pod’s container');
  t.match(memory[0]?.metric, { namespace: ns, pod, container: 'api' });
  const ours = new Map(sampleTimes.map((ts, i) => [ts / 1000, String(1000 + i)]));
  for (const [ts, value] of memory[0]?.values ?? []) {
    t.ok(ts >= fromMs / 1000 && ts <= toMs / 1000, 'inside the window');
    // The value at an evaluation time is the last sample at or before it.
    const last = Math.floor(ts / 60) * 60;
    if (value !== ours.get(last)) t.fail(`memory at ${ts}: ${value}, expected ${ours.get(last) ?? '?'}`);
  }
  // Every evaluation time of the window has a sample within the lookback: a point each.
  const evaluations = (before + after) / ctx.window.step_seconds + 1;
  t.equal(memory[0]?.values.length, evaluations, `${evaluations} points`);
  const memValues = new Set(memory[0]?.values.map(([, v]) => v));
  const expectedValues = sampleTimes
    .filter((ts) => ts >= fromMs && ts <= toMs)
    .map((ts) => ours.get(ts / 1000));
  t.same([...memValues].sort(), expectedValues.sort(), 'every sample of the window, and no other pod’s');

  const cpu = byName.cpu?.series ?? [];
  t.equal(cpu.length, 1);
  t.equal(cpu[0]?.metric.pod, pod);
  t.equal(cpu[0]?.values.length, evaluations, 'a rate at every evaluation time');
  for (const [, v] of cpu[0]?.values ?? []) t.ok(Math.abs(Number(v) - 0.1) < 1e-9, `cpu rate ${v} = 0.1/s`);

  t.equal(byName.restarts?.series.length, 1);
  t.same(new Set(byName.restarts?.series[0]?.values.map(([, v]) => v)), new Set(['0', '1']));
  t.equal(byName.oom_kills?.series.length, 1, 'the OOMKilled series only');
  t.equal(byName.oom_kills?.series[0]?.metric.reason, 'OOMKilled');

  t.same(
    ctx.logs.lines.map((l) => l.message),
    inWindow.map((d) => d.message),
    'the container’s lines of the window, oldest first',
  );
  t.same(
    ctx.logs.lines.map((l) => Date.parse(l.timestamp)),
    inWindow.map((d) => d.at),
  );
  const last3 = await contextOf(h, alice, '&log_lines=3');
  t.same(
    last3.logs.lines.map((l) => l.message),
    inWindow.slice(-3).map((d) => d.message),
    'log_lines keeps the last ones',
  );

  t.same(
    ctx.other_crashes.map((c) => c.crash.id),
    [sidecarCrash.event.crash.id, earlier.event.crash.id],
    'the pod’s other crashes, newest first, not the crash itself nor another pod’s',
  );
  t.same(
    ctx.other_crashes.map((c) => [c.kubernetes?.namespace, c.kubernetes?.pod.name]),
    ctx.other_crashes.map(() => [ns, pod]),
    'each names its namespace and pod (the CLI shows them)',
  );

  const grafana = new URL(ctx.links.grafana ?? '');
  t.equal(grafana.origin + grafana.pathname, 'http://grafana.example:3000/d/podmortem-pod/');
  t.same(Object.fromEntries(grafana.searchParams), {
    'var-namespace': ns,
    'var-pod': pod,
    'var-container': 'api',
    from: String(fromMs),
    to: String(toMs),
  });
  const kibana = decodeURIComponent(ctx.links.kibana ?? '');
  t.match(kibana, 'http://kibana.example:5601/app/discover#/?_g=');
  t.match(kibana, `from:'${new Date(fromMs).toISOString()}'`);
  t.match(kibana, `to:'${new Date(toMs).toISOString()}'`);
  t.match(kibana, `kubernetes.pod.name:"${pod}"`);

  const bad = await h.app.inject({
    url: `/v1/crashes/${crash.event.crash.id}/context?before=10`,
    headers: bearer(alice),
  });
  t.equal(bad.statusCode, 400);
  t.match(bad.json<{ message: string }>().message, 'querystring/before');
});

t.test('OTel log field names', async (t) => {
  const h = await harness({ logsIndex: otelIndex, logsFields: 'otel' });
  t.teardown(() => h.close());
  await h.index.add(crashes);
  const ctx = await contextOf(h, addUser(h.kube, 'alice', [ns]));
  t.same(
    ctx.logs.lines.map((l) => l.message),
    inWindow.map((d) => d.message),
  );
  t.same(ctx.links, {}, 'no links without base URLs');
});

t.test('Prometheus down: the metrics part is empty and says why; the rest is served', async (t) => {
  const h = await harness({ logsIndex: ecsIndex, prometheusUrl: `http://127.0.0.1:${await freePort()}` });
  t.teardown(() => h.close());
  await h.index.add(crashes);
  const ctx = await contextOf(h, addUser(h.kube, 'alice', [ns]));
  t.same(
    ctx.metrics.map((m) => m.series),
    [[], [], [], []],
  );
  t.same(ctx.errors.map((e) => e.source).sort(), [
    'prometheus:cpu',
    'prometheus:memory',
    'prometheus:oom_kills',
    'prometheus:restarts',
  ]);
  for (const e of ctx.errors) t.match(e.message, /^Prometheus is unreachable: /, `${e.source}: why`);
  t.equal(ctx.logs.lines.length, inWindow.length);
});
