import t from 'tap';
import type { CrashEvent } from '@podmortem/contract';
import { freePort } from './support/ports.ts';
import { addUser, bearer, harness, makeCrash, type SeededCrash } from './support/query-api.ts';

// Search and stats against the real Elasticsearch: every filter, the newest-first order, cursor
// paging, field selection, and a clear 400 naming the parameter for every kind of bad input.

const h = await harness({ maxPageSize: 100 });
t.teardown(() => h.close());
const admin = addUser(h.kube, 'admin', ['']);

const uidApi = 'aaaaaaaa-0000-4000-8000-000000000001';
const uidWorker = 'aaaaaaaa-0000-4000-8000-000000000002';
const uidWeb = 'bbbbbbbb-0000-4000-8000-000000000001';
const SEGV = { number: 11, name: 'SIGSEGV' };
const ABRT = { number: 6, name: 'SIGABRT' };
const BUS = { number: 7, name: 'SIGBUS' };

// Spread over two months, so the alias covers two monthly indices.
const crashes: SeededCrash[] = [
  makeCrash({ namespace: 'team-a', pod: 'api-0', uid: uidApi, at: '2026-09-28T10:00:00Z', signal: SEGV }),
  makeCrash({ namespace: 'team-a', pod: 'api-0', uid: uidApi, at: '2026-10-01T10:00:00Z', signal: SEGV }),
  makeCrash({
    namespace: 'team-a',
    pod: 'api-0',
    uid: uidApi,
    container: 'sidecar',
    at: '2026-10-02T10:00:00Z',
    signal: ABRT,
    executable: '/usr/bin/envoy',
    image: 'registry.example/envoy:1.30',
    signature: 'envoy!abort_handler',
    title: 'SIGABRT in abort_handler after assertion failure',
  }),
  makeCrash({
    namespace: 'team-a',
    pod: 'worker-1',
    uid: uidWorker,
    container: 'worker',
    node: 'node-b',
    at: '2026-10-03T10:00:00Z',
    signal: BUS,
    executable: '/opt/java/bin/java',
    image: 'registry.example/java:17',
    signature: 'java!jvm_crash',
    status: 'skipped',
  }),
  makeCrash({ namespace: 'team-b', pod: 'web-0', uid: uidWeb, at: '2026-10-04T10:00:00Z', signal: SEGV }),
  makeCrash({ namespace: 'team-b', pod: 'web-0', uid: uidWeb, at: '2026-10-05T10:00:00Z', signal: ABRT }),
  makeCrash({ host: true, node: 'node-c', at: '2026-10-06T10:00:00Z', signal: SEGV }),
];
// Two crashes at the same instant: the id breaks the tie.
const same = '2026-10-07T10:00:00Z';
crashes.push(makeCrash({ namespace: 'team-b', pod: 'web-0', uid: uidWeb, at: same, signal: SEGV }));
crashes.push(makeCrash({ namespace: 'team-b', pod: 'web-0', uid: uidWeb, at: same, signal: SEGV }));
await h.index.add(crashes.map((c) => c.event));

const newestFirst = [...crashes]
  .map((c) => c.event)
  .sort((a, b) =>
    a['@timestamp'] === b['@timestamp']
      ? a.crash.id < b.crash.id
        ? 1
        : -1
      : a['@timestamp'] < b['@timestamp']
        ? 1
        : -1,
  );
const idsOf = (events: Pick<CrashEvent, 'crash'>[]) => events.map((e) => e.crash.id);

interface Page {
  items: CrashEvent[];
  next_cursor: string | null;
}

async function search(query: string, token = admin) {
  const res = await h.app.inject({ method: 'GET', url: `/v1/crashes?${query}`, headers: bearer(token) });
  return { status: res.statusCode, body: res.json<Page & { message: string; code: string }>() };
}

async function ids(query: string): Promise<string[]> {
  const r = await search(query);
  if (r.status !== 200) throw new Error(`${query}: ${r.status} ${r.body.message}`);
  return idsOf(r.body.items);
}

const where = (pred: (e: CrashEvent) => boolean) => idsOf(newestFirst.filter(pred));

t.test('no filter: every crash, newest first, ties broken by id', async (t) => {
  t.same(await ids('limit=100'), idsOf(newestFirst));
});

