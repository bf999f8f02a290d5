import t from 'tap';
import { analysisRecordOf, crashIndexFor } from '@podmortem/contract';
import { planAnalysis } from '../indexer/src/crash-merge.ts';
import { addUser, bearer, harness, makeCrash } from './support/query-api.ts';

// An analysis that reaches the indexer before its crash is kept as a placeholder document (the
// crash id, its time and namespace, the analysis) until the crash record completes it. Until
// then it is no crash: search, get, stats and the namespaces a caller may list never show it.

const h = await harness();
t.teardown(() => h.close());
const admin = addUser(h.kube, 'admin', ['']);

const crash = makeCrash({ namespace: 'team-a', pod: 'api-0', at: '2026-10-01T10:00:00Z' }).event;
const ahead = makeCrash({ namespace: 'team-early', pod: 'web-0', at: '2026-10-02T10:00:00Z' }).event;
await h.index.add([crash]);
const record = analysisRecordOf(ahead, {
  status: 'ok',
  analyzed_at: '2026-10-02T10:00:05.000Z',
  analyzer: 'test',
  signature: 'f'.repeat(32),
  title: 'SIGSEGV in parse_header (segv.c:4)',
});
const index = crashIndexFor(ahead['@timestamp'], h.index.alias);
const plan = planAnalysis(record, index, undefined);
if (plan.kind !== 'write' || plan.operation.action !== 'create') throw new Error('expected a placeholder');
await h.index.es.create({
  index,
  id: ahead.crash.id,
  document: plan.operation.body as Record<string, unknown>,
  refresh: 'wait_for',
});

t.test('the placeholder is in the index, as the indexer writes it', async (t) => {
  const found = await h.index.es.count({
    index: `${h.index.alias}-*`,
    query: { ids: { values: [ahead.crash.id] } },
  });
  t.equal(found.count, 1);
});

t.test('search and get show only crashes', async (t) => {
  const list = await h.app.inject({ url: '/v1/crashes', headers: bearer(admin) });
  t.equal(list.statusCode, 200);
  const ids = list.json<{ items: { crash: { id: string } }[] }>().items.map((c) => c.crash.id);
  t.strictSame(ids, [crash.crash.id]);
  const get = await h.app.inject({ url: `/v1/crashes/${ahead.crash.id}`, headers: bearer(admin) });
  t.equal(get.statusCode, 404);
});

t.test('stats count only crashes, and a namespace with only a placeholder is not listed', async (t) => {
  const res = await h.app.inject({
    url: '/v1/stats?from=2026-09-01T00:00:00Z&to=2026-10-31T00:00:00Z&interval=1d',
    headers: bearer(admin),
  });
  t.equal(res.statusCode, 200);
  const body = res.json<{ total: number; by_namespace: { key: string; count: number }[] }>();
  t.equal(body.total, 1);
  t.strictSame(body.by_namespace, [{ key: 'team-a', count: 1 }]);
});
