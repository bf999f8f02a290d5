import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { zstdCompressSync } from 'node:zlib';
import { Client } from '@elastic/elasticsearch';
import { dumpRelPath, moduleKey } from '@podmortem/contract';
import t from 'tap';
import { FakeKubeApi } from './support/fake-kube-api.ts';
import { metricValue } from './support/metrics.ts';
import { freePort } from './support/ports.ts';
import { remoteWrite, type Series } from './support/prometheus.ts';
import { repoDir, stack, uniqueName } from './support/stack.ts';
import { FsStore } from '@podmortem/contract/store';
import {
  CrashIndex,
  RBAC,
  StorageRoot,
  addUser,
  makeCrash,
  requestTopicFor,
  seedLogs,
  sha256,
  type LogDoc,
} from './support/query-api.ts';
import { startDeletions } from './support/deletions.ts';
import {
  startIndexer,
  stopIndexer,
  testKafka,
  topicsForTest,
  uniqueNames,
} from './support/indexer-harness.ts';
import { until } from './support/poll.ts';
import { splitDebugInfo } from './support/debuginfod.ts';
import { buildIdOf, buildPrograms, crashAll, lineOf } from './support/real-crash.ts';

// The `podmortem` CLI (query-api/bin/podmortem) against the API running as its own process
// (`node query-api/src/main.ts`, configured by PODMORTEM_API_* variables) on the real stack:
// list, info, dump (sha256 verified), context and debug, their output and their exit codes.

