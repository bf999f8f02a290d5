import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { HTTPMethods } from 'fastify';
import t, { type Test } from 'tap';
import { moduleKey } from '@podmortem/contract';
import { routesOf as registeredRoutes } from '../query-api/src/app.ts';
import {
  addUser,
  bearer,
  harness,
  makeCrash,
  requestTopicFor,
  type SeededCrash,
} from './support/query-api.ts';
import { stack } from './support/stack.ts';

// Tenancy on every route, with TokenReview and SubjectAccessReview answered by the Kubernetes
// API stand-in: a caller allowed in namespace team-a alone never sees, gets, downloads or tars
// anything of team-b (or of a host process) — a 404 exactly like a missing one — and callers
// without a token, with a bad one, or without the verb are turned away.

// A request topic of its own: POST /v1/crashes/{id}/analysis publishes there.
const { topic: requestTopic } = await requestTopicFor(t, 'pm-tenancy-requests');
const h = await harness({ kafkaBrokers: stack.kafkaBrokers, requestTopic });
t.teardown(() => h.close());

const uidA = 'aaaaaaaa-1111-4000-8000-000000000001';
const uidB = 'bbbbbbbb-1111-4000-8000-000000000001';
const a = makeCrash({ namespace: 'team-a', pod: 'api-0', uid: uidA, at: Date.now() - 3_600_000 });
const b = makeCrash({ namespace: 'team-b', pod: 'web-0', uid: uidB, at: Date.now() - 1_800_000 });
const host = makeCrash({ host: true, node: 'node-a', at: Date.now() - 900_000 });
// Each crash mapped a module of its own (build ids of this run alone), its executable and its
// debug file both stored: the debuginfod routes serve them to who may read the crash.
const buildIdOf = new Map<SeededCrash, string>();
for (const c of [a, b, host]) {
  const buildId = randomBytes(20).toString('hex');
  buildIdOf.set(c, buildId);
  const analysis = c.event.analysis ?? {};
  analysis.build_id = buildId;
  analysis.modules = [{ path: '/app/bin/server', build_id: buildId, captured: true }];
  c.event.analysis = analysis;
  for (const kind of ['executable', 'debuginfo'] as const) {
    const path = h.storage.path(moduleKey(buildId, kind));
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, randomBytes(4096));
  }
}
const buildIdA = buildIdOf.get(a) ?? '';
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

/** A 403 whose message says who may not do what, where. */
function forbidden(t: Test, r: Awaited<ReturnType<typeof get>>, message: string, label = message) {
  t.equal(r.status, 403, label);
  t.same({ code: r.json?.code, message: r.json?.message }, { code: 'PM_ERR_FORBIDDEN', message }, label);
}

const moduleRoutesOf = (buildId: string) => [
  `/buildid/${buildId}/executable`,
  `/buildid/${buildId}/debuginfo`,
];

t.test('the caller of team-a reads everything of team-a', async (t) => {
  for (const url of [...routesOf(a.event.crash.id, 'team-a', 'api-0', uidA), ...moduleRoutesOf(buildIdA)]) {
    t.equal((await get(url, bearer(alice))).status, 200, url);
  }
});

t.test('… and nothing of team-b nor of a host process: the same 404 as a missing crash', async (t) => {
  const missing = await get(`/v1/crashes/${missingId}`, bearer(alice));
  t.equal(missing.status, 404);
  t.match(missing.json, { code: 'PM_ERR_CRASH_NOT_FOUND', message: `crash ${missingId} not found` });
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
  // The modules only team-b's crash or the host process mapped: the 404 of an unknown build id.
  const unknownId = randomBytes(20).toString('hex');
  const unknown = await get(`/buildid/${unknownId}/executable`, bearer(alice));
  t.equal(unknown.status, 404);
  t.match(unknown.json, { code: 'PM_ERR_MODULE_NOT_FOUND' });
  for (const crash of [b, host]) {
    const buildId = buildIdOf.get(crash) ?? '';
    for (const url of moduleRoutesOf(buildId)) {
      const r = await get(url, bearer(alice));
      t.equal(r.status, 404, `${url} → 404`);
      t.same(
        { code: r.json?.code, message: r.json?.message, error: r.json?.error },
        {
          code: 'PM_ERR_MODULE_NOT_FOUND',
          message: unknown.json?.message
            .replace(unknownId, buildId)
            .replace('executable', url.split('/')[3] ?? ''),
          error: 'Not Found',
        },
        `${url}: indistinguishable from an unknown build id`,
      );
    }
  }
  // A pod of team-b that does not exist answers exactly as the one that does.
  const none = await get('/v1/namespaces/team-b/pods/nobody/dumps.tar.gz', bearer(alice));
  t.equal(none.status, 404);
  t.same(
    { code: none.json?.code, message: none.json?.message },
    { code: 'PM_ERR_POD_NOT_FOUND', message: 'no crashes of pod team-b/nobody found' },
  );
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
  forbidden(
    t,
    await get('/v1/crashes?namespace=team-b', bearer(alice)),
    'alice may not list coredumps.podmortem.io in namespace team-b',
  );

  const stats = await get('/v1/stats', bearer(alice));
  t.equal(stats.status, 200);
  const body = stats.json as unknown as { total: number; by_namespace: { key: string }[] };
  t.equal(body.total, 1);
  t.same(
    body.by_namespace.map((x) => x.key),
    ['team-a'],
  );
  forbidden(
    t,
    await get('/v1/stats?namespace=team-b', bearer(alice)),
    'alice may not list coredumps.podmortem.io in namespace team-b',
  );

  const adminAll = await get('/v1/crashes', bearer(admin));
  t.equal(adminAll.json?.items?.length, 3, 'cluster-wide rights see every namespace and host crashes');
  t.equal((await get(`/v1/crashes/${host.event.crash.id}`, bearer(admin))).status, 200);
});

