import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import t from 'tap';
import { moduleKey } from '@podmortem/contract';
import { addUser, bearer, harness, makeCrash, type SeededCrash } from './support/query-api.ts';

// The stored modules on the debuginfod protocol paths (/buildid/<id>/executable and /debuginfo,
// at the root) against the real Elasticsearch and a real storage root: the exact bytes with
// their length to a caller who may read a crash that mapped the module, and for everyone and
// everything else the same 404 (another namespace, an unknown build id, a file not stored);
// 400 for a build id that is not lower-case hex, 401 without a token; audit records.

const h = await harness();
t.teardown(() => h.close());
const alice = addUser(h.kube, 'alice', ['team-a']);
const bob = addUser(h.kube, 'bob', ['team-b']);
const admin = addUser(h.kube, 'admin', ['']);

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
// Build ids of this run alone: the executable of the team-a crash, a library it mapped, a
// module only a host process mapped, and one in the store that no crash references.
const exeId = hex(20);
const libId = hex(20);
const hostId = hex(20);
const strayId = hex(20);

function referencing(crash: SeededCrash, buildId: string, modules: string[]): SeededCrash {
  const analysis = crash.event.analysis ?? {};
  analysis.build_id = buildId;
  analysis.modules = modules.map((id, i) => ({ path: `/lib/m${i}.so`, build_id: id, captured: true }));
  crash.event.analysis = analysis;
  return crash;
}

const now = Date.now();
const teamA = referencing(makeCrash({ namespace: 'team-a', at: now - 60_000 }), exeId, [exeId, libId]);
const host = referencing(makeCrash({ host: true, at: now - 120_000 }), hostId, [hostId]);
await h.index.add([teamA.event, host.event]);

function store(buildId: string, kind: 'executable' | 'debuginfo', bytes: number): Buffer {
  const data = randomBytes(bytes);
  const path = h.storage.path(moduleKey(buildId, kind));
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
  return data;
}

const exe = store(exeId, 'executable', 3 << 20);
const debuginfo = store(exeId, 'debuginfo', 200_000);
const lib = store(libId, 'executable', 12_345);
const hostExe = store(hostId, 'executable', 4096);
store(strayId, 'executable', 1000);

/** `null`: no Authorization header. */
async function get(url: string, token: string | null = alice) {
  const res = await h.app.inject({ method: 'GET', url, headers: token === null ? {} : bearer(token) });
  return {
    status: res.statusCode,
    headers: res.headers,
    body: res.rawPayload,
    json: () => res.json<{ statusCode: number; code: string; error: string; message: string }>(),
  };
}

const url = (buildId: string, kind = 'executable') => `/buildid/${buildId}/${kind}`;

t.test('the owner gets the exact bytes, with their length', async (t) => {
  for (const [path, data] of [
    [url(exeId), exe],
    [url(exeId, 'debuginfo'), debuginfo],
    [url(libId), lib],
  ] as const) {
    const r = await get(path);
    t.equal(r.status, 200, path);
    t.equal(r.headers['content-length'], String(data.length), `${path}: Content-Length`);
    t.equal(r.headers['content-type'], 'application/octet-stream');
    t.ok(r.body.equals(data), `${path}: byte for byte`);
  }
});

t.test('over real HTTP, as a debuginfod client reads it', async (t) => {
  const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
  const res = await fetch(`${address}${url(exeId)}`, { headers: bearer(alice) });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-length'), String(exe.length));
  t.ok(Buffer.from(await res.arrayBuffer()).equals(exe), 'the whole executable, streamed');
});

t.test('everyone and everything else: the same 404', async (t) => {
  const notFound = (buildId: string, kind = 'executable') => ({
    statusCode: 404,
    code: 'PM_ERR_MODULE_NOT_FOUND',
    error: 'Not Found',
    message: `no ${kind} of build id ${buildId} found`,
  });
  const cases: [string, string, string, string][] = [
    ['another namespace', exeId, bob, 'executable'],
    ['another namespace, debuginfo', exeId, bob, 'debuginfo'],
    ['another namespace, a library', libId, bob, 'executable'],
    ['an unknown build id', hex(20), alice, 'executable'],
    ['stored, but no crash maps it', strayId, alice, 'executable'],
    ['stored, but no crash maps it, cluster-wide', strayId, admin, 'executable'],
    ['no debuginfo stored', libId, alice, 'debuginfo'],
    ['a host process, without cluster-wide rights', hostId, alice, 'executable'],
  ];
  for (const [what, buildId, token, kind] of cases) {
    const r = await get(url(buildId, kind), token);
    t.equal(r.status, 404, what);
    t.same(r.json(), notFound(buildId, kind), `${what}: the usual error body`);
  }
});

t.test('cluster-wide rights cover every crash, a host process’s too', async (t) => {
  const r = await get(url(hostId), admin);
  t.equal(r.status, 200);
  t.ok(r.body.equals(hostExe));
  t.equal((await get(url(exeId), admin)).status, 200);
});

t.test('a build id that is not lower-case hex: 400', async (t) => {
  for (const bad of ['ABCDEF12', 'xyz123', 'a', '0'.repeat(130), 'ab12%2F..%2Fetc', 'ab%00cd']) {
    const r = await get(url(bad));
    t.equal(r.status, 400, bad);
    t.match(r.json(), { statusCode: 400, code: 'PM_ERR_VALIDATION', message: /params\/buildid/ }, bad);
  }
});

t.test('no token, or not a valid one: 401', async (t) => {
  for (const token of [null, 'nonsense']) {
    const r = await get(url(exeId), token);
    t.equal(r.status, 401);
    t.match(r.json(), { code: 'PM_ERR_UNAUTHENTICATED' });
    t.equal(r.headers['www-authenticate'], 'Bearer realm="podmortem"');
  }
});

t.test('downloads and refusals leave audit records', async (t) => {
  const before = h.logs.lines.length;
  await get(url(exeId, 'debuginfo'));
  await get(url(exeId), bob);
  const audits = h.logs.lines.slice(before).filter((l) => l.audit === true);
  t.equal(audits.length, 2);
  t.match(audits[0], {
    action: 'download.debuginfo',
    user: 'alice',
    build_id: exeId,
    namespace: 'team-a',
    status: 200,
    bytes: debuginfo.length,
    complete: true,
  });
  t.ok(!Number.isNaN(Date.parse(String(audits[0]?.at))), 'with the time');
  t.match(audits[1], { action: 'download.executable', user: 'bob', build_id: exeId, status: 404, bytes: 0 });
  t.notOk(h.logs.text.includes(alice), 'no token in the logs');
});