const bin = join(repoDir, 'query-api/bin/podmortem');
const work = mkdtempSync(join(tmpdir(), 'pm-cli-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const kube = await FakeKubeApi.start();
t.teardown(() => kube.close());
const index = await CrashIndex.create('pm-cli');
t.teardown(() => index.destroy());
const storage = new StorageRoot();
t.teardown(() => storage.destroy());
const es = new Client({ node: stack.elasticsearchUrl });
t.teardown(() => es.close());
const logsIndex = uniqueName('pm-cli-logs');
t.teardown(() => es.indices.delete({ index: logsIndex, ignore_unavailable: true }));

const alice = addUser(kube, 'alice', ['team-a']);
const now = Date.now();
const minute = 60_000;
const uid = 'cccccccc-0000-4000-8000-000000000001';
// Pod names of this run alone: Prometheus keeps the series of earlier runs, which must not show up
// in this run's context (nor make its samples out of order).
const podName = uniqueName('api');
const webName = uniqueName('web');
const main = makeCrash({ namespace: 'team-a', pod: podName, uid, at: now - 10 * minute, coreBytes: 3 << 20 });
const second = makeCrash({
  namespace: 'team-a',
  pod: podName,
  uid,
  at: now - 20 * minute,
  signal: { number: 6, name: 'SIGABRT' },
});
const other = makeCrash({ namespace: 'team-a', pod: webName, at: now - 30 * minute });
const removed = makeCrash({ namespace: 'team-a', pod: 'web-1', at: now - 40 * minute });
const forged = makeCrash({ namespace: 'team-a', pod: 'web-2', at: now - 50 * minute });
forged.event.dump.sha256 = 'f'.repeat(64);
const hidden = makeCrash({ namespace: 'team-b', pod: 'db-0', at: now - 5 * minute });

// A real core of a live process, made by gdb's gcore, for `podmortem debug`.
const sleeper = spawn('/usr/bin/sleep', ['300']);
t.teardown(() => sleeper.kill());
process.once('exit', () => sleeper.kill('SIGKILL'));
const gcorePrefix = join(work, 'gcore');
await promisify(execFile)('gcore', ['-o', gcorePrefix, String(sleeper.pid)]);
const realCore = readFileSync(`${gcorePrefix}.${String(sleeper.pid)}`);
const debuggable = makeCrash({
  namespace: 'team-a',
  pod: 'sleeper-0',
  at: now - 60 * minute,
  executable: '/usr/bin/sleep',
});
/** Makes `crash` hold `core` as its dump, stored zstd-compressed as the collector keeps it. */
function holdCore(crash: ReturnType<typeof makeCrash>, core: Buffer): void {
  crash.raw = core;
  crash.stored = zstdCompressSync(core);
  crash.event.dump = {
    ...crash.event.dump,
    size_bytes: core.length,
    stored_bytes: crash.stored.length,
    sha256: sha256(core),
  };
}
holdCore(debuggable, realCore);

// A real crash of a program compiled with -g whose debug info was split off and stripped of every symbol, as
// in an image: the stripped executable and the debug file are in the store by build id (where
// the collector and the analyzer keep them), so `podmortem debug` finds both through the API.
const CRASH_SOURCE = `#include <stddef.h>
__attribute__((noinline)) static void write_through(int *target) {
  *target = 42; /* CRASH */
}
int main(int argc, char **argv) {
  (void)argv;
  write_through(argc > 5 ? &argc : NULL);
  return 0;
}
`;
const progDir = join(work, 'prog');
mkdirSync(progDir);
const { victim: victimExe = '' } = await buildPrograms(progDir, { victim: { source: CRASH_SOURCE } });
const { debug: victimDebug } = await splitDebugInfo(victimExe, join(progDir, 'debug'));
const victimBuildId = (await buildIdOf(victimExe)) ?? '';
const { victim: victimCrash } = await crashAll(progDir, { victim: { exe: victimExe } });
const victimCore = readFileSync(victimCrash?.core ?? '');
const stripped = makeCrash({
  namespace: 'team-a',
  pod: 'victim-0',
  at: now - 65 * minute,
  executable: '/app/victim',
});
holdCore(stripped, victimCore);
stripped.event.analysis = {
  build_id: victimBuildId,
  modules: [{ path: '/app/victim', build_id: victimBuildId, captured: true }],
};
for (const [kind, from] of [
  ['executable', victimExe],
  ['debuginfo', victimDebug],
] as const) {
  const path = storage.path(moduleKey(victimBuildId, kind));
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, readFileSync(from));
}

// An analysed crash of two threads, for `podmortem info`'s backtraces and `podmortem groups`.
const THREADED_SIG = '0123456789abcdef0123456789abcdef';
const threaded = makeCrash({ namespace: 'team-a', pod: 'worker-0', at: now - 70 * minute });
threaded.event.analysis = {
  status: 'ok',
  signature: THREADED_SIG,
  title: 'SIGSEGV in parse_header (parse.c:4)',
  analyzed_at: new Date(now).toISOString(),
  analyzer: '0.1.0',
  frames: [
    { module: 'worker', function: 'parse_header', file: '/src/parse.c', line: 4, offset: 0x1139 },
    { module: 'worker', offset: 0x1185 },
  ],
  threads: [
    {
      tid: 12,
      name: 'io',
      crashing: false,
      frames: [{ module: 'libc.so.6', function: 'epoll_wait', offset: 0x10 }],
    },
    {
      tid: 11,
      name: 'worker',
      crashing: true,
      frames: [
        { module: 'worker', function: 'parse_header', file: '/src/parse.c', line: 4, offset: 0x1139 },
        { module: 'worker', offset: 0x1185 },
      ],
    },
  ],
};

const all = [main, second, other, removed, forged, hidden, debuggable, threaded, stripped];
for (const c of all) storage.write(c);
rmSync(storage.path(dumpRelPath(removed.event)));
await index.add(all.map((c) => c.event));
// `podmortem delete` takes this one's core away: in a namespace of its own, so no other test sees it.
const doomed = makeCrash({ namespace: 'team-d', pod: 'batch-0', at: now - 4 * minute });
const doomedToo = makeCrash({ namespace: 'team-d', pod: 'batch-1', at: now - 4 * minute });
storage.write(doomed);
storage.write(doomedToo);
await index.add([doomed.event, doomedToo.event]);
const dora = addUser(kube, 'dora', ['team-d']);
kube.grant({ user: 'dora', namespace: 'team-d', verbs: ['delete'], ...RBAC, subresource: 'dump' });

// What happened around the main crash, for `podmortem context`: a window of --before 600 --after
// 120 s, evaluated every 15 s (49 points), and one sample at each evaluation time (k = 0..48,
// the crash at k = 40), from five minutes before the window on, so every point has its value.
const mainAt = Date.parse(main.event['@timestamp']);
const ctxBefore = 600;
const ctxAfter = 120;
const ctxStep = 15;
const ctxFrom = mainAt - ctxBefore * 1000;
const ctxTo = mainAt + ctxAfter * 1000;
const points = Array.from({ length: (ctxBefore + ctxAfter) / ctxStep + 1 }, (_, k) => k);
const crashK = ctxBefore / ctxStep;
const seeded = {
  // The working set grows to the crash, then the restarted container starts small.
  memory: (k: number) => (k <= crashK ? 30_000 + 500 * (k + 20) : 12_000 + 100 * (k - crashK)),
  // A counter of CPU seconds, 0.25 s a second.
  cpuSeconds: (k: number) => 5000 + 3.75 * k,
  restarts: (k: number) => (k > crashK ? 1 : 0),
};
const ctxSeries = (labels: Record<string, string>, value: (k: number) => number): Series => ({
  labels,
  samples: Array.from({ length: points.length + 20 }, (_, i) => i - 20).map((k) => ({
    timestampMs: ctxFrom + k * ctxStep * 1000,
    value: value(k),
  })),
});
const podLabels = (name: string, pod: string, container: string, extra: Record<string, string> = {}) => ({
  __name__: name,
  namespace: 'team-a',
  pod,
  container,
  ...extra,
});
const neighbour = `${podName}-other`;
await remoteWrite([
  ctxSeries(podLabels('container_memory_working_set_bytes', podName, 'api'), seeded.memory),
  ctxSeries(podLabels('container_cpu_usage_seconds_total', podName, 'api'), seeded.cpuSeconds),
  ctxSeries(podLabels('kube_pod_container_status_restarts_total', podName, 'api'), seeded.restarts),
  // The last termination was not an OOM kill: no oom_kills series.
  ctxSeries(
    podLabels('kube_pod_container_status_last_terminated_reason', podName, 'api', { reason: 'Error' }),
    () => 1,
  ),
  // Another container of the pod, and another pod: none of it is the crash's context.
  ctxSeries(podLabels('container_memory_working_set_bytes', podName, 'sidecar'), (k) => 90_000 + k),
  ctxSeries(podLabels('container_memory_working_set_bytes', neighbour, 'api'), (k) => 70_000 + k),
  ctxSeries(podLabels('container_cpu_usage_seconds_total', neighbour, 'api'), (k) => 100 + 7.5 * k),
  ctxSeries(podLabels('kube_pod_container_status_restarts_total', neighbour, 'api'), () => 5),
  ctxSeries(
    podLabels('kube_pod_container_status_last_terminated_reason', neighbour, 'api', { reason: 'OOMKilled' }),
    () => 1,
  ),
]);

const logDocs: LogDoc[] = [
  { at: mainAt - 11 * minute, ns: 'team-a', pod: podName, container: 'api', message: 'before the window' },
  { at: mainAt - 9 * minute, ns: 'team-a', pod: podName, container: 'api', message: 'request 1 accepted' },
  { at: mainAt - 2 * minute, ns: 'team-a', pod: podName, container: 'api', message: 'heap at 60 kB' },
  { at: mainAt - 1000, ns: 'team-a', pod: podName, container: 'api', message: 'segfault coming' },
  { at: mainAt + minute, ns: 'team-a', pod: podName, container: 'api', message: 'restarted' },
  { at: mainAt + 5 * minute, ns: 'team-a', pod: podName, container: 'api', message: 'after the window' },
  { at: mainAt - minute, ns: 'team-a', pod: podName, container: 'sidecar', message: 'sidecar line' },
  { at: mainAt - minute, ns: 'team-a', pod: neighbour, container: 'api', message: 'other pod line' },
  { at: mainAt - minute, ns: 'team-b', pod: podName, container: 'api', message: 'other namespace line' },
];
await seedLogs(es, logsIndex, logDocs);

// The topic `podmortem reanalyze` publishes to, through the API.
const { topic: requestTopic, published: requestsPublished } = await requestTopicFor(t, 'pm-cli-requests');
// `podmortem delete` as it runs: the API publishes the request, retention's deletion consumer
// removes the core and publishes the removal, the real indexer merges it into the crash's
// document, which the command waits for.
const names = { ...uniqueNames('pm-cli'), alias: index.alias };
const kafka = testKafka();
await topicsForTest(t, kafka, es, names, 1);
const indexer = await startIndexer({ names });
t.teardown(() => stopIndexer(indexer));
await until('the indexer ready', () => indexer.ready());
const removalsPublished = async () => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await admin.fetchTopicOffsets(names.removals)).reduce((n, p) => n + Number(p.high), 0);
  } finally {
    await admin.disconnect();
  }
};