// The routes that must turn away a caller without a valid token, derived from the app itself so
// that a new route cannot be left out: every operation of its OpenAPI document with a security
// requirement, and every route it registers (HEAD ones too) besides the documented exemptions.
interface Operation {
  security?: Record<string, string[]>[];
  parameters?: { name: string; in: string; schema?: { enum?: string[] } }[];
}
const doc = h.app.swagger() as {
  security?: Record<string, string[]>[];
  paths: Record<string, Record<string, Operation>>;
};
const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, op]) => ({ path, method: method.toUpperCase(), op })),
);
const secured = operations.filter(({ op }) => (op.security ?? doc.security ?? []).length > 0);
/** Served without a token: health and readiness (documented so), the document and its UI. */
const isExempt = (url: string) =>
  ['/healthz', '/readyz', '/openapi.json'].includes(url) || url === '/docs' || url.startsWith('/docs/');

const pathValues: Record<string, string> = {
  id: a.event.crash.id,
  buildid: buildIdA,
  namespace: 'team-a',
  pod: 'api-0',
  signature: a.event.analysis?.signature ?? '',
};
function concrete(pattern: string): string {
  return pattern.replace(/\{([A-Za-z_]+)\}|:([A-Za-z_]+)/g, (_, braced?: string, colon?: string) => {
    const name = braced ?? colon ?? '';
    const value = pathValues[name];
    if (value === undefined) throw new Error(`no test value for path parameter ${name} of ${pattern}`);
    return value;
  });
}

interface Attempt {
  method: HTTPMethods;
  url: string;
  headers: Record<string, string>;
}
function attempts(): Attempt[] {
  const out: Attempt[] = [];
  for (const { path, method, op } of secured) {
    const url = concrete(path);
    // Each value of an enumerated query parameter (?format=raw …), and with a Range header.
    const variants = [
      url,
      ...(op.parameters ?? [])
        .filter((p) => p.in === 'query')
        .flatMap((p) => (p.schema?.enum ?? []).map((v) => `${url}?${p.name}=${encodeURIComponent(v)}`)),
    ];
    for (const u of variants) {
      out.push({ method, url: u, headers: {} });
      out.push({ method, url: u, headers: { range: 'bytes=0-99' } });
    }
  }
  for (const r of registeredRoutes(h.app)) {
    if (r.method === 'HEAD' && !isExempt(r.url))
      out.push({ method: 'HEAD', url: concrete(r.url), headers: {} });
  }
  return out;
}

t.test(
  'which routes need a token: every /v1 route and the debuginfod paths; only health and docs go without',
  async (t) => {
    t.same(
      operations.filter((o) => !secured.includes(o)).map((o) => `${o.method} ${o.path}`),
      ['GET /healthz', 'GET /readyz'],
      'the operations documented without a security requirement',
    );
    t.same(
      secured.map((o) => `${o.method} ${o.path}`).sort(),
      [
        'DELETE /v1/crashes/{id}/dump',
        'GET /buildid/{buildid}/debuginfo',
        'GET /buildid/{buildid}/executable',
        'GET /v1/crashes',
        'GET /v1/crashes/{id}',
        'GET /v1/crashes/{id}/context',
        'GET /v1/crashes/{id}/dump',
        'GET /v1/groups',
        'GET /v1/groups/{signature}',
        'GET /v1/namespaces/{namespace}/pods/{pod}/dumps.tar.gz',
        'GET /v1/stats',
        'POST /v1/crashes/{id}/analysis',
      ],
      'the operations that need the bearer token',
    );
    const served = registeredRoutes(h.app)
      .filter((r) => r.method !== 'HEAD' && !isExempt(r.url))
      .map((r) => `${r.method} ${r.url.replace(/:([A-Za-z_]+)/g, '{$1}')}`);
    t.same(
      served.sort(),
      secured.map((o) => `${o.method} ${o.path}`).sort(),
      'every route the app serves, besides the exempt ones, is a documented operation needing the token',
    );
    for (const url of ['/healthz', '/readyz', '/openapi.json', '/docs/']) {
      t.equal((await get(url)).status, 200, `${url} is served without a token`);
    }
    t.equal((await get('/metrics')).status, 404, '/metrics, which names namespaces, is not on this port');
  },
);