t.test('each filter returns exactly the matching crashes', async (t) => {
  const cases: [string, (e: CrashEvent) => boolean][] = [
    ['namespace=team-a', (e) => e.kubernetes?.namespace === 'team-a'],
    ['pod=api-0', (e) => e.kubernetes?.pod.name === 'api-0'],
    [`pod_uid=${uidWorker}`, (e) => e.kubernetes?.pod.uid === uidWorker],
    ['container=sidecar', (e) => e.kubernetes?.container.name === 'sidecar'],
    ['node=node-b', (e) => e.kubernetes?.node.name === 'node-b'],
    ['image=registry.example/java:17', (e) => e.container?.image?.name === 'registry.example/java:17'],
    ['image=registry.example/envoy', (e) => e.container?.image?.name === 'registry.example/envoy:1.30'],
    ['signal=SIGSEGV', (e) => e.signal.name === 'SIGSEGV'],
    ['signal=ABRT', (e) => e.signal.name === 'SIGABRT'],
    ['signal=7', (e) => e.signal.number === 7],
    ['executable=/opt/java/bin/java', (e) => e.process.executable === '/opt/java/bin/java'],
    ['executable=envoy', (e) => e.process.executable === '/usr/bin/envoy'],
    ['signature=java!jvm_crash', (e) => e.analysis?.signature === 'java!jvm_crash'],
    ['status=skipped', (e) => e.dump.status === 'skipped'],
    [
      'from=2026-10-02T00:00:00Z&to=2026-10-04T23:59:59Z',
      (e) => e['@timestamp'] >= '2026-10-02' && e['@timestamp'] <= '2026-10-04T23:59:59Z',
    ],
    ['from=2026-10-05T10:00:00.000Z', (e) => e['@timestamp'] >= '2026-10-05T10:00:00.000Z'],
    ['q=assertion', (e) => e.analysis?.title?.includes('assertion') === true],
    ['q=envoy', (e) => e.process.executable === '/usr/bin/envoy'],
    [
      'namespace=team-a&signal=SIGSEGV',
      (e) => e.kubernetes?.namespace === 'team-a' && e.signal.number === 11,
    ],
    ['namespace=team-c', () => false],
  ];
  for (const [query, pred] of cases) {
    const expected = where(pred);
    t.same(await ids(`${query}&limit=100`), expected, `${query} → ${expected.length} crashes`);
  }
});

t.test('cursor paging walks every crash once, in order, and ends with a null cursor', async (t) => {
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const r = await search(`limit=2${cursor ? `&cursor=${cursor}` : ''}`);
    t.equal(r.status, 200);
    t.ok(r.body.items.length <= 2);
    seen.push(...idsOf(r.body.items));
    cursor = r.body.next_cursor;
    pages++;
  } while (cursor !== null && pages < 20);
  t.same(seen, idsOf(newestFirst));
  t.equal(pages, Math.ceil(newestFirst.length / 2));

  const filtered = await search('namespace=team-b&limit=2');
  const next = filtered.body.next_cursor;
  t.type(next, 'string');
  const rest = await search(`namespace=team-b&limit=100&cursor=${next ?? ''}`);
  t.same(
    [...idsOf(filtered.body.items), ...idsOf(rest.body.items)],
    where((e) => e.kubernetes?.namespace === 'team-b'),
    'a cursor continues a filtered search',
  );
  t.equal(rest.body.next_cursor, null);
});

t.test('fields selects what each item carries (id and time always)', async (t) => {
  const r = await search('fields=kubernetes.pod.name,signal.name&limit=100');
  t.equal(r.status, 200);
  const first = r.body.items.find((i) => i.kubernetes !== undefined);
  t.same(Object.keys(first ?? {}).sort(), ['@timestamp', 'crash', 'kubernetes', 'signal']);
  t.same(Object.keys(first?.kubernetes ?? {}), ['pod']);
  t.same(Object.keys(first?.signal ?? {}), ['name']);
});