// The API as its own process.
const port = await freePort();
const opsPort = await freePort();
const server = `http://127.0.0.1:${port}`;
const apiEnv = {
  PATH: process.env.PATH ?? '',
  PODMORTEM_API_HOST: '127.0.0.1',
  PODMORTEM_API_PORT: String(port),
  PODMORTEM_API_STORAGE_ROOT: storage.root,
  PODMORTEM_API_ELASTICSEARCH_URL: stack.elasticsearchUrl,
  PODMORTEM_API_PROMETHEUS_URL: stack.prometheusUrl,
  PODMORTEM_API_CRASH_INDEX: index.alias,
  PODMORTEM_API_LOGS_INDEX: logsIndex,
  PODMORTEM_API_KUBECONFIG: kube.writeKubeconfig(join(work, 'api-kubeconfig')),
  PODMORTEM_API_KAFKA_BROKERS: stack.kafkaBrokers.join(','),
  PODMORTEM_API_REQUEST_TOPIC: requestTopic,
  PODMORTEM_API_DUMP_DELETION_TOPIC: names.deletions,
  PODMORTEM_API_OPS_HOST: '127.0.0.1',
  PODMORTEM_API_OPS_PORT: String(opsPort),
  LOG_LEVEL: 'warn',
};
const api: ChildProcess = spawn(process.execPath, [join(repoDir, 'query-api/src/main.ts')], {
  env: apiEnv,
  stdio: ['ignore', 'inherit', 'inherit'],
});
t.teardown(() => api.kill('SIGTERM'));
// Never left behind, even when the test process is ended early.
process.once('exit', () => api.kill('SIGKILL'));
await until(
  'the API to start',
  () =>
    fetch(`${server}/healthz`).then(
      (r) => r.ok,
      () => false,
    ),
  20_000,
);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const home = join(work, 'home');
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      bin,
      args,
      {
        env: { PATH: process.env.PATH ?? '', HOME: home, PODMORTEM_SERVER: server, ...env },
        cwd: work,
        maxBuffer: 64 << 20,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
const asAlice = { PODMORTEM_TOKEN: alice };

t.test('/metrics is on the ops port alone, not on the port tenants reach', async (t) => {
  t.equal((await cli(['list'], asAlice)).code, 0);
  const onApi = await fetch(`${server}/metrics`);
  t.equal(onApi.status, 404, 'the API port has no /metrics');
  t.notMatch(await onApi.text(), 'podmortem_api_', 'and tells none of it');
  const ops = await fetch(`http://127.0.0.1:${opsPort}/metrics`);
  t.equal(ops.status, 200);
  t.ok(
    metricValue(await ops.text(), 'podmortem_api_requests_total', {
      route: '/v1/crashes',
      method: 'GET',
      status: '200',
    }) >= 1,
    "the API's requests are counted there",
  );
});

t.test('main.ts refuses a bad configuration, naming the variable', async (t) => {
  const r = await new Promise<Run>((resolve) =>
    execFile(
      process.execPath,
      [join(repoDir, 'query-api/src/main.ts')],
      { env: { ...apiEnv, PODMORTEM_API_PORT: 'eighty' } },
      (err, stdout, stderr) => resolve({ code: Number(err?.code ?? 0), stdout, stderr }),
    ),
  );
  t.equal(r.code, 2);
  t.match(r.stdout + r.stderr, 'PODMORTEM_API_PORT');
});

t.test('list: a table, JSON, filters, and only what the caller may see', async (t) => {
  const table = await cli(['list'], asAlice);
  t.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trim().split('\n');
  t.match(lines[0], /^TIME +ID +NAMESPACE +POD +CONTAINER +SIGNAL +DUMP +EXECUTABLE$/);
  const visible = all
    .filter((c) => c !== hidden)
    .sort((a, b) => (a.event['@timestamp'] < b.event['@timestamp'] ? 1 : -1));
  t.same(
    lines.slice(1).map((l) => l.split(/ +/)[1]),
    visible.map((c) => c.event.crash.id),
    'every crash of team-a, newest first, none of team-b',
  );
  t.match(lines[1], new RegExp(`team-a +${podName} +api +SIGSEGV +stored`));

  const json = await cli(['list', '--json', '--pod', podName, '--signal', 'SIGABRT'], asAlice);
  t.equal(json.code, 0);
  t.same(
    (JSON.parse(json.stdout) as { crash: { id: string } }[]).map((e) => e.crash.id),
    [second.event.crash.id],
  );
  const limited = await cli(['list', '--json', '--limit', '2', '--since', '2h'], asAlice);
  t.equal(limited.code, 0, limited.stderr);
  t.equal((JSON.parse(limited.stdout) as unknown[]).length, 2);
  const none = await cli(['list', '--namespace', 'team-a', '--pod', 'nobody'], asAlice);
  t.equal(none.code, 0);
  t.equal(none.stdout, '');
  t.match(none.stderr, 'no crashes found');
});

t.test('info: the crash, in words or JSON', async (t) => {
  const r = await cli(['info', main.event.crash.id], asAlice);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, `crash      ${main.event.crash.id}`);
  t.match(r.stdout, `pod        team-a/${podName} (uid ${uid})`);
  t.match(r.stdout, 'signal     SIGSEGV (11)');
  t.match(r.stdout, `sha256     ${main.event.dump.sha256 ?? ''}`);
  t.match(r.stdout, /backtrace:\n {2}#0 +handle_request in \/usr\/local\/bin\/api-server\+0x2a\n/);
  const json = await cli(['info', '--json', main.event.crash.id], asAlice);
  t.same(JSON.parse(json.stdout), main.event);
});

t.test("info: the analysis and the crashing thread's backtrace, --all-threads every thread", async (t) => {
  const id = threaded.event.crash.id;
  const r = await cli(['info', id], asAlice);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /\nanalysis +ok\n/);
  t.match(r.stdout, /\ntitle +SIGSEGV in parse_header \(parse\.c:4\)\n/);
  t.match(r.stdout, `signature  ${THREADED_SIG}`);
  t.match(
    r.stdout,
    '\nthread 11 (worker), crashing:\n  #0   parse_header at /src/parse.c:4\n  #1   ?? in worker+0x1185\n',
  );
  t.notMatch(r.stdout, 'thread 12', 'only the crashing thread by default');
  const every = await cli(['info', id, '--all-threads'], asAlice);
  t.equal(every.code, 0, every.stderr);
  const at = (s: string) => every.stdout.indexOf(s);
  t.ok(at('thread 11 (worker), crashing:') > 0, 'the crashing thread');
  t.ok(at('thread 12 (io):\n  #0   epoll_wait in libc.so.6+0x10') > at('thread 11'), 'then the others');
});

