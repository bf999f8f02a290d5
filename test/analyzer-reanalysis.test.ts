import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@elastic/elasticsearch';
import type { CrashEvent } from '@podmortem/contract';
import { FsStore } from '@podmortem/contract/store';
import t from 'tap';
import {
  crashEventFor,
  produceCrashes,
  readAnalyses,
  startAnalyzer,
  stopAnalyzer,
  storeDump,
  storeModule,
  testKafka,
} from './support/analyzer-harness.ts';
import { startIndexer, stopIndexer, topicsForTest, uniqueNames } from './support/indexer-harness.ts';
import { until } from './support/poll.ts';
import { freePort } from './support/ports.ts';
import { addUser, bearer, harness } from './support/query-api.ts';
import { buildIdOf, buildPrograms, crashAll } from './support/real-crash.ts';
import { stack } from './support/stack.ts';

// Re-analysis on demand, end to end on the real Kafka and Elasticsearch with the indexer and the
// analyzer as their own processes: POST /v1/crashes/{id}/analysis of an analysed crash puts its
// event on the request topic, the analyzer publishes a second analysis with a newer analyzed_at,
// and the indexer makes it the crash's analysis. A caller who may not read the crash gets a 404
// and publishes nothing; with Kafka down the route is a 503 and the API stays ready.

const segvSource = `int crash_here(int *p) { return *p; }
int main(void) { return crash_here(0); }
`;

