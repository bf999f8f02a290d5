import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { dumpRelPath, eventRelPath, moduleKey, type CrashEvent } from '@podmortem/contract';
import { AttackCounter, secretsOf } from './support/attack-count.ts';
import { startAttackTarget, UID_B } from './support/attack-target.ts';
import { addUser, bearer, makeCrash, sha256, type CrashSpec, type SeededCrash } from './support/query-api.ts';

// Attacks through the storage root, against the real API over HTTP: a FIFO where a dump should
// be, symlinks inside a namespace, across namespaces and out of the root (on the dump, on the
// event JSON, on a pod's folder, on a namespace's folder, on a stored module), and path traversal
// through every field of an indexed event that names a path (namespace, pod uid, container,
// node, crash id, dump.path) and through every path and query parameter of the routes. Whatever
// the root holds, no answer may carry another namespace's (or the world outside the root's)
// bytes, no request may hang, none may get a 5xx.

const target = await startAttackTarget();
t.teardown(() => target.close());
const { h } = target;
const c = new AttackCounter('storage');
const alice = target.identities.find((i) => i.name === 'alice')?.token ?? '';
const b = target.crashes.b;
// team-b's pod uid is no secret here: the attacks name it in team-a's events on purpose.
const secretsOfB = secretsOf(b, target.buildIds.b).filter((s) => !s.equals(Buffer.from(UID_B)));

// The world outside the root: a file with bytes of its own, and a folder laid out like a pod's.
const outside = mkdtempSync(join(tmpdir(), 'pm-outside-'));
t.teardown(() => rmSync(outside, { recursive: true, force: true }));
const outsideBytes = Buffer.concat([Buffer.from('OUTSIDE-THE-ROOT-'), randomBytes(256)]);
const outsideFile = join(outside, 'secret');
writeFileSync(outsideFile, outsideBytes);
const forbidden = [...secretsOfB, outsideBytes.subarray(0, 64), Buffer.from(outsideFile)];

const api = (path: string) => `${target.url}${path}`;

/** A crash of team-a, its event indexed; its files written unless `files` is false. */
async function crashOfA(spec: Partial<CrashSpec>, files = true): Promise<SeededCrash> {
  const crash = makeCrash({ namespace: 'team-a', pod: 'api-0', at: Date.now() - 600_000, ...spec });
  if (files) h.storage.write(crash);
  await h.index.add([crash.event]);
  return crash;
}

function link(target: string, at: string): void {
  mkdirSync(dirname(at), { recursive: true });
  rmSync(at, { recursive: true, force: true });
  symlinkSync(target, at);
}

/** Every route that reads the crash's files, as alice; none may answer with a forbidden byte. */
async function readEverything(crash: SeededCrash, extra: Buffer[] = []): Promise<number[]> {
  const k = crash.event.kubernetes;
  const id = crash.event.crash.id;
  const urls = [
    `/v1/crashes/${id}`,
    `/v1/crashes/${id}/dump`,
    `/v1/crashes/${id}/dump?format=raw`,
    ...(k
      ? [
          `/v1/namespaces/${encodeURIComponent(k.namespace)}/pods/${encodeURIComponent(k.pod.name)}/dumps.tar.gz`,
          `/v1/namespaces/${encodeURIComponent(k.namespace)}/pods/${encodeURIComponent(k.pod.name)}/dumps.tar.gz?uid=${encodeURIComponent(k.pod.uid)}`,
        ]
      : []),
  ];
  // What the event itself says (a poisoned dump.path naming team-b's file) is no leak when shown.
  const own = Buffer.from(JSON.stringify(crash.event));
  const secrets = [...forbidden, ...extra].filter((s) => !own.includes(s));
  const statuses: number[] = [];
  for (const url of urls) {
    const r = await c.send(api(url), { headers: bearer(alice), secrets });
    statuses.push(r?.status ?? 0);
  }
  return statuses;
}