t.test('groups and group: a table of groups, one group and its crashes', async (t) => {
  const r = await cli(['groups'], asAlice);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.match(lines[0], /^COUNT +NEW +FIRST SEEN +LAST SEEN +PODS +SIGNATURE +TITLE$/);
  const template = main.event.analysis?.signature ?? '';
  t.match(
    lines[1],
    new RegExp(`^6 +new +\\S+ +\\S+ +5 \\(.*\\) +${template.replace(/[+]/g, '\\+')} +SIGSEGV`),
  );
  t.match(
    lines[2],
    new RegExp(`^1 +new +\\S+ +\\S+ +1 \\(worker-0\\) +${THREADED_SIG} +SIGSEGV in parse_header`),
  );
  t.equal(lines.length, 3, "two groups of team-a; team-b's crash is in none");
  const json = await cli(['groups', '--json', '--new', '--new-within', '30m', '-n', 'team-a'], asAlice);
  t.equal(json.code, 0, json.stderr);
  t.same(
    (JSON.parse(json.stdout) as { groups: unknown[] }).groups,
    [],
    'no group first crashed within 30 minutes',
  );
  const one = await cli(['group', THREADED_SIG], asAlice);
  t.equal(one.code, 0, one.stderr);
  t.match(one.stdout, `signature   ${THREADED_SIG}`);
  t.match(one.stdout, /\ncrashes +1 /);
  t.match(one.stdout, new RegExp(`newest crashes:\\n +TIME .*\\n +\\S+ +${threaded.event.crash.id} `));
  const hiddenGroup = await cli(['group', 'ffffffffffffffffffffffffffffffff'], asAlice);
  t.equal(hiddenGroup.code, 3, 'a signature the caller sees no crash of: not found');
  t.match(hiddenGroup.stderr, 'no crashes with signature ffffffffffffffffffffffffffffffff found');
  const bad = await cli(['groups', '--new-within', 'soon'], asAlice);
  t.equal(bad.code, 2, 'a bad duration is a usage error');
  t.match(bad.stderr, 'querystring/new_within');
  const badSort = await cli(['groups', '--sort', 'size'], asAlice);
  t.equal(badSort.code, 2);
  t.match(badSort.stderr, '--sort size: count or last-seen');
});

