import { randomBytes, randomUUID } from 'node:crypto';
import t from 'tap';
import { createLogger } from '@podmortem/contract/runtime';
import { imageDigest, parseContainerId, PodResolver } from '../collector/src/pod-resolver.ts';
import { until } from './support/collector-agent.ts';
import { FakeKubeApi } from './support/fake-kube-api.ts';

// The agent's cache of this node's pods, through the real @kubernetes/client-node against the
// Kubernetes API stand-in: list + watch of spec.nodeName, every container id a pod ever had,
// tombstones for deleted pods, and the API going away and coming back.

const logger = createLogger('test', { level: 'silent' });
const NODE = 'node-a';
const hex = () => randomBytes(32).toString('hex');

async function setup(t: { teardown(fn: () => unknown): void }, tombstoneMs = 60_000) {
  const api = await FakeKubeApi.start();
  const synced: boolean[] = [];
  const resolver = new PodResolver({
    kubeConfig: api.kubeConfig(),
    nodeName: NODE,
    tombstoneMs,
    logger,
    onSynced: (s) => synced.push(s),
    refreshMinIntervalMs: 0,
  });
  t.teardown(async () => {
    await resolver.shutdown(Date.now() + 2000);
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
  return { api, resolver, synced, pod, identity };
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
