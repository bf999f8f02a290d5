import { randomBytes, randomUUID } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createLogger, type Logger } from '@podmortem/contract/runtime';
import {
  imageDigest,
  parseContainerId,
  PodResolver,
  type PodResolverParams,
} from '../collector/src/agent/pod-resolver.ts';
import { POD_STATE_FILE } from '../collector/src/agent/pod-state-file.ts';
import { FakeKubeApi } from './support/fake-kube-api.ts';
import { until } from './support/poll.ts';

// The agent's cache of this node's pods, through the real @kubernetes/client-node against the
// Kubernetes API stand-in: list + watch of spec.nodeName, every container id a pod ever had,
// tombstones for deleted pods, the API going away and coming back, and what is known of the pods
// kept in a state file across restarts of the agent.

const logger = createLogger('test', { level: 'silent' });
const NODE = 'node-a';
const hex = () => randomBytes(32).toString('hex');

async function setup(t: { teardown(fn: () => unknown): void }, tombstoneMs = 60_000) {
  const api = await FakeKubeApi.start();
  const synced: boolean[] = [];
  const resolvers: PodResolver[] = [];
  /** Another resolver over the same API: an agent started again, when given the same state file. */
  const make = (params: Partial<PodResolverParams> = {}) => {
    const r = new PodResolver({
      kubeConfig: api.kubeConfig(),
      nodeName: NODE,
      tombstoneMs,
      logger,
      refreshMinIntervalMs: 0,
      ...params,
    });
    resolvers.push(r);
    return r;
  };
  const resolver = make({ onSynced: (s) => synced.push(s) });
  t.teardown(async () => {
    for (const r of resolvers) await r.shutdown(Date.now() + 2000);
    await api.close();
  });
  const pod = (
    name: string,
    containers: { name: string; id: string; digest?: string }[],
    nodeName = NODE,
    uid: string = randomUUID(),
  ) =>
    api.addPod({
      namespace: 'shop',
      name,
      uid,
      nodeName,
      labels: { app: name },
      owner: { kind: 'StatefulSet', name: 'cart' },
      containers: containers.map((c) => ({
        name: c.name,
        image: `registry.example/${c.name}:1`,
        containerID: `containerd://${c.id}`,
        ...(c.digest ? { imageID: `registry.example/${c.name}@${c.digest}` } : {}),
      })),
    });
  const identity = (containerId: string, podUid?: string) =>
    podUid
      ? { containerId, runtime: 'containerd' as const, podUid, path: '/' }
      : { containerId, runtime: 'containerd' as const, path: '/' };
  return { api, resolver, synced, pod, identity, make };
}

