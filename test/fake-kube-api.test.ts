import t from 'tap';
import { AuthenticationV1Api, AuthorizationV1Api, CoreV1Api, Watch } from '@kubernetes/client-node';
import { FakeKubeApi } from './support/fake-kube-api.ts';

// The stand-in must answer @kubernetes/client-node as a real API server would, or the tests that
// rely on it prove nothing.

t.test('the real client lists, gets and watches pods of a node', async (t) => {
  const api = await FakeKubeApi.start();
  t.teardown(() => api.close());
  const pod = api.addPod({
    namespace: 'shop',
    name: 'cart-0',
    nodeName: 'node-a',
    containers: [{ name: 'cart', image: 'cart:1', containerID: `containerd://${'a'.repeat(64)}` }],
  });
  api.addPod({ namespace: 'shop', name: 'elsewhere', nodeName: 'node-b', containers: [] });
  const core = api.kubeConfig().makeApiClient(CoreV1Api);

  const list = await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=node-a' });
  t.same(
    list.items.map((p) => p.metadata?.name),
    ['cart-0'],
  );
  t.equal(list.items[0]?.status?.containerStatuses?.[0]?.containerID, `containerd://${'a'.repeat(64)}`);
  const got = await core.readNamespacedPod({ namespace: 'shop', name: 'cart-0' });
  t.equal(got.metadata?.uid, pod.metadata.uid);
  await t.rejects(core.readNamespacedPod({ namespace: 'shop', name: 'nope' }), /404|not found/i);

  const seen: string[] = [];
  const watch = new Watch(api.kubeConfig());
  const done = new Promise<void>((resolve) => {
    void watch.watch(
      '/api/v1/pods',
      { fieldSelector: 'spec.nodeName=node-a', resourceVersion: list.metadata?.resourceVersion },
      (type: string, obj: { metadata?: { name?: string } }) => {
        seen.push(`${type} ${obj.metadata?.name ?? ''}`);
        if (seen.length === 2) resolve();
      },
      () => undefined,
    );
  });
  api.addPod({ namespace: 'shop', name: 'cart-1', nodeName: 'node-a', containers: [] });
  api.deletePod('shop', 'cart-0');
  await done;
  t.same(seen, ['ADDED cart-1', 'DELETED cart-0']);
});

t.test('the real client lists the namespaces a test added, and no more the ones it removed', async (t) => {
  const api = await FakeKubeApi.start();
  t.teardown(() => api.close());
  const core = api.kubeConfig().makeApiClient(CoreV1Api);
  t.same((await core.listNamespace()).items, [], 'none until a test adds one');
  api.addNamespace('shop');
  api.addNamespace('batch');
  api.addNamespace('shop');
  const listed = await core.listNamespace();
  t.equal(listed.kind, 'NamespaceList');
  t.same(
    listed.items.map((n) => [n.metadata?.name, n.status?.phase]),
    [
      ['shop', 'Active'],
      ['batch', 'Active'],
    ],
  );
  api.removeNamespace('shop');
  t.same(
    (await core.listNamespace()).items.map((n) => n.metadata?.name),
    ['batch'],
  );
  t.throws(() => api.removeNamespace('shop'), /no namespace shop/);
  await t.rejects(
    api.kubeConfig('not-the-service-account').makeApiClient(CoreV1Api).listNamespace(),
    /401|Unauthorized/,
  );
});