t.test('a FIFO where a dump should be: refused at once, and the API keeps serving', async (t) => {
  const fifo = await crashOfA({ pod: 'fifo-0' }, false);
  const eventPath = h.storage.path(eventRelPath(fifo.event));
  mkdirSync(dirname(eventPath), { recursive: true });
  writeFileSync(eventPath, JSON.stringify(fifo.event));
  execFileSync('mkfifo', [h.storage.path(dumpRelPath(fifo.event))]);
  const id = fifo.event.crash.id;
  // More parallel reads than Node's file thread pool has threads: a blocking open would hold
  // them all, and everything after would hang.
  const answers = await Promise.all([
    ...Array.from({ length: 12 }, () => c.send(api(`/v1/crashes/${id}/dump`), { headers: bearer(alice) })),
    ...Array.from({ length: 4 }, () =>
      c.send(api(`/v1/crashes/${id}/dump?format=raw`), { headers: bearer(alice) }),
    ),
    ...Array.from({ length: 4 }, () =>
      c.send(api('/v1/namespaces/team-a/pods/fifo-0/dumps.tar.gz'), { headers: bearer(alice) }),
    ),
  ]);
  t.ok(
    answers.slice(0, 16).every((a) => a !== undefined && a.status === 404),
    `every download of the FIFO answered 404 (${answers.map((a) => a?.status).join(',')})`,
  );
  t.equal((await c.send(api('/readyz')))?.status, 200, '/readyz answers 200 after');
  const a = target.crashes.a;
  const dump = await c.send(api(`/v1/crashes/${a.event.crash.id}/dump`), { headers: bearer(alice) });
  t.equal(dump?.status, 200, 'a real dump is still served');
  t.equal(sha256(dump?.body ?? Buffer.alloc(0)), sha256(a.stored ?? Buffer.alloc(0)), '… byte for byte');
});

t.test('symlinks inside the namespace are refused, not followed', async (t) => {
  const a = target.crashes.a;
  // A dump linked to another pod's dump of the same namespace, and a pod folder linked to another's.
  const linked = await crashOfA({ pod: 'link-0' }, false);
  const eventPath = h.storage.path(eventRelPath(linked.event));
  mkdirSync(dirname(eventPath), { recursive: true });
  writeFileSync(eventPath, JSON.stringify(linked.event));
  link(h.storage.path(dumpRelPath(a.event)), h.storage.path(dumpRelPath(linked.event)));
  // Pod link-0 and api-1 have no dump of their own: a's bytes in any of their answers were
  // read through the link.
  const aBytes = a.stored?.subarray(32, 96) ?? Buffer.alloc(0);
  const statuses = await readEverything(linked, [aBytes]);
  t.notOk(statuses.slice(1, 3).includes(200), `no download through the link (${statuses.join(',')})`);

  const uidLinked = randomUUID();
  link(h.storage.path(`team-a/${a.event.kubernetes?.pod.uid ?? ''}`), h.storage.path(`team-a/${uidLinked}`));
  const viaFolder = await crashOfA({ pod: 'api-1', uid: uidLinked }, false);
  const folderStatuses = await readEverything(viaFolder, [aBytes]);
  t.notOk(folderStatuses.slice(1, 3).includes(200), `no download through a linked pod folder`);
});

t.test("symlinks across namespaces: nothing of team-b reaches team-a's caller", async (t) => {
  const bUid = UID_B;
  // The audit's case: team-a/<uid> → ../team-b/<uid>, with a team-a event for that pod uid.
  link(`../team-b/${bUid}`, h.storage.path(`team-a/${bUid}`));
  const ghost = await crashOfA({ pod: 'web-0', uid: bUid, container: 'web' }, false);
  await readEverything(ghost);
  // A team-a dump linked to team-b's core, and a team-a event JSON linked to team-b's event.
  const dumpLink = await crashOfA({ pod: 'dl-0' }, false);
  const evPath = h.storage.path(eventRelPath(dumpLink.event));
  mkdirSync(dirname(evPath), { recursive: true });
  writeFileSync(evPath, JSON.stringify(dumpLink.event));
  link(h.storage.path(dumpRelPath(b.event)), h.storage.path(dumpRelPath(dumpLink.event)));
  await readEverything(dumpLink);
  const eventLink = await crashOfA({ pod: 'el-0' });
  link(h.storage.path(eventRelPath(b.event)), h.storage.path(eventRelPath(eventLink.event)));
  await readEverything(eventLink);
  // A whole namespace folder that is team-b's: team-c → team-b, alice allowed in team-c.
  link('team-b', h.storage.path('team-c'));
  addUser(h.kube, 'alice', ['team-c']);
  const nsLink = makeCrash({
    namespace: 'team-c',
    pod: 'web-0',
    uid: bUid,
    container: 'web',
    at: Date.now(),
  });
  await h.index.add([nsLink.event]);
  await readEverything(nsLink);
  t.equal(c.leaks, 0, 'no leak so far');
});