const dir = await mkdtemp(join(tmpdir(), 'pm-reanalysis-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const storageRoot = await mkdtemp(join(dir, 'storage-'));
const workDir = await mkdtemp(join(dir, 'work-'));
const store = new FsStore({ root: storageRoot });
const exes = await buildPrograms(dir, { segv: { source: segvSource } });
const exe = exes.segv ?? '';
const crashed = (await crashAll(dir, { segv: { exe } })).segv;
if (!crashed) throw new Error('no crash');
const buildId = (await buildIdOf(exe)) ?? '';
await storeModule(store, buildId, exe);

const kafka = testKafka();
const es = new Client({ node: stack.elasticsearchUrl });
t.teardown(() => es.close());
const names = uniqueNames('pm-reanalysis');
await topicsForTest(t, kafka, es, names, 2);

const indexer = await startIndexer({ names });
t.teardown(() => stopIndexer(indexer));
const analyzer = await startAnalyzer({
  names: {
    topic: names.topic,
    analysisTopic: names.analyses,
    requestTopic: names.requests,
    group: `${names.group}-analyzer`,
  },
  storageRoot,
  workDir,
});
t.teardown(() => stopAnalyzer(analyzer));
const reader = await readAnalyses(kafka, names.analyses);
t.teardown(reader.stop);

const h = await harness({
  crashIndex: names.alias,
  storageRoot,
  kafkaBrokers: stack.kafkaBrokers,
  requestTopic: names.requests,
});
t.teardown(() => h.close());

const event = crashEventFor({ executable: exe, pid: crashed.pid, buildId });
await storeDump(store, event, await readFile(crashed.core));
const namespace = event.kubernetes?.namespace ?? '';
const id = event.crash.id;
const alice = addUser(h.kube, 'alice', [namespace]);
const mallory = addUser(h.kube, 'mallory', ['elsewhere']);

const analysesOfCrash = () => reader.records.filter((r) => r.crashId === id);
async function crashDoc(): Promise<CrashEvent> {
  const res = await h.app.inject({ url: `/v1/crashes/${id}`, headers: bearer(alice) });
  return res.json<CrashEvent>();
}

t.test('an analysed crash is analysed again on request, and the newer analysis is kept', async (t) => {
  await produceCrashes(kafka, names.topic, [event]);
  await until(`the first analysis; analyzer logs: ${analyzer.logs.slice(-3).join('\n')}`, () =>
    analysesOfCrash().length === 1 ? true : undefined,
  );
  const first = analysesOfCrash()[0]?.analysis.analysis;
  t.match(first, { status: 'ok', title: /^SIGSEGV in crash_here/ });
  await until('the first analysis in the crash document', async () =>
    (await crashDoc()).analysis?.analyzed_at === first?.analyzed_at ? true : undefined,
  );

  // Someone who may not read the crash: the 404 of a missing crash, and nothing published (the
  // request below is keyed alike, so one of mallory's would have been analysed before it).
  const refused = await h.app.inject({
    method: 'POST',
    url: `/v1/crashes/${id}/analysis`,
    headers: bearer(mallory),
  });
  t.equal(refused.statusCode, 404);
  t.match(refused.json(), { code: 'PM_ERR_CRASH_NOT_FOUND', message: `crash ${id} not found` });

  const res = await h.app.inject({
    method: 'POST',
    url: `/v1/crashes/${id}/analysis`,
    headers: bearer(alice),
  });
  t.equal(res.statusCode, 202);
  t.match(res.json(), { crash_id: id, requested_at: String });

  await until('the second analysis', () => (analysesOfCrash().length >= 2 ? true : undefined));
  const records = analysesOfCrash();
  t.equal(records.length, 2, 'exactly one more analysis: the refused request published nothing');
  const second = records[1]?.analysis.analysis;
  t.ok(
    Date.parse(second?.analyzed_at ?? '') > Date.parse(first?.analyzed_at ?? ''),
    `a newer analyzed_at (${second?.analyzed_at} after ${first?.analyzed_at})`,
  );
  t.match(second, { status: 'ok', signature: first?.signature, title: first?.title });
  t.equal(records[1]?.key, records[0]?.key, 'keyed like the crash');

  await until('the newer analysis in the crash document', async () =>
    (await crashDoc()).analysis?.analyzed_at === second?.analyzed_at ? true : undefined,
  );
  const doc = await crashDoc();
  t.same(doc.analysis?.modules, event.analysis?.modules, "the collector's fields of analysis are kept");

  const audit = h.logs.lines.filter((l) => l.audit === true && l.action === 'crash.reanalyze');
  t.match(audit, [{ user: 'alice', crash_id: id, namespace, status: 202 }], 'one audit record, alice');
  t.notMatch(h.logs.text, alice, 'no token in the log');
});

t.test('bad ids: a 400 naming the parameter', async (t) => {
  const res = await h.app.inject({
    method: 'POST',
    url: '/v1/crashes/not-a-crash/analysis',
    headers: bearer(alice),
  });
  t.equal(res.statusCode, 400);
  t.match(res.json(), { message: /^params\/id / });
  const none = await h.app.inject({
    method: 'POST',
    url: '/v1/crashes/01900000-0000-7000-8000-000000000000/analysis',
    headers: bearer(alice),
  });
  t.equal(none.statusCode, 404, 'a crash that does not exist');
});

t.test('Kafka down: a 503 naming Kafka, and the API stays ready', async (t) => {
  const down = await harness({
    crashIndex: names.alias,
    storageRoot,
    kafkaBrokers: [`127.0.0.1:${await freePort()}`],
    kafkaTimeoutMs: 1000,
    requestTopic: names.requests,
  });
  t.teardown(() => down.close());
  const token = addUser(down.kube, 'alice', [namespace]);
  const res = await down.app.inject({
    method: 'POST',
    url: `/v1/crashes/${id}/analysis`,
    headers: bearer(token),
  });
  t.equal(res.statusCode, 503);
  t.same(res.json(), {
    statusCode: 503,
    code: 'PM_ERR_BACKEND_UNAVAILABLE',
    error: 'Service Unavailable',
    message: 'Kafka is unavailable; retry later',
  });
  t.equal((await down.app.inject('/readyz')).statusCode, 200, 'ready all the same');
  t.equal(
    (await down.app.inject({ url: `/v1/crashes/${id}`, headers: bearer(token) })).statusCode,
    200,
    'and reads are served',
  );
  t.match(
    down.logs.lines.filter((l) => l.audit === true),
    [{ action: 'crash.reanalyze', user: 'alice', status: 503 }],
    'the refused request is audited too',
  );
});