t.test('bad parameters are a 400 naming the parameter', async (t) => {
  const forged = Buffer.from(JSON.stringify({ v: 1, t: 'x', id: 'y' })).toString('base64url');
  const extra = Buffer.from(JSON.stringify({ v: 1, t: 1, id: newestFirst[0]?.crash.id, x: 1 })).toString(
    'base64url',
  );
  const cases: [string, string][] = [
    ['colour=red', 'querystring/colour'],
    ['from=yesterday', 'querystring/from'],
    ['to=2026-13-45T00:00:00Z', 'querystring/to'],
    ['from=2026-10-05T00:00:00Z&to=2026-10-01T00:00:00Z', 'querystring/to'],
    ['limit=0', 'querystring/limit'],
    ['limit=101', 'querystring/limit'],
    ['limit=ten', 'querystring/limit'],
    ['cursor=not!base64', 'querystring/cursor'],
    ['cursor=bm90IGpzb24', 'querystring/cursor'],
    [`cursor=${forged}`, 'querystring/cursor'],
    [`cursor=${extra}`, 'querystring/cursor'],
    ['fields=kubernetes.nope', 'querystring/fields'],
    ['fields=a;b', 'querystring/fields'],
    ['signal=kill%20-9', 'querystring/signal'],
    ['namespace=Team_A', 'querystring/namespace'],
    ['namespace=a&namespace=b', 'querystring/namespace'],
    ['pod_uid=not-a-uid', 'querystring/pod_uid'],
    ['pod=..', 'querystring/pod'],
    [`q=${'x'.repeat(300)}`, 'querystring/q'],
  ];
  for (const [query, param] of cases) {
    const r = await search(query);
    t.equal(r.status, 400, `${query} → 400`);
    // The parameter leads the message (`querystring/pod` must not pass for `querystring/pod_uid`).
    t.equal(r.body.message.split(' ')[0], param, `${query}: the message names ${param} (${r.body.message})`);
    t.match(r.body.code, /^PM_ERR_/);
  }
});

t.test('a value outside an enumeration: the 400 lists the allowed values', async (t) => {
  const r = await search('status=lost');
  t.equal(r.status, 400);
  t.equal(
    r.body.message,
    'querystring/status must be equal to one of the allowed values: stored, pending, skipped, truncated, failed, expired, deleted',
  );
});

t.test('stats count by namespace, signal, signature, status and over time', async (t) => {
  const res = await h.app.inject({
    url: '/v1/stats?from=2026-09-01T00:00:00Z&to=2026-10-31T00:00:00Z&interval=1d',
    headers: bearer(admin),
  });
  t.equal(res.statusCode, 200);
  const body = res.json<{
    total: number;
    by_namespace: { key: string; count: number }[];
    by_signal: { key: string; count: number }[];
    by_status: { key: string; count: number }[];
    over_time: { time: string; count: number }[];
  }>();
  t.equal(body.total, crashes.length);
  t.same(body.by_namespace, [
    { key: 'team-a', count: 4 },
    { key: 'team-b', count: 4 },
  ]);
  t.same(Object.fromEntries(body.by_signal.map((b) => [b.key, b.count])), {
    SIGSEGV: 6,
    SIGABRT: 2,
    SIGBUS: 1,
  });
  t.same(Object.fromEntries(body.by_status.map((b) => [b.key, b.count])), { stored: 8, skipped: 1 });
  t.equal(
    body.over_time.reduce((n, b) => n + b.count, 0),
    crashes.length,
  );
  t.equal(body.over_time.find((b) => b.time === '2026-10-07T00:00:00.000Z')?.count, 2);

  const bad = await h.app.inject({ url: '/v1/stats?interval=1s', headers: bearer(admin) });
  t.equal(bad.statusCode, 400);
  t.match(bad.json<{ message: string }>().message, 'querystring/interval');
  const tooMany = await h.app.inject({
    url: '/v1/stats?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&interval=1m',
    headers: bearer(admin),
  });
  t.equal(tooMany.statusCode, 400);
  t.match(tooMany.json<{ message: string }>().message, 'querystring/interval');
});

t.test('Elasticsearch unreachable: 503 naming it, never a 500', async (t) => {
  const down = await harness({ elasticsearchUrl: `http://127.0.0.1:${await freePort()}` });
  t.teardown(() => down.close());
  const token = addUser(down.kube, 'admin', ['']);
  for (const url of ['/v1/crashes', '/v1/crashes/01900000-0000-7000-8000-000000000000', '/v1/stats']) {
    const res = await down.app.inject({ url, headers: bearer(token) });
    t.equal(res.statusCode, 503, url);
    t.match(res.json(), { code: 'PM_ERR_BACKEND_UNAVAILABLE', message: /Elasticsearch is unavailable/ });
  }
  const ready = await down.app.inject('/readyz');
  t.equal(ready.statusCode, 503);
  t.match(ready.json(), { ready: false, elasticsearch: false, storage: true });
});
