import { randomBytes } from 'node:crypto';
import t from 'tap';
import { AttackCounter, leaksIn, secretsOf } from './support/attack-count.ts';
import { startAttackTarget, type Identity } from './support/attack-target.ts';
import { bearer, requestTopicFor, type SeededCrash } from './support/query-api.ts';
import { stack } from './support/stack.ts';

// Every route of the OpenAPI document, with every method it serves and each enumerated query
// value, for every crash, pod and build id seeded (team-a's, team-b's, a host process's), asked
// by three identities (the owner of team-a, the owner of team-b, a user granted nothing) and by
// no one, over HTTP against the real API. Each identity is served what its namespace holds and
// nothing else: an answer to one identity never carries another namespace's ids, pod uid, build
// id or dump bytes; no request hangs; none gets a 5xx. Unsupported methods on every path too.

const { topic } = await requestTopicFor(t, 'pm-attack-routes-requests');
const target = await startAttackTarget({ kafkaBrokers: stack.kafkaBrokers, requestTopic: topic });
t.teardown(() => target.close());
const c = new AttackCounter('routes');
const { a, b, host } = target.crashes;

interface Operation {
  parameters?: { name: string; in: string; schema?: { enum?: string[] } }[];
}
const doc = (await (await fetch(`${target.url}/openapi.json`)).json()) as {
  paths: Record<string, Record<string, Operation>>;
};

interface Resource {
  owner: string;
  crash: SeededCrash;
  buildId: string;
  secrets: Buffer[];
}
const resources: Resource[] = [
  { owner: 'team-a', crash: a, buildId: target.buildIds.a, secrets: secretsOf(a, target.buildIds.a) },
  { owner: 'team-b', crash: b, buildId: target.buildIds.b, secrets: secretsOf(b, target.buildIds.b) },
  { owner: '', crash: host, buildId: target.buildIds.host, secrets: secretsOf(host, target.buildIds.host) },
];

/** The concrete URLs of a path pattern for one resource (or one namespace's view of it). */
function urlsOf(pattern: string, op: Operation, r: Resource, namespace: string): string[] {
  const k = r.crash.event.kubernetes;
  const values: Record<string, string> = {
    id: r.crash.event.crash.id,
    buildid: r.buildId,
    namespace: k?.namespace ?? namespace,
    pod: k?.pod.name ?? 'api-0',
    signature: r.crash.event.analysis?.signature ?? 'none',
  };
  const url = pattern.replace(/\{([a-z_]+)\}/g, (_, name: string) => encodeURIComponent(values[name] ?? ''));
  const out = [url];
  for (const p of op.parameters ?? []) {
    if (p.in !== 'query') continue;
    for (const v of p.schema?.enum ?? []) out.push(`${url}?${p.name}=${encodeURIComponent(v)}`);
    if (p.name === 'namespace') out.push(`${url}?namespace=${encodeURIComponent(namespace)}`);
    if (p.name === 'uid' && k) out.push(`${url}?uid=${k.pod.uid}`);
  }
  return out;
}

const callers: (Identity | { name: 'nobody'; token: undefined; namespace: '' })[] = [
  ...target.identities,
  { name: 'nobody', token: undefined, namespace: '' },
];
const methodsOf = (methods: Record<string, Operation>) => Object.keys(methods).map((m) => m.toUpperCase());

t.test('every route, every method it serves, every identity: only its own namespace', async (t) => {
  for (const caller of callers) {
    // What this caller may never see: every resource of another namespace (host crashes too).
    const forbidden = resources.filter((r) => r.owner !== caller.namespace || r.owner === '');
    const secrets = forbidden.flatMap((r) => r.secrets);
    for (const [pattern, methods] of Object.entries(doc.paths)) {
      for (const method of methodsOf(methods)) {
        const op = methods[method.toLowerCase()] ?? {};
        for (const r of resources) {
          for (const url of urlsOf(pattern, op, r, r.owner || 'team-b')) {
            for (const m of method === 'GET' ? ['GET', 'HEAD'] : [method]) {
              const headers: Record<string, string> = caller.token ? bearer(caller.token) : {};
              const res = await c.send(`${target.url}${url}`, { method: m, headers, secrets });
              if (!res) continue;
              const own = r.owner !== '' && r.owner === caller.namespace;
              // Another namespace's (or a host's) crash, pod or module named by id is never served.
              const byName = /\{(id|buildid|pod)\}/.test(pattern);
              if (byName && !own && res.status < 300)
                t.fail(`${m} ${url} as ${caller.name} → ${res.status}: served another namespace's resource`);
            }
          }
        }
      }
    }
  }
  // The owner is served its own resources: the refusals above are not a route that serves no one.
  const alice = target.identities.find((i) => i.name === 'alice');
  for (const url of [
    `/v1/crashes/${a.event.crash.id}`,
    `/v1/crashes/${a.event.crash.id}/dump`,
    `/v1/namespaces/team-a/pods/api-0/dumps.tar.gz`,
    `/buildid/${target.buildIds.a}/executable`,
  ]) {
    const res = await c.send(`${target.url}${url}`, { headers: bearer(alice?.token ?? '') });
    t.equal(res?.status, 200, `alice is served ${url}`);
    // The leak detector finds team-a's own ids and bytes in these: it would find team-b's.
    if (!url.startsWith('/buildid/'))
      t.ok(
        leaksIn(res?.body ?? Buffer.alloc(0), secretsOf(a).slice(url.endsWith('dump') ? 2 : 0)),
        `the detector recognises team-a in ${url}`,
      );
  }
});