t.test('symlinks out of the root: the outside world is never served', async (t) => {
  const fileLink = await crashOfA({ pod: 'out-0' }, false);
  const evPath = h.storage.path(eventRelPath(fileLink.event));
  mkdirSync(dirname(evPath), { recursive: true });
  writeFileSync(evPath, JSON.stringify(fileLink.event));
  link(outsideFile, h.storage.path(dumpRelPath(fileLink.event)));
  await readEverything(fileLink);
  // A pod folder that is a folder outside the root, laid out as a pod's.
  const outUid = randomUUID();
  const outPod = makeCrash({ namespace: 'team-a', pod: 'out-1', uid: outUid, at: Date.now() - 60_000 });
  const outDump = join(outside, 'pod', outPod.event.kubernetes?.container.name ?? 'api');
  mkdirSync(outDump, { recursive: true });
  writeFileSync(join(outDump, `${outPod.event.crash.id}.core.zst`), outsideBytes);
  writeFileSync(join(outDump, `${outPod.event.crash.id}.json`), JSON.stringify(outPod.event));
  link(join(outside, 'pod'), h.storage.path(`team-a/${outUid}`));
  await h.index.add([outPod.event]);
  await readEverything(outPod);
  // A stored module that is a link out of the root, behind a crash alice may read.
  const buildId = randomBytes(20).toString('hex');
  const modCrash = makeCrash({ namespace: 'team-a', pod: 'mod-0', at: Date.now() - 30_000 });
  const analysis = modCrash.event.analysis ?? {};
  analysis.build_id = buildId;
  analysis.modules = [{ path: '/bin/x', build_id: buildId, captured: true }];
  modCrash.event.analysis = analysis;
  h.storage.write(modCrash);
  await h.index.add([modCrash.event]);
  link(outsideFile, h.storage.path(moduleKey(buildId)));
  link(h.storage.path(moduleKey(target.buildIds.b)), h.storage.path(moduleKey(buildId, 'debuginfo')));
  for (const kind of ['executable', 'debuginfo']) {
    const r = await c.send(api(`/buildid/${buildId}/${kind}`), {
      headers: bearer(alice),
      secrets: forbidden,
    });
    t.equal(r?.status, 404, `/buildid/…/${kind} through a link → 404`);
  }
});

/** An event of a namespace alice is allowed in, with one field set to a path that climbs out. */
function poisoned(mutate: (e: CrashEvent) => void, keepDumpPath = false): SeededCrash {
  const crash = makeCrash({ namespace: 'team-a', pod: 'evil-0', at: Date.now() - 120_000 });
  // Without dump.path the route builds the path from the fields themselves.
  if (!keepDumpPath) delete crash.event.dump.path;
  mutate(crash.event);
  return crash;
}