t.test('reanalyze: the request published once; a crash the caller cannot see is not found', async (t) => {
  const before = await requestsPublished();
  const r = await cli(['reanalyze', threaded.event.crash.id], asAlice);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, `crash ${threaded.event.crash.id}: re-analysis requested at `);
  const denied = await cli(['reanalyze', hidden.event.crash.id], asAlice);
  t.equal(denied.code, 3);
  t.match(denied.stderr, `crash ${hidden.event.crash.id} not found`);
  t.equal(await requestsPublished(), before + 1, 'one request on the topic: the denied one is not there');
});

t.test('delete: the core gone, idempotent; refused without the verb, a hidden crash not found', async (t) => {
  const id = doomed.event.crash.id;
  const help = await cli(['delete', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, 'Usage: podmortem delete ID [--no-wait | --timeout SECONDS] [--json]');
  const malformed = await cli(['delete', 'not-an-id'], { PODMORTEM_TOKEN: dora });
  t.equal(malformed.code, 2);
  t.match(malformed.stderr, 'podmortem delete: not-an-id: not a crash id');
  const badTimeout = await cli(['delete', id, '--timeout', '0'], { PODMORTEM_TOKEN: dora });
  t.equal(badTimeout.code, 2);
  t.match(badTimeout.stderr, '--timeout 0: expected a positive integer');
  const forbidden = await cli(['delete', main.event.crash.id], asAlice);
  t.equal(forbidden.code, 4);
  t.match(forbidden.stderr, '403 alice may not delete coredumps/dump in namespace team-a');
  t.ok(existsSync(storage.path(dumpRelPath(main.event))), 'a refused delete leaves the core');
  const hiddenOne = await cli(['delete', hidden.event.crash.id], { PODMORTEM_TOKEN: dora });
  t.equal(hiddenOne.code, 3);
  t.match(hiddenOne.stderr, `crash ${hidden.event.crash.id} not found`);

  // No retention running yet: the request is accepted and waits; the command gives up (exit 6).
  const waiting = await cli(['delete', id, '--timeout', '1'], { PODMORTEM_TOKEN: dora });
  t.equal(waiting.code, 6, waiting.stderr);
  t.match(waiting.stderr, `crash ${id}: deletion requested; waiting for it to be done`);
  t.match(waiting.stderr, 'is not done after 1 s (is the retention service running?)');
  t.ok(existsSync(storage.path(dumpRelPath(doomed.event))), 'the core is still there');

  // Retention comes: it does the waiting request, and the next deletion is done while the command waits.
  await startDeletions(t, {
    store: new FsStore({ root: storage.root }),
    deletionTopic: names.deletions,
    removalTopic: names.removals,
  });
  await until('the waiting request done', () => !existsSync(storage.path(dumpRelPath(doomed.event))));
  const before = await removalsPublished();
  const other = doomedToo.event.crash.id;
  const r = await cli(['delete', other], { PODMORTEM_TOKEN: dora });
  t.equal(r.code, 0, r.stderr);
  t.match(
    r.stdout,
    new RegExp(`^crash ${other}: dump deleted \\(deleted by dora at [0-9T:.Z-]+: deleted by dora\\)\n$`),
  );
  t.notOk(existsSync(storage.path(dumpRelPath(doomedToo.event))), 'the core is gone');
  t.equal(await removalsPublished(), before + 1, 'its removal is on its topic');
  const again = await cli(['delete', id, '--json'], { PODMORTEM_TOKEN: dora });
  t.equal(again.code, 0, again.stderr);
  t.match(JSON.parse(again.stdout), {
    crash_id: id,
    changed: false,
    dump: { status: 'deleted', removed_by: 'dora' },
  });
  const dumpCmd = await cli(['dump', id, '-o', join(work, 'doomed.core')], { PODMORTEM_TOKEN: dora });
  t.not(dumpCmd.code, 0, 'the deleted core cannot be downloaded');
  t.match(dumpCmd.stderr, '410');
});

t.test('dump: raw and stored, sha256 verified, progress on stderr', async (t) => {
  const raw = join(work, 'main.core');
  const r = await cli(['dump', main.event.crash.id, '-o', raw, '--progress'], asAlice);
  t.equal(r.code, 0, r.stderr);
  t.equal(createHash('sha256').update(readFileSync(raw)).digest('hex'), main.event.dump.sha256);
  t.match(r.stderr, '100%');
  t.match(r.stderr, `sha256 ${main.event.dump.sha256 ?? ''} verified`);
  t.notOk(existsSync(`${raw}.part`));

  const zst = join(work, 'main.core.zst');
  const z = await cli(['dump', main.event.crash.id, '-o', zst, '--format', 'zstd', '--quiet'], asAlice);
  t.equal(z.code, 0, z.stderr);
  t.equal(z.stderr, '', '--quiet');
  t.ok(
    readFileSync(zst).equals(main.stored ?? Buffer.alloc(0)),
    'the stored file, verified by decompression',
  );
});

t.test('dump: a core that does not match its sha256 is not kept (exit 5)', async (t) => {
  const out = join(work, 'forged.core');
  const r = await cli(['dump', forged.event.crash.id, '-o', out], asAlice);
  t.equal(r.code, 5);
  t.match(r.stderr, 'sha256 mismatch');
  t.notOk(existsSync(out));
  t.notOk(existsSync(`${out}.part`));
});

t.test('exit codes: not found, removed, not allowed, no token, usage', async (t) => {
  const out = join(work, 'x.core');
  const cases: [string[], Record<string, string>, number, string][] = [
    [['info', '01900000-0000-7000-8000-000000000000'], asAlice, 3, 'not found'],
    [['info', hidden.event.crash.id], asAlice, 3, 'not found'],
    [['dump', removed.event.crash.id, '-o', out], asAlice, 3, '410'],
    [['list'], {}, 4, '401'],
    [['list'], { PODMORTEM_TOKEN: 'nonsense' }, 4, '401'],
    [['list', '--namespace', 'team-b'], asAlice, 4, '403'],
    [['list', '--signal', 'kill -9'], asAlice, 2, 'querystring/signal'],
    [['list', '--limit', 'many'], asAlice, 2, '--limit'],
    [['info'], asAlice, 2, 'expected podmortem info ID'],
    [['dump', main.event.crash.id], asAlice, 2, '-o FILE'],
    [['frobnicate'], asAlice, 2, 'unknown command'],
    [['list', '--colour'], asAlice, 2, "Unknown option '--colour'"],
    [['list'], { ...asAlice, PODMORTEM_SERVER: `http://127.0.0.1:${port + 1}` }, 6, 'cannot reach'],
  ];
  for (const [args, env, code, text] of cases) {
    const r = await cli(args, env);
    t.equal(r.code, code, `${args.join(' ')} → ${code}`);
    t.match(r.stderr, text);
  }
  t.notOk(existsSync(out));
  for (const c of ['list', 'info', 'dump', 'context', 'debug']) {
    const help = await cli([c, '--help']);
    t.equal(help.code, 0);
    t.match(help.stdout, `Usage: podmortem ${c}`);
    t.match(help.stdout, 'Exit codes:');
  }
});

t.test('the token of the current kubeconfig context', async (t) => {
  const kubeconfig = kube.writeKubeconfig(join(work, 'user-kubeconfig'), alice);
  const viaEnv = await cli(['info', main.event.crash.id], { KUBECONFIG: kubeconfig });
  t.equal(viaEnv.code, 0, viaEnv.stderr);
  const viaFlag = await cli(['info', main.event.crash.id, '--kubeconfig', kubeconfig]);
  t.equal(viaFlag.code, 0, viaFlag.stderr);
  const flagWins = await cli(['info', main.event.crash.id, '--token', 'nonsense'], {
    KUBECONFIG: kubeconfig,
  });
  t.equal(flagWins.code, 4, '--token comes first');
  t.match(flagWins.stderr, '401 the bearer token is not valid');
});

/** The text block of a section of `podmortem context`: its heading line and the lines under it. */
function section(stdout: string, heading: string): string[] {
  const lines = stdout.split('\n');
  const at = lines.findIndex((l) => l.startsWith(heading));
  if (at === -1) return [];
  const end = lines.findIndex((l, i) => i > at && l === '');
  return lines.slice(at, end === -1 ? undefined : end);
}

t.test('context: the pod’s metrics and log lines of the window, its other crashes', async (t) => {
  const window = ['--before', String(ctxBefore), '--after', String(ctxAfter)];
  const r = await cli(['context', main.event.crash.id, ...window], asAlice);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '');
  t.match(r.stdout, `crash ${main.event.crash.id} at ${main.event['@timestamp']}`);
  t.match(r.stdout, `in team-a/${podName} container api`);
  t.match(
    r.stdout,
    `window ${new Date(ctxFrom).toISOString()} … ${new Date(ctxTo).toISOString()} (step ${ctxStep}s)`,
  );

  // Min, max and last of the samples at the window's evaluation times, as seeded.
  const cpuRate = (seeded.cpuSeconds(1) - seeded.cpuSeconds(0)) / ctxStep;
  const summary = (values: number[]) =>
    `min ${Math.min(...values)}  max ${Math.max(...values)}  last ${values.at(-1) ?? '?'}  (${values.length} points)`;
  t.same(
    section(r.stdout, 'metrics:'),
    [
      'metrics:',
      `  memory: ${summary(points.map(seeded.memory))}`,
      `  cpu: ${summary(points.map(() => cpuRate))}`,
      `  restarts: ${summary(points.map(seeded.restarts))}`,
      '  oom_kills: no series',
    ],
    'one series each, the pod’s container’s: not the sidecar’s nor another pod’s',
  );

  const expectedLines = logDocs
    .filter(
      (d) =>
        d.ns === 'team-a' && d.pod === podName && d.container === 'api' && d.at >= ctxFrom && d.at <= ctxTo,
    )
    .sort((a, b) => a.at - b.at);
  t.ok(expectedLines.length >= 3, 'the seed has lines in the window');
  t.same(
    section(r.stdout, 'logs ('),
    [
      `logs (${expectedLines.length} lines from ${logsIndex}):`,
      ...expectedLines.map((d) => `  ${new Date(d.at).toISOString()}  ${d.message}`),
    ],
    'the container’s lines of the window, oldest first',
  );
  for (const d of logDocs.filter((x) => !expectedLines.includes(x)))
    t.notMatch(r.stdout, d.message, `not shown: ${d.message}`);

  const others = section(r.stdout, 'other crashes of the pod');
  t.equal(others[0], 'other crashes of the pod (1):');
  t.match(
    others[2],
    new RegExp(`^  ${second.event['@timestamp']} +${second.event.crash.id} +team-a +${podName} `),
  );
  t.equal(others.length, 3, 'a heading, the table’s header and the one other crash');
  t.notMatch(r.stdout, 'unavailable:', 'every source answered');

  const json = await cli(['context', '--json', main.event.crash.id, ...window], asAlice);
  t.equal(json.code, 0, json.stderr);
  const ctx = JSON.parse(json.stdout) as {
    window: { from: string; to: string };
    metrics: { name: string; series: { metric: Record<string, string>; values: [number, string][] }[] }[];
  };
  t.same(ctx.window, {
    from: new Date(ctxFrom).toISOString(),
    to: new Date(ctxTo).toISOString(),
    step_seconds: ctxStep,
  });
  const memory = ctx.metrics.find((m) => m.name === 'memory')?.series ?? [];
  t.same(
    memory.map((s) => s.metric),
    [{ __name__: 'container_memory_working_set_bytes', namespace: 'team-a', pod: podName, container: 'api' }],
  );
  t.same(
    memory[0]?.values,
    points.map((k) => [(ctxFrom + k * ctxStep * 1000) / 1000, String(seeded.memory(k))]),
    'every seeded sample at its time',
  );
});

