import t from 'tap';
import { addUser, bearer, harness, makeCrash } from './support/query-api.ts';

// Tenancy on every route, with TokenReview and SubjectAccessReview answered by the Kubernetes
// API stand-in: a caller allowed in namespace team-a alone never sees, gets, downloads or tars
// anything of team-b (or of a host process) — a 404 exactly like a missing one — and callers
// without a token, with a bad one, or without the verb are turned away.

const h = await harness();
t.teardown(() => h.close());

const uidA = 'aaaaaaaa-1111-4000-8000-000000000001';
const uidB = 'bbbbbbbb-1111-4000-8000-000000000001';
const a = makeCrash({ namespace: 'team-a', pod: 'api-0', uid: uidA, at: Date.now() - 3_600_000 });
const b = makeCrash({ namespace: 'team-b', pod: 'web-0', uid: uidB, at: Date.now() - 1_800_000 });
const host = makeCrash({ host: true, node: 'node-a', at: Date.now() - 900_000 });
for (const c of [a, b, host]) h.storage.write(c);
await h.index.add([a.event, b.event, host.event]);

const alice = addUser(h.kube, 'alice', ['team-a']);
const bob = addUser(h.kube, 'bob', ['team-a'], { get: true }); // no list
const carol = addUser(h.kube, 'carol', ['team-a'], { list: true, get: true }); // no dump
const admin = addUser(h.kube, 'admin', ['']);
const missingId = '01900000-0000-7000-8000-000000000000';

const routesOf = (id: string, ns: string, pod: string, uid: string) => [
  `/v1/crashes/${id}`,
  `/v1/crashes/${id}/dump`,
  `/v1/crashes/${id}/dump?format=raw`,
  `/v1/crashes/${id}/context`,
  `/v1/namespaces/${ns}/pods/${pod}/dumps.tar.gz`,
  `/v1/namespaces/${ns}/pods/${pod}/dumps.tar.gz?uid=${uid}`,
];

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await h.app.inject({ method: 'GET', url, headers });
  const json = res.headers['content-type']?.toString().startsWith('application/json')
    ? res.json<{ statusCode: number; code: string; error: string; message: string; items?: unknown[] }>()
    : undefined;
  return { status: res.statusCode, json, body: res.rawPayload };
}

t.test('the caller of team-a reads everything of team-a', async (t) => {
  for (const url of routesOf(a.event.crash.id, 'team-a', 'api-0', uidA)) {
    t.equal((await get(url, bearer(alice))).status, 200, url);
  }
});

t.test('… and nothing of team-b nor of a host process: the same 404 as a missing crash', async (t) => {
  const missing = await get(`/v1/crashes/${missingId}`, bearer(alice));
  t.equal(missing.status, 404);
  for (const [crash, ns, pod, uid] of [
    [b, 'team-b', 'web-0', uidB],
    [host, 'team-b', 'web-0', uidB],
  ] as const) {
    const id = crash.event.crash.id;
    for (const url of routesOf(id, ns, pod, uid)) {
      const r = await get(url, bearer(alice));
      t.equal(r.status, 404, `${url} → 404`);
      const expected = url.includes('/namespaces/')
        ? { code: 'PM_ERR_POD_NOT_FOUND', message: `no crashes of pod ${ns}/${pod} found` }
        : { code: missing.json?.code, message: missing.json?.message.replace(missingId, id) };
      t.same(
        { code: r.json?.code, message: r.json?.message, error: r.json?.error },
        { ...expected, error: 'Not Found' },
        `${url}: indistinguishable from a missing one`,
      );
    }
  }
  // A pod of team-b that does not exist answers exactly as the one that does.
  const none = await get('/v1/namespaces/team-b/pods/nobody/dumps.tar.gz', bearer(alice));
  t.equal(none.status, 404);
  t.equal(none.json?.code, 'PM_ERR_POD_NOT_FOUND');
});