function stateDir(t: { teardown(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pm-pods-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface StateFileShape {
  aliveAt?: number;
  pods: { uid: string; deletedAt?: number }[];
}

function readState(file: string): StateFileShape | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as StateFileShape;
  } catch {
    return undefined;
  }
}

const uidsIn = (file: string) => (readState(file)?.pods ?? []).map((p) => p.uid).sort();

/** A logger whose warnings a test can read. */
function capturingLogger(): { logger: Logger; warnings: Record<string, unknown>[] } {
  const warnings: Record<string, unknown>[] = [];
  const logger = createLogger(
    'test',
    { level: 'warn' },
    { write: (line: string) => void warnings.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { logger, warnings };
}

t.test('pods of this node are found by container id, with what the event needs', async (t) => {
  const s = await setup(t);
  const id = hex();
  const digest = 'sha256:' + 'ef'.repeat(32);
  const created = s.pod('cart-0', [
    { name: 'cart', id, digest },
    { name: 'proxy', id: hex() },
  ]);
  const elsewhere = hex();
  s.pod('other-node', [{ name: 'x', id: elsewhere }], 'node-b');
  await s.resolver.start();
  await until('synced', () => s.resolver.synced);
  const found = s.resolver.lookup(s.identity(id));
  t.equal(found.kind, 'found');
  if (found.kind !== 'found') return;
  t.match(found.pod, {
    namespace: 'shop',
    name: 'cart-0',
    uid: created.metadata.uid,
    labels: { app: 'cart-0' },
    owner: { kind: 'StatefulSet', name: 'cart' },
  });
  t.same(found.container, {
    name: 'cart',
    runtime: 'containerd',
    image: 'registry.example/cart:1',
    imageDigest: digest,
  });
  t.equal(s.resolver.lookup(s.identity(elsewhere)).kind, 'unknown', "another node's pod is not ours");
});

t.test(
  'the watch brings new pods and restarted containers; earlier container ids still resolve',
  async (t) => {
    const s = await setup(t);
    await s.resolver.start();
    await until('synced', () => s.resolver.synced);
    const first = hex();
    const created = s.pod('web-0', [{ name: 'web', id: first }]);
    await until('the new pod watched', () => s.resolver.lookup(s.identity(first)).kind === 'found');
    const second = hex();
    s.pod('web-0', [{ name: 'web', id: second }], NODE, created.metadata.uid);
    await until('the restart watched', () => s.resolver.lookup(s.identity(second)).kind === 'found');
    const old = s.resolver.lookup(s.identity(first));
    t.equal(old.kind, 'found', 'the crashed container, replaced since, still maps to its pod');
    t.equal(old.kind === 'found' ? old.pod.uid : '', created.metadata.uid);
  },
);

t.test('a deleted pod is remembered for a while (tombstone), then forgotten', async (t) => {
  const s = await setup(t, 300);
  const id = hex();
  s.pod('job-0', [{ name: 'job', id }]);
  await s.resolver.start();
  await until('synced', () => s.resolver.lookup(s.identity(id)).kind === 'found');
  s.api.deletePod('shop', 'job-0');
  await until('the deletion watched', () => {
    const l = s.resolver.lookup(s.identity(id));
    return l.kind === 'found' && l.pod.deletedAt !== undefined;
  });
  t.pass('resolved from the tombstone after deletion');
  await until('the tombstone to expire', () => s.resolver.lookup(s.identity(id)).kind === 'unknown');
  t.pass('forgotten after tombstoneMs');
});

t.test('the cgroup names the pod but its status does not list the container yet: pod-only', async (t) => {
  const s = await setup(t);
  const created = s.pod('init-0', [{ name: 'main', id: hex() }]);
  await s.resolver.start();
  await until('synced', () => s.resolver.synced);
  const l = s.resolver.lookup(s.identity(hex(), created.metadata.uid));
  t.equal(l.kind, 'pod-only');
  t.same(l.kind === 'pod-only' ? l.pod.specContainers : [], [
    { name: 'main', image: 'registry.example/main:1' },
  ]);
});

t.test(
  'the API unreachable: refresh says so; back again, the cache catches up (pods added and deleted meanwhile)',
  async (t) => {
    const s = await setup(t);
    const stays = hex();
    const goes = hex();
    s.pod('stays', [{ name: 'c', id: stays }]);
    s.pod('goes', [{ name: 'c', id: goes }]);
    await s.resolver.start();
    await until('synced', () => s.resolver.synced);
    await s.api.stop();
    await until('the outage noticed', () => !s.resolver.synced);
    await t.rejects(s.resolver.refresh(), { code: 'PM_ERR_KUBE_UNAVAILABLE', retriable: true });
    const added = hex();
    s.pod('added', [{ name: 'c', id: added }]);
    s.api.deletePod('shop', 'goes');
    t.equal(
      s.resolver.lookup(s.identity(stays)).kind,
      'found',
      'what is cached still resolves during the outage',
    );
    await s.api.restart();
    await until('synced again', () => s.resolver.synced, 30_000);
    await s.resolver.refresh();
    t.equal(s.resolver.lookup(s.identity(added)).kind, 'found', 'a pod added during the outage');
    const gone = s.resolver.lookup(s.identity(goes));
    t.ok(
      gone.kind === 'found' && gone.pod.deletedAt !== undefined,
      'a pod deleted during the outage is a tombstone',
    );
    t.same(s.synced.slice(0, 3), [true, false, true]);
  },
);

t.test('container ids and image digests as the kubelet reports them', async (t) => {
  const id = 'ab'.repeat(32);
  t.same(parseContainerId(`containerd://${id}`), [id, 'containerd']);
  t.same(parseContainerId(`cri-o://${id}`), [id, 'cri-o']);
  t.same(parseContainerId(`docker://${id}`), [id, 'docker']);
  t.same(parseContainerId(`rkt://${id}`), [id, 'unknown']);
  t.equal(parseContainerId(''), undefined);
  t.equal(parseContainerId(undefined), undefined);
  t.equal(parseContainerId(`containerd://${id.toUpperCase()}`), undefined);
  const d = 'sha256:' + 'cd'.repeat(32);
  t.equal(imageDigest(`docker.io/library/nginx@${d}`), d);
  t.equal(imageDigest(`docker-pullable://nginx@${d}`), d);
  t.equal(imageDigest(d), d);
  t.equal(imageDigest('nginx:latest'), undefined);
});

t.test(
  'a pod deleted while no agent ran is still resolved by the next one, from the state file',
  async (t) => {
    const s = await setup(t);
    const file = join(stateDir(t), POD_STATE_FILE);
    const id = hex();
    const digest = 'sha256:' + 'ab'.repeat(32);
    const gone = s.pod('batch-0', [{ name: 'batch', id, digest }]);
    const stays = hex();
    s.pod('web-0', [{ name: 'web', id: stays }]);
    const first = s.make({ stateFile: file });
    await first.start();
    await until('the pods listed', () => first.lookup(s.identity(id)).kind === 'found');
    await until('the pods written to the state file', () => uidsIn(file).length === 2);
    // The file as a SIGKILL would leave it: the debounced write only, no write at shutdown.
    const killed = file + '.killed';
    copyFileSync(file, killed);
    await first.shutdown(Date.now() + 2000);
    const stoppedAt = Date.now();
    s.api.deletePod('shop', 'batch-0');

    for (const [how, path] of [
      ['stopped cleanly', file],
      ['killed', killed],
    ] as const) {
      const next = s.make({ stateFile: path });
      await next.start();
      await until(`synced (${how})`, () => next.synced);
      const l = next.lookup(s.identity(id));
      t.equal(l.kind, 'found', `resolved after a restart (${how})`);
      if (l.kind !== 'found') continue;
      t.match(l.pod, {
        namespace: 'shop',
        name: 'batch-0',
        uid: gone.metadata.uid,
        labels: { app: 'batch-0' },
        owner: { kind: 'StatefulSet', name: 'cart' },
      });
      t.same(l.container, {
        name: 'batch',
        runtime: 'containerd',
        image: 'registry.example/batch:1',
        imageDigest: digest,
      });
      t.ok(
        l.pod.deletedAt !== undefined && l.pod.deletedAt <= stoppedAt,
        `a tombstone dated when the pod was last known alive (${how})`,
      );
      const live = next.lookup(s.identity(stays));
      t.ok(live.kind === 'found' && live.pod.deletedAt === undefined, `a pod still running is live (${how})`);
      await next.shutdown(Date.now() + 2000);
    }
  },
);

t.test('a pod from the state file expires tombstoneMs after it was last known alive', async (t) => {
  const s = await setup(t, 2000);
  const file = join(stateDir(t), POD_STATE_FILE);
  const id = hex();
  s.pod('job-1', [{ name: 'job', id }]);
  const first = s.make({ stateFile: file });
  await first.start();
  await until('the pod written to the state file', () => uidsIn(file).length === 1);
  await first.shutdown(Date.now() + 2000);
  s.api.deletePod('shop', 'job-1');

  const next = s.make({ stateFile: file });
  await next.start();
  t.equal(next.lookup(s.identity(id)).kind, 'found', 'resolved from the file at first');
  await until('the pod a tombstone', () => {
    const l = next.lookup(s.identity(id));
    return l.kind !== 'found' || l.pod.deletedAt !== undefined;
  });
  await until('the tombstone to expire', () => next.lookup(s.identity(id)).kind === 'unknown');
  t.pass('forgotten after tombstoneMs');
  await next.shutdown(Date.now() + 2000);
  t.same(uidsIn(file), [], 'nor kept in the file');

  const third = s.make({ stateFile: file });
  await third.start();
  t.equal(third.lookup(s.identity(id)).kind, 'unknown', 'nor brought back by a later restart');
});

t.test('the state file does not grow with expired tombstones', async (t) => {
  const s = await setup(t, 300);
  const file = join(stateDir(t), POD_STATE_FILE);
  const r = s.make({ stateFile: file, stateWriteDelayMs: 50 });
  await r.start();
  await until('synced', () => r.synced);
  const stays = s.pod('db-0', [{ name: 'db', id: hex() }]);
  for (let round = 0; round < 3; round++) {
    const ids = Array.from({ length: 10 }, () => hex());
    ids.forEach((id, i) => s.pod(`job-${round}-${i}`, [{ name: 'job', id }]));
    await until('the jobs written', () => uidsIn(file).length === 11);
    ids.forEach((_, i) => s.api.deletePod('shop', `job-${round}-${i}`));
    await until('the tombstones to expire', () =>
      ids.every((id) => r.lookup(s.identity(id)).kind === 'unknown'),
    );
    // Any change rewrites the file; it keeps no expired pod.
    s.pod('db-0', [{ name: 'db', id: hex() }], NODE, stays.metadata.uid);
    await until('the file rewritten without the expired pods', () => uidsIn(file).length === 1);
  }
  t.same(uidsIn(file), [stays.metadata.uid], 'the live pod only');
  t.same(
    readdirSync(join(file, '..')).filter((n) => n !== POD_STATE_FILE),
    [],
    'no temporary file left beside it',
  );
});

t.test('an unusable state file: a warning naming it, a count, and live pods resolve as usual', async (t) => {
  const s = await setup(t);
  const id = hex();
  s.pod('api-0', [{ name: 'api', id }]);
  const valid = JSON.stringify({
    version: 1,
    node: NODE,
    aliveAt: Date.now(),
    pods: [
      {
        namespace: 'shop',
        name: 'old-0',
        uid: randomUUID(),
        labels: {},
        containers: { [hex()]: { name: 'old', runtime: 'containerd' } },
        specContainers: [{ name: 'old' }],
      },
    ],
  });
  const cases: [string, string | Buffer][] = [
    ['garbage bytes', randomBytes(512)],
    ['truncated JSON', valid.slice(0, valid.length / 2)],
    ['the wrong shape', JSON.stringify({ version: 1, node: NODE, pods: [{ name: 3 }] })],
    ['JSON that is no object', 'null'],
    ['a container with an unknown runtime', valid.replace('"containerd"', '"rkt"')],
    ["another node's file", valid.replace(`"node":"${NODE}"`, '"node":"node-z"')],
  ];
  for (const [what, content] of cases) {
    const file = join(stateDir(t), POD_STATE_FILE);
    writeFileSync(file, content);
    const { logger, warnings } = capturingLogger();
    const errors: string[] = [];
    const r = s.make({ stateFile: file, logger, onStateFileError: (op) => errors.push(op) });
    await r.start();
    await until(`synced (${what})`, () => r.synced);
    t.equal(r.lookup(s.identity(id)).kind, 'found', `a live pod resolves (${what})`);
    t.ok(
      warnings.some((w) => w.file === file),
      `a warning names the file (${what})`,
      { warnings },
    );
    t.same(errors, ['load'], `counted (${what})`);
    await r.shutdown(Date.now() + 2000);
    t.same(uidsIn(file).length, 1, `replaced by a good file (${what})`);
  }
});

t.test('the state file is written only once started; start and shutdown are idempotent', async (t) => {
  const s = await setup(t);
  s.pod('app-0', [{ name: 'app', id: hex() }]);
  const file = join(stateDir(t), 'nested', POD_STATE_FILE);
  const r = s.make({ stateFile: file });
  await r.shutdown(Date.now() + 1000);
  t.notOk(existsSync(file), 'shutdown before start writes nothing');
  await Promise.all([r.start(), r.start()]);
  await until('synced', () => r.synced);
  await r.shutdown(Date.now() + 2000);
  await r.shutdown(Date.now() + 2000);
  t.equal(uidsIn(file).length, 1, 'written at shutdown, its folder made');
  t.notOk(r.synced);
});

t.test('while synced, the state file keeps saying its pods are alive, with no change to write', async (t) => {
  const s = await setup(t);
  s.pod('idle-0', [{ name: 'idle', id: hex() }]);
  const file = join(stateDir(t), POD_STATE_FILE);
  const r = s.make({ stateFile: file, stateWriteDelayMs: 50, stateRefreshMs: 100 });
  await r.start();
  const first = await until('the first write', () => readState(file)?.aliveAt);
  const later = await until('a later write', () => {
    const aliveAt = readState(file)?.aliveAt;
    return aliveAt !== undefined && aliveAt > first && aliveAt;
  });
  t.ok(later > first, 'aliveAt moves on: a pod deleted while no agent runs is dated by it');
});