t.test(
  'the real client gets a namespace with its labels and annotations, and 404 for one not there',
  async (t) => {
    const api = await FakeKubeApi.start();
    t.teardown(() => api.close());
    const core = api.kubeConfig().makeApiClient(CoreV1Api);
    api.addNamespace('shop', { labels: { team: 'web' }, annotations: { 'podmortem.io/capture': 'false' } });
    const got = await core.readNamespace({ name: 'shop' });
    t.equal(got.kind, 'Namespace');
    t.equal(got.metadata?.name, 'shop');
    t.same(got.metadata?.labels, { team: 'web' });
    t.same(got.metadata?.annotations, { 'podmortem.io/capture': 'false' });
    const uid = got.metadata?.uid;
    t.match(uid, /^[0-9a-f-]{36}$/);

    // Added again: the same namespace (same uid), its metadata replaced only when given.
    api.addNamespace('shop');
    t.same((await core.readNamespace({ name: 'shop' })).metadata?.labels, { team: 'web' });
    api.addNamespace('shop', { labels: { 'podmortem.io/capture': 'true' } });
    const again = await core.readNamespace({ name: 'shop' });
    t.equal(again.metadata?.uid, uid);
    t.same(again.metadata?.labels, { 'podmortem.io/capture': 'true' });
    t.same(again.metadata?.annotations, {});
    t.same(
      (await core.listNamespace()).items.map((n) => n.metadata?.labels),
      [{ 'podmortem.io/capture': 'true' }],
      'the list shows the same metadata',
    );

    await t.rejects(core.readNamespace({ name: 'batch' }), { code: 404 });
    api.removeNamespace('shop');
    await t.rejects(core.readNamespace({ name: 'shop' }), { code: 404 });
    await t.rejects(
      api.kubeConfig('not-the-service-account').makeApiClient(CoreV1Api).readNamespace({ name: 'shop' }),
      { code: 401 },
    );
  },
);

t.test('a pod carries the annotations it was added with', async (t) => {
  const api = await FakeKubeApi.start();
  t.teardown(() => api.close());
  api.addPod({
    namespace: 'shop',
    name: 'cart-0',
    nodeName: 'node-a',
    annotations: { 'podmortem.io/capture': 'false' },
    containers: [],
  });
  api.addPod({ namespace: 'shop', name: 'cart-1', nodeName: 'node-a', containers: [] });
  const core = api.kubeConfig().makeApiClient(CoreV1Api);
  const list = await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=node-a' });
  t.same(
    list.items.map((p) => [p.metadata?.name, p.metadata?.annotations]),
    [
      ['cart-0', { 'podmortem.io/capture': 'false' }],
      ['cart-1', {}],
    ],
  );
});

t.test('TokenReview and SubjectAccessReview answer as the API server does', async (t) => {
  const api = await FakeKubeApi.start();
  t.teardown(() => api.close());
  api.addToken('alice-token', { username: 'alice', groups: ['dev'] });
  api.grant({
    user: 'alice',
    namespace: 'shop',
    verbs: ['list', 'get'],
    group: 'podmortem.io',
    resource: 'coredumps',
  });
  const kc = api.kubeConfig();
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);

  const ok = await authn.createTokenReview({ body: { spec: { token: 'alice-token' } } });
  t.equal(ok.status?.authenticated, true);
  t.equal(ok.status?.user?.username, 'alice');
  const bad = await authn.createTokenReview({ body: { spec: { token: 'forged' } } });
  t.equal(bad.status?.authenticated, false);

  const sar = async (namespace: string, verb: string, subresource?: string) =>
    (
      await authz.createSubjectAccessReview({
        body: {
          spec: {
            user: 'alice',
            resourceAttributes: {
              namespace,
              verb,
              group: 'podmortem.io',
              resource: 'coredumps',
              subresource,
            },
          },
        },
      })
    ).status?.allowed;
  t.equal(await sar('shop', 'list'), true);
  t.equal(await sar('other', 'list'), false, 'another namespace');
  t.equal(await sar('shop', 'get', 'dump'), false, 'the dump subresource needs its own grant');

  const anonymous = api.kubeConfig('not-the-service-account').makeApiClient(AuthenticationV1Api);
  await t.rejects(
    anonymous.createTokenReview({ body: { spec: { token: 'alice-token' } } }),
    /401|Unauthorized/,
  );
});

t.test('the API can be made unreachable and reachable again on the same port', async (t) => {
  const api = await FakeKubeApi.start();
  t.teardown(() => api.close());
  const core = api.kubeConfig().makeApiClient(CoreV1Api);
  const url = api.url;
  await api.stop();
  await t.rejects(core.listPodForAllNamespaces(), /ECONNREFUSED|fetch failed|connect/i);
  await api.restart();
  t.equal(api.url, url);
  t.same((await core.listPodForAllNamespaces()).items, []);
});