t.test('search and stats cover the namespaces the caller may list, and nothing else', async (t) => {
  const all = await get('/v1/crashes', bearer(alice));
  t.equal(all.status, 200);
  t.same(
    (all.json?.items as { crash: { id: string } }[]).map((i) => i.crash.id),
    [a.event.crash.id],
    'only the crash of team-a',
  );
  const byPod = await get('/v1/crashes?pod=web-0', bearer(alice));
  t.same(byPod.json?.items, [], 'a filter naming team-b’s pod finds nothing');
  const byText = await get('/v1/crashes?q=web-0', bearer(alice));
  t.same(byText.json?.items, [], 'free text finds nothing of team-b');
  const other = await get('/v1/crashes?namespace=team-b', bearer(alice));
  t.equal(other.status, 403);
  t.match(other.json?.message, 'team-b');

  const stats = await get('/v1/stats', bearer(alice));
  t.equal(stats.status, 200);
  const body = stats.json as unknown as { total: number; by_namespace: { key: string }[] };
  t.equal(body.total, 1);
  t.same(
    body.by_namespace.map((x) => x.key),
    ['team-a'],
  );
  t.equal((await get('/v1/stats?namespace=team-b', bearer(alice))).status, 403);

  const adminAll = await get('/v1/crashes', bearer(admin));
  t.equal(adminAll.json?.items?.length, 3, 'cluster-wide rights see every namespace and host crashes');
  t.equal((await get(`/v1/crashes/${host.event.crash.id}`, bearer(admin))).status, 200);
});

t.test('no token, a bad token, a token without list or without dump', async (t) => {
  for (const url of ['/v1/crashes', `/v1/crashes/${a.event.crash.id}`, '/v1/stats']) {
    const none = await get(url);
    t.equal(none.status, 401, `${url} without a token → 401`);
    t.equal(none.json?.code, 'PM_ERR_UNAUTHENTICATED');
    t.equal((await get(url, bearer('not-a-known-token'))).status, 401, `${url} with an unknown token → 401`);
    t.equal(
      (await get(url, { authorization: 'Basic YWxpY2U6cHc=' })).status,
      401,
      'not a bearer token → 401',
    );
  }
  const fresh = addUser(h.kube, 'frank', ['team-new']);
  const empty = await get('/v1/crashes', bearer(fresh));
  t.equal(empty.status, 403, 'allowed only where there are no crashes yet: nothing to list…');
  t.match(empty.json?.message, 'querystring/namespace');
  const named = await get('/v1/crashes?namespace=team-new', bearer(fresh));
  t.equal(named.status, 200, '… but naming the namespace searches it');
  t.same(named.json?.items, []);
  t.equal((await get('/v1/crashes?namespace=team-new', bearer(bob))).status, 403);
  const noList = await get('/v1/crashes', bearer(bob));
  t.equal(noList.status, 403, 'a token without list → 403 on search');
  t.equal(noList.json?.code, 'PM_ERR_FORBIDDEN');
  t.equal((await get('/v1/stats', bearer(bob))).status, 403);
  t.equal(
    (await get(`/v1/crashes/${a.event.crash.id}`, bearer(bob))).status,
    200,
    'get alone reads the event',
  );

  const noDump = await get(`/v1/crashes/${a.event.crash.id}/dump`, bearer(carol));
  t.equal(noDump.status, 403, 'without get on coredumps/dump: no download');
  t.match(noDump.json?.message, 'coredumps/dump');
  t.equal((await get('/v1/namespaces/team-a/pods/api-0/dumps.tar.gz', bearer(carol))).status, 403);
});

t.test('tokens are never logged', async (t) => {
  for (const token of [alice, bob, carol, admin]) t.notMatch(h.logs.text, token);
});

t.test('TokenReview and SubjectAccessReview answers are cached briefly', async (t) => {
  const dave = addUser(h.kube, 'dave', ['team-a']);
  const count = (k: string) => h.kube.requests.get(k) ?? 0;
  const reviews = 'POST /apis/authentication.k8s.io/v1/tokenreviews';
  const sars = 'POST /apis/authorization.k8s.io/v1/subjectaccessreviews';
  const before = [count(reviews), count(sars)];
  for (let i = 0; i < 5; i++)
    t.equal((await get(`/v1/crashes/${a.event.crash.id}`, bearer(dave))).status, 200);
  t.equal(count(reviews) - (before[0] ?? 0), 1, 'one TokenReview for five requests');
  t.equal(count(sars) - (before[1] ?? 0), 1, 'one SubjectAccessReview for five requests');
});

t.test('the Kubernetes API unreachable: 503, and the caller is served again once it is back', async (t) => {
  const erin = addUser(h.kube, 'erin', ['team-a']);
  await h.kube.stop();
  const down = await get('/v1/crashes', bearer(erin));
  t.equal(down.status, 503);
  t.equal(down.json?.code, 'PM_ERR_AUTH_UNAVAILABLE');
  await h.kube.restart();
  t.equal((await get('/v1/crashes', bearer(erin))).status, 200);
});