t.test('context of a pod without series or logs says so', async (t) => {
  const r = await cli(['context', other.event.crash.id, '--before', '600', '--after', '120'], asAlice);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, `in team-a/${webName} container api`);
  t.same(section(r.stdout, 'metrics:'), [
    'metrics:',
    '  memory: no series',
    '  cpu: no series',
    '  restarts: no series',
    '  oom_kills: no series',
  ]);
  t.same(section(r.stdout, 'logs ('), [`logs (0 lines from ${logsIndex}):`]);
  t.same(section(r.stdout, 'other crashes of the pod'), ['other crashes of the pod (0):']);
  t.notMatch(r.stdout, 'unavailable:', 'no series, not an unavailable Prometheus');
});

t.test('context: exit codes', async (t) => {
  const cases: [string[], Record<string, string>, number, string][] = [
    [['context', '01900000-0000-7000-8000-000000000000'], asAlice, 3, 'not found'],
    [['context', hidden.event.crash.id], asAlice, 3, `crash ${hidden.event.crash.id} not found`],
    [['context', main.event.crash.id], {}, 4, '401'],
    [['context', main.event.crash.id, '--before', '10'], asAlice, 2, 'querystring/before'],
    [['context', main.event.crash.id, '--log-lines', '0'], asAlice, 2, 'querystring/log_lines'],
    [['context'], asAlice, 2, 'expected podmortem context ID'],
  ];
  for (const [args, env, code, text] of cases) {
    const r = await cli(args, env);
    t.equal(r.code, code, `${args.join(' ')} → ${code}`);
    t.match(r.stderr, text, `${args.join(' ')}: ${text}`);
    t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
  }
});

