import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createLogger } from '@podmortem/contract/runtime';
import { FakeKubeApi } from '../../../test/support/fake-kube-api.ts';
import { until } from '../../../test/support/poll.ts';
import { PodResolver, type PodResolverParams } from './pod-resolver.ts';
import { POD_STATE_FILE } from './pod-state-file.ts';

// What the resolver knows of podmortem.io/capture: a pod's label and annotation from its list and
// watch (and its state file), a namespace's from a GET, cached, standing while the API is away.
// Through the real @kubernetes/client-node against the Kubernetes API stand-in.

const logger = createLogger('test', { level: 'silent' });
const NODE = 'node-a';
const GET_SHOP = 'GET /api/v1/namespaces/shop';

async function setup(t: { teardown(fn: () => unknown): void }, params: Partial<PodResolverParams> = {}) {
  const api = await FakeKubeApi.start();
  t.teardown(() => api.close());
  const dir = mkdtempSync(join(tmpdir(), 'pm-capture-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const resolvers: PodResolver[] = [];
  t.teardown(async () => {
    for (const r of resolvers) await r.shutdown();
  });
  const make = (more: Partial<PodResolverParams> = {}) => {
    const r = new PodResolver({
      kubeConfig: api.kubeConfig(),
      nodeName: NODE,
      tombstoneMs: 60_000,
      logger,
      stateFile: join(dir, POD_STATE_FILE),
      stateWriteDelayMs: 10,
      ...params,
      ...more,
    });
    resolvers.push(r);
    return r;
  };
  return { api, dir, make };
}

t.test("a pod's capture label and annotation are known, and kept in the state file", async (t) => {
  const { api, dir, make } = await setup(t);
  const containerId = randomBytes(32).toString('hex');
  const uid = randomUUID();
  api.addPod({
    namespace: 'shop',
    name: 'api-0',
    uid,
    nodeName: NODE,
    labels: { app: 'api', 'podmortem.io/capture': 'true' },
    annotations: { 'podmortem.io/capture': 'false', other: 'x' },
    containers: [{ name: 'api', image: 'api:1', containerID: `containerd://${containerId}` }],
  });
  const plainId = randomBytes(32).toString('hex');
  api.addPod({
    namespace: 'shop',
    name: 'plain-0',
    nodeName: NODE,
    containers: [{ name: 'plain', image: 'plain:1', containerID: `containerd://${plainId}` }],
  });
  const resolver = make();
  await resolver.start();
  await until('synced', () => resolver.synced);
  const lookup = resolver.lookup({ containerId, runtime: 'containerd', path: '/' });
  t.equal(lookup.kind, 'found');
  if (lookup.kind === 'found') t.same(lookup.pod.capture, { label: 'true', annotation: 'false' });
  const plain = resolver.lookup({ containerId: plainId, runtime: 'containerd', path: '/' });
  t.equal(plain.kind === 'found' ? plain.pod.capture : 'not found', undefined, 'none set, none known');

  // A change of the annotation reaches the resolver by the watch.
  api.addPod({
    namespace: 'shop',
    name: 'api-0',
    uid,
    nodeName: NODE,
    annotations: { 'podmortem.io/capture': 'nope' },
    containers: [{ name: 'api', image: 'api:1', containerID: `containerd://${containerId}` }],
  });
  await until('the watch brought the new annotation', () => {
    const l = resolver.lookup({ containerId, runtime: 'containerd', path: '/' });
    return l.kind === 'found' && l.pod.capture?.annotation === 'nope';
  });
  await resolver.shutdown();
  const file = JSON.parse(readFileSync(join(dir, POD_STATE_FILE), 'utf8')) as {
    pods: { name: string; capture?: unknown }[];
  };
  t.same(
    file.pods.map((p) => [p.name, p.capture]),
    [
      ['api-0', { annotation: 'nope' }],
      ['plain-0', undefined],
    ],
  );

  // An agent started again while the API is away knows it from the file.
  await api.stop();
  const again = make();
  await again.start();
  const known = again.lookup({ containerId, runtime: 'containerd', path: '/' });
  t.equal(known.kind === 'found' ? known.pod.capture?.annotation : 'not found', 'nope');
});

t.test("a namespace's marks are read once and cached; a namespace not there has none", async (t) => {
  const { api, make } = await setup(t);
  api.addNamespace('shop', { labels: { 'podmortem.io/capture': 'false' }, annotations: { team: 'web' } });
  const resolver = make();
  t.same(await resolver.namespaceCapture('shop'), { label: 'false' });
  api.addNamespace('shop', { annotations: { 'podmortem.io/capture': 'true' } });
  t.same(
    await resolver.namespaceCapture('shop'),
    { label: 'false' },
    'the cached marks, within the cache time',
  );
  t.equal(api.requests.get(GET_SHOP), 1, 'one request');
  t.equal(await resolver.namespaceCapture('batch'), undefined, 'a namespace not there');
  t.equal(api.requests.get('GET /api/v1/namespaces/batch'), 1);

  const fresh = make({ namespaceCacheMs: 1 });
  t.same(await fresh.namespaceCapture('shop'), { annotation: 'true' });
  await new Promise((resolve) => setTimeout(resolve, 5));
  api.addNamespace('shop', { annotations: {} });
  t.equal(await fresh.namespaceCapture('shop'), undefined, 'read again once the cache time passed');
  t.equal(api.requests.get(GET_SHOP), 3);
});

t.test('while the API cannot answer: the marks last read stand; none read yet fails retriably', async (t) => {
  const { api, make } = await setup(t, { namespaceCacheMs: 1, namespaceTimeoutMs: 300 });
  api.addNamespace('shop', { labels: { 'podmortem.io/capture': 'false' } });
  const resolver = make();
  t.same(await resolver.namespaceCapture('shop'), { label: 'false' });
  await new Promise((resolve) => setTimeout(resolve, 5));
  api.stall();
  t.same(await resolver.namespaceCapture('shop'), { label: 'false' }, 'stalled: the last marks read');
  await t.rejects(resolver.namespaceCapture('batch'), {
    code: 'PM_ERR_KUBE_UNAVAILABLE',
    retriable: true,
    message: /reading namespace batch: no answer within 300 ms/,
  });
  api.stall(false);
  await api.stop();
  t.same(await resolver.namespaceCapture('shop'), { label: 'false' }, 'unreachable: the last marks read');
  await t.rejects(resolver.namespaceCapture('batch'), {
    code: 'PM_ERR_KUBE_UNAVAILABLE',
    message: /reading namespace batch: /,
  });
});