t.test('path traversal through every event field that names a path', async (t) => {
  const kb = b.event.kubernetes;
  const bDump = dumpRelPath(b.event);
  const climbs = [
    '..',
    '../team-b',
    `../../team-b/${UID_B}`,
    `../../../team-b/${UID_B}/${kb?.container.name ?? 'web'}`,
    '%2e%2e',
    'team-b\u0000',
    `${h.storage.root}/team-b`,
    outside,
  ];
  const cases: [string, SeededCrash][] = [];
  for (const climb of climbs) {
    const container = poisoned((e) => {
      if (e.kubernetes) e.kubernetes.container.name = climb;
    });
    const uid = poisoned((e) => {
      if (e.kubernetes) e.kubernetes.pod.uid = climb;
    });
    cases.push([`container ${JSON.stringify(climb)}`, container], [`pod uid ${JSON.stringify(climb)}`, uid]);
    // A namespace alice is granted under that very name: the store must refuse it still.
    addUser(h.kube, 'alice', [climb]);
    const ns = poisoned((e) => {
      if (e.kubernetes) e.kubernetes.namespace = climb;
    });
    cases.push([`namespace ${JSON.stringify(climb)}`, ns]);
  }
  cases.push([
    'dump.path naming team-b’s core',
    poisoned((e) => {
      e.dump.path = bDump;
    }, true),
  ]);
  cases.push([
    'dump.path climbing out',
    poisoned((e) => {
      e.dump.path = `team-a/../team-b/${bDump.split('/').slice(1).join('/')}`;
    }, true),
  ]);
  cases.push([
    'crash.id climbing out',
    poisoned((e) => {
      e.crash.id = `../../team-b/${UID_B}/web/${b.event.crash.id}`;
    }),
  ]);
  // A host process's node name: served to no one but a cluster-wide caller, still refused.
  const root = addUser(h.kube, 'root', ['']);
  const hostCrashes = climbs.map((climb) => {
    const hostCrash = makeCrash({ host: true, at: Date.now() - 90_000 });
    hostCrash.event.collector.node = climb;
    delete hostCrash.event.dump.path;
    return [climb, hostCrash] as const;
  });
  await h.index.add([...hostCrashes.map(([, x]) => x.event), ...cases.map(([, x]) => x.event)]);
  for (const [climb, hostCrash] of hostCrashes) {
    const id = hostCrash.event.crash.id;
    for (const url of [`/v1/crashes/${id}/dump`, `/v1/crashes/${id}/dump?format=raw`]) {
      const r = await c.send(api(url), { headers: bearer(root), secrets: forbidden });
      t.not(r?.status, 200, `host node ${JSON.stringify(climb)}: ${url} not served`);
    }
  }
  for (const [what, crash] of cases) {
    const statuses = await readEverything(crash);
    t.notOk(statuses.slice(1, 3).includes(200), `${what}: no dump served (${statuses.join(',')})`);
  }
});

t.test('path traversal through every path and query parameter of the routes', async (t) => {
  const bad = [
    '..',
    '..%2f..%2fteam-b',
    '%2e%2e%2f%2e%2e',
    `..%2F..%2Fteam-b%2F${UID_B}`,
    'team-b%00',
    '%00',
    encodeURIComponent(`../team-b/${UID_B}`),
    encodeURIComponent(outsideFile),
    'a'.repeat(5000),
  ];
  const id = target.crashes.a.event.crash.id;
  const urls: string[] = [];
  for (const x of bad) {
    urls.push(
      `/v1/crashes/${x}`,
      `/v1/crashes/${x}/dump`,
      `/v1/crashes/${x}/context`,
      `/v1/namespaces/${x}/pods/web-0/dumps.tar.gz`,
      `/v1/namespaces/team-a/pods/${x}/dumps.tar.gz`,
      `/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?uid=${x}`,
      `/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?container=${x}`,
      `/v1/crashes/${id}/dump?format=${x}`,
      `/buildid/${x}/executable`,
      `/buildid/${x}/debuginfo`,
      `/v1/groups/${x}`,
    );
  }
  let refused = 0;
  for (const url of urls) {
    const r = await c.send(api(url), { headers: bearer(alice), secrets: forbidden });
    if (r && r.status >= 400 && r.status < 500) refused++;
  }
  t.equal(refused, urls.length, `every one of ${urls.length} requests refused with a 4xx`);
});

t.test('summary', async (t) => {
  // The root as the attacks left it is still served: alice's own crash, and /readyz.
  t.equal((await c.send(api('/readyz')))?.status, 200);
  c.report(t);
});