t.test('no token, a bad token, or not a bearer token: 401 on every authenticated route', async (t) => {
  const logsBefore = h.logs.lines.length;
  const cases: [string, Record<string, string>, string][] = [
    ['without a token', {}, 'headers/authorization: a bearer token is required'],
    ['with an unknown token', bearer('not-a-known-token'), 'the bearer token is not valid'],
    [
      'with Basic credentials',
      { authorization: 'Basic YWxpY2U6cHc=' },
      'headers/authorization must be "Bearer <token>"',
    ],
    [
      'with an empty bearer token',
      { authorization: 'Bearer ' },
      'headers/authorization must be "Bearer <token>"',
    ],
  ];
  const tried = attempts();
  t.ok(tried.length >= 16, `${tried.length} requests`);
  for (const { method, url, headers } of tried) {
    const what = `${method} ${url}${headers.range ? ` (Range ${headers.range})` : ''}`;
    // The same request with a valid token is served: the 401 is the token's doing alone.
    // Alice has no `delete` on coredumps/dump: her DELETE passes authentication and is refused by
    // RBAC (and the crash keeps its dump for the rest of this file).
    const served = await h.app.inject({ method, url, headers: { ...headers, ...bearer(alice) } });
    const accepted = method === 'DELETE' ? [403] : [200, 202, 206];
    t.ok(accepted.includes(served.statusCode), `${what} with alice's token → ${served.statusCode}`);
    for (const [how, auth, message] of cases) {
      const res = await h.app.inject({ method, url, headers: { ...headers, ...auth } });
      t.equal(res.statusCode, 401, `${what} ${how} → 401`);
      t.equal(
        res.headers['www-authenticate'],
        'Bearer realm="podmortem"',
        `${what} ${how}: WWW-Authenticate names the scheme (RFC 9110 §11.6.1)`,
      );
      if (method === 'HEAD') {
        t.equal(res.rawPayload.length, 0, `${what} ${how}: no body`);
        continue;
      }
      t.same(
        res.json(),
        { statusCode: 401, code: 'PM_ERR_UNAUTHENTICATED', error: 'Unauthorized', message },
        `${what} ${how}: the reason, and nothing else`,
      );
    }
  }
  t.same(
    h.logs.lines.slice(logsBefore).filter((l) => l.audit === true && l.user !== 'alice'),
    [],
    'no audit record of a download by anyone but alice: nothing was served without a valid token',
  );
});

t.test('a token without list or without dump', async (t) => {
  const fresh = addUser(h.kube, 'frank', ['team-new']);
  const noneListable = (user: string) =>
    `${user} may not list coredumps.podmortem.io in any namespace that has crashes ` +
    '(querystring/namespace names one to search)';
  forbidden(
    t,
    await get('/v1/crashes', bearer(fresh)),
    noneListable('frank'),
    'allowed only where there are no crashes yet: nothing to list…',
  );
  const named = await get('/v1/crashes?namespace=team-new', bearer(fresh));
  t.equal(named.status, 200, '… but naming the namespace searches it');
  t.same(named.json?.items, []);
  forbidden(
    t,
    await get('/v1/crashes?namespace=team-new', bearer(bob)),
    'bob may not list coredumps.podmortem.io in namespace team-new',
  );
  forbidden(
    t,
    await get('/v1/crashes', bearer(bob)),
    noneListable('bob'),
    'a token without list → 403 on search',
  );
  forbidden(t, await get('/v1/stats', bearer(bob)), noneListable('bob'), '… and on stats');
  t.equal(
    (await get(`/v1/crashes/${a.event.crash.id}`, bearer(bob))).status,
    200,
    'get alone reads the event',
  );

  const noDump = 'carol may not get coredumps/dump in namespace team-a';
  for (const url of [
    `/v1/crashes/${a.event.crash.id}/dump`,
    `/v1/crashes/${a.event.crash.id}/dump?format=raw`,
    '/v1/namespaces/team-a/pods/api-0/dumps.tar.gz',
  ])
    forbidden(t, await get(url, bearer(carol)), noDump, `${url} without get on coredumps/dump: no download`);
});

t.test('tokens are never logged', async (t) => {
  t.ok(h.logs.lines.length > 0, 'the requests were logged');
  for (const token of [alice, bob, carol, admin, 'not-a-known-token', 'YWxpY2U6cHc='])
    t.notMatch(h.logs.text, token);
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
  t.equal(
    down.json?.message,
    'the Kubernetes API did not answer the TokenReview that checks the caller; retry later',
    'which review, not the address it was sent to',
  );
  await h.kube.restart();
  t.equal((await get('/v1/crashes', bearer(erin))).status, 200);
});