t.test('debug: opens the core in gdb, or says what is missing', async (t) => {
  const missing = await cli(['debug', main.event.crash.id, '--gdb', '/nonexistent/gdb'], asAlice);
  t.equal(missing.code, 1);
  t.match(missing.stderr, 'gdb is not on PATH');
  t.match(missing.stderr, 'the executable /usr/local/bin/api-server is not here');
  t.match(missing.stderr, 'registry.example/api-server:1.2.3');
  t.ok(existsSync(join(work, `${main.event.crash.id}.core`)), 'the core is downloaded all the same');

  const r = await cli(['debug', debuggable.event.crash.id, '--', '-batch', '-ex', 'info inferiors'], asAlice);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout + r.stderr, /Core was generated by/);
  t.match(r.stdout, /\(core\) +\/usr\/bin\/sleep/, 'gdb has the executable and the core');
});

t.test('debug: the executable and its debug info through the API, as debuginfod', async (t) => {
  t.match(victimBuildId, /^[0-9a-f]{40}$/, 'the program has a GNU build id');
  const { stdout: sections } = await promisify(execFile)('readelf', ['-S', victimExe]);
  t.notMatch(sections, '.debug_info', 'the stored executable has no debug info of its own');
  const tmp = join(work, 'debug-tmp');
  mkdirSync(tmp);
  const id = stripped.event.crash.id;
  const core = join(work, 'victim.core');
  const r = await cli(
    [
      'debug',
      id,
      '-o',
      core,
      '--',
      '-batch',
      '-ex',
      'bt',
      '-ex',
      'shell stat -c "headers mode %a" "$DEBUGINFOD_HEADERS_FILE"',
    ],
    { ...asAlice, TMPDIR: tmp },
  );
  t.equal(r.code, 0, r.stderr);
  const line = lineOf(CRASH_SOURCE, '/* CRASH */');
  t.match(r.stdout, new RegExp(`#0 .*write_through \\(target=0x0\\) at .*victim\\.c:${line}`), r.stdout);
  t.match(r.stdout, /#1 .*main \(/, 'main below it');
  t.match(r.stdout, 'headers mode 600', 'the token file is for the user alone');
  t.ok(readFileSync(core).equals(victimCore), 'the core is kept, byte for byte');
  t.same(readdirSync(tmp), [], 'the temporary executable, token file and cache are removed');
  t.notOk((r.stdout + r.stderr).includes(alice), 'the token is never printed');

  // gdb's exit code is the command's.
  const failing = await cli(['debug', id, '-o', core, '--', '-batch', '-ex', 'quit 7'], {
    ...asAlice,
    TMPDIR: tmp,
  });
  t.equal(failing.code, 7, failing.stderr);

  // A caller who may not read the crash gets neither the core nor the executable.
  const bob = addUser(kube, 'bob-debug', ['team-b']);
  const denied = await cli(['debug', id, '-o', join(work, 'bob.core'), '--', '-batch', '-ex', 'bt'], {
    PODMORTEM_TOKEN: bob,
    TMPDIR: tmp,
  });
  t.equal(denied.code, 3, denied.stderr);
  t.match(denied.stderr, `podmortem debug: 404 crash ${id} not found`);
  t.equal(denied.stdout, '');
  t.notOk(existsSync(join(work, 'bob.core')));
  const direct = await fetch(`${server}/buildid/${victimBuildId}/executable`, {
    headers: { authorization: `Bearer ${bob}` },
  });
  t.equal(direct.status, 404, 'nor the executable by build id');
  t.same(readdirSync(tmp), []);
});