t.test('methods no route serves, on every path: 405 naming the methods it does serve', async (t) => {
  const alice = target.identities.find((i) => i.name === 'alice')?.token ?? '';
  let answered = 0;
  for (const [pattern, methods] of Object.entries(doc.paths)) {
    const url = urlsOf(pattern, {}, resources[0] as Resource, 'team-a')[0] ?? pattern;
    const served = methodsOf(methods);
    // fetch will not send TRACE; QUERY is the method with a body that Fastify knows of.
    for (const m of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'QUERY']) {
      if (served.includes(m)) continue;
      const res = await c.send(`${target.url}${url}`, {
        method: m,
        headers: bearer(alice),
        ...(m === 'GET' || m === 'OPTIONS' ? {} : { body: '{}' }),
      });
      if (!res) continue;
      answered++;
      t.equal(res.status, 405, `${m} ${pattern}: 405`);
      // Allow names every documented method, and nothing else but the HEAD Fastify adds beside a
      // GET (the routes that stream a dump or an archive have none).
      const allow = (res.headers.get('allow') ?? '').split(/,\s*/).filter((x) => x !== 'HEAD');
      t.same(allow.sort(), [...served].sort(), `${m} ${pattern}: Allow`);
    }
  }
  t.ok(answered > 0, `${answered} unsupported-method requests answered`);
});

t.test('garbage in every header the routes read', async (t) => {
  const id = a.event.crash.id;
  const alice = target.identities.find((i) => i.name === 'alice')?.token ?? '';
  const garbage = [
    '',
    ' ',
    'Bearer',
    'Bearer  ',
    `Bearer ${'x'.repeat(8000)}`,
    `Bearer ${alice} ${alice}`,
    `bearer ${alice}`,
    `Bearer ${randomBytes(64).toString('base64')}`,
    'Basic ' + Buffer.from('alice:pw').toString('base64'),
    `Bearer ${alice}\t`,
  ];
  for (const authorization of garbage) {
    const res = await c.send(`${target.url}/v1/crashes/${id}`, {
      headers: { authorization },
      secrets: secretsOf(b),
    });
    t.ok(
      res && res.status < 500,
      `authorization ${JSON.stringify(authorization.slice(0, 40))} → ${res?.status}`,
    );
  }
  for (const range of [
    'bytes=',
    'bytes=-',
    'bytes=5-1',
    'bytes=0-0,1-1,2-2',
    `bytes=${'9'.repeat(40)}-`,
    'lines=1-2',
    'bytes=-0',
  ]) {
    const res = await c.send(`${target.url}/v1/crashes/${id}/dump`, {
      headers: { ...bearer(alice), range },
      secrets: secretsOf(b),
    });
    t.ok(res && res.status < 500, `range ${range} → ${res?.status}`);
  }
  for (const inm of ['*', '""', 'W/"x"', '"'.repeat(500)]) {
    const res = await c.send(`${target.url}/v1/crashes/${id}/dump`, {
      headers: { ...bearer(alice), 'if-none-match': inm, 'if-range': inm },
    });
    t.ok(res && res.status < 500, `if-none-match ${inm.slice(0, 20)} → ${res?.status}`);
  }
});

t.test('oversized and malformed bodies and headers', async (t) => {
  const id = a.event.crash.id;
  const alice = target.identities.find((i) => i.name === 'alice')?.token ?? '';
  const post = (body: Buffer | string, contentType?: string) =>
    c.send(`${target.url}/v1/crashes/${id}/analysis`, {
      method: 'POST',
      headers: { ...bearer(alice), ...(contentType ? { 'content-type': contentType } : {}) },
      body,
    });
  t.equal(
    (await post(Buffer.alloc(2 * 1024 * 1024, 0x7b), 'application/json'))?.status,
    413,
    '2 MiB body → 413',
  );
  t.equal((await post('{"a":', 'application/json'))?.status, 400, 'broken JSON → 400');
  t.equal((await post(randomBytes(64), 'application/x-evil'))?.status, 415, 'unknown content type → 415');
  const many: Record<string, string> = { ...bearer(alice) };
  for (let i = 0; i < 400; i++) many[`x-flood-${i}`] = 'y'.repeat(100);
  const flood = await c.send(`${target.url}/v1/crashes/${id}`, { headers: many });
  t.equal(flood?.status, 431, '40 kB of headers → 431');
  const longUrl = await c.send(`${target.url}/v1/crashes?q=${'a'.repeat(70_000)}`, {
    headers: bearer(alice),
  });
  t.ok(longUrl && [400, 414, 431].includes(longUrl.status), `a 70 kB query string → ${longUrl?.status}`);
});

t.test('summary', async (t) => {
  c.report(t);
});
