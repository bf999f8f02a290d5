import type { V1ClusterRole, V1Container } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import t from 'tap';
import { parse } from 'yaml';
import { OpsServer } from '@podmortem/contract/runtime';
import { routesOf } from '../query-api/src/app.ts';
import { documentApp } from '../query-api/src/openapi-app.ts';
import {
  KUBE_CALLS,
  SERVICES,
  checkCollectorPod,
  checkCommandAndImage,
  checkGrace,
  checkHostPaths,
  checkNamespaces,
  checkProbesAndPorts,
  checkResources,
  checkServiceRbac,
  checkServices,
  checkStorage,
  checkUserRoles,
  checkVolumeBinding,
  kubeCallsOf,
  probePaths,
  unusedManifestFiles,
  workloadOf,
  type ServiceName,
} from './support/k8s-checks.ts';
import { describe } from './support/k8s-rbac.ts';
import {
  accessLiterals,
  accessReviews,
  collectorRequests,
  inspect,
  inspectAll,
  queryApiRequests,
  retentionRequests,
} from './support/k8s-requests.ts';
import { kustomizations, render, type KubeObject, type Rendering } from './support/kustomize.ts';

// deploy/k8s against the code it deploys, with no cluster: the real kustomize renders the base and
// every overlay, and each rendering is checked against the services' own configuration loaders,
// their servers, their Kubernetes API calls (made for real, through RBAC evaluated from the
// rendered roles) and the access reviews the query API sends. The last test breaks a rendering on
// purpose, once per check, so none of them can pass by checking nothing.

const renderings = kustomizations().map(render);
const base = renderings.find((r) => r.name === 'base');

t.test('the base and every overlay render with kustomize', async (t) => {
  t.ok(base, 'base renders');
  t.ok(renderings.length >= 3, `base and the overlays: ${renderings.map((r) => r.name).join(', ')}`);
  for (const r of renderings)
    for (const spec of SERVICES) t.type(workloadOf(r, spec.service), 'object', `${r.name}: ${spec.service}`);
  const nfs = renderings.find((r) => r.name === 'overlays/nfs');
  const pv = nfs?.objects.find((o) => o.kind === 'PersistentVolume');
  t.ok(
    pv && (pv.spec as { nfs?: { server?: string; path?: string } }).nfs?.server,
    'the nfs overlay has an NFS volume',
  );
});

t.test('every manifest file is used by a kustomization', async (t) => {
  t.strictSame(unusedManifestFiles(parse), []);
});

t.test(
  'every variable a manifest sets is a key of its service schema, and the service loader accepts them all',
  async (t) => {
    for (const r of renderings)
      for (const spec of SERVICES) {
        const s = inspect(r, spec.service);
        t.strictSame(s.problems, [], `${r.name}: ${spec.service}`);
        t.ok(s.facts, `${r.name}: ${spec.service} configuration loads`);
      }
  },
);

t.test('probes, container ports and scrape annotations use the ports the configuration serves', async (t) => {
  for (const r of renderings)
    for (const s of inspectAll(r))
      t.strictSame(checkProbesAndPorts(r, s), [], `${r.name}: ${s.spec.service}`);
  for (const r of renderings) t.strictSame(checkServices(r), [], `${r.name}: Services`);
});

t.test('the probe paths are served by the services themselves', async (t) => {
  // The collector and the indexer serve their ops endpoints with the shared OpsServer.
  const ops = new OpsServer({ host: '127.0.0.1', port: 0, registry: new Registry(), ready: () => true });
  await ops.start();
  t.teardown(() => ops.shutdown());
  const app = await documentApp();
  t.teardown(() => app.close());
  const apiRoutes = routesOf(app)
    .filter((r) => r.method === 'GET')
    .map((r) => r.url);
  for (const r of renderings)
    for (const s of inspectAll(r)) {
      const paths = probePaths(s);
      t.ok(paths.length >= 2, `${r.name}: ${s.spec.service} has probes`);
      for (const path of paths) {
        if (s.spec.service === 'query-api')
          t.ok(apiRoutes.includes(path), `${r.name}: the query API serves ${path}`);
        else {
          const res = await fetch(`http://127.0.0.1:${String(ops.port)}${path}`);
          t.equal(res.status, 200, `${r.name}: ${s.spec.service} ops server answers ${path}`);
        }
      }
    }
});

t.test("terminationGracePeriodSeconds exceeds each service's shutdown grace", async (t) => {
  for (const r of renderings)
    for (const s of inspectAll(r)) t.strictSame(checkGrace(r, s), [], `${r.name}: ${s.spec.service}`);
});

t.test(
  "the collector's node folders, Node and handler are on hostPath volumes at the paths the kernel sees",
  async (t) => {
    for (const r of renderings) {
      const s = inspect(r, 'collector');
      t.strictSame(checkHostPaths(r, s), [], `${r.name}: host paths`);
      t.strictSame(checkCollectorPod(r, s), [], `${r.name}: hostPID, privileged, node name`);
    }
  },
);

t.test(
  'the collector and the query API mount one ReadWriteMany claim at their storage roots, which binds',
  async (t) => {
    for (const r of renderings) {
      t.strictSame(checkStorage(r, inspectAll(r)), [], `${r.name}: storage`);
      t.strictSame(checkVolumeBinding(r), [], `${r.name}: volume binding`);
    }
  },
);

t.test('every container has CPU and memory requests and limits', async (t) => {
  for (const r of renderings)
    for (const s of inspectAll(r)) t.strictSame(checkResources(r, s), [], `${r.name}: ${s.spec.service}`);
});

t.test("commands run each service's main.ts; base images carry the workspace versions", async (t) => {
  for (const r of renderings)
    for (const s of inspectAll(r))
      t.strictSame(checkCommandAndImage(r, s, r === base), [], `${r.name}: ${s.spec.service}`);
});

t.test('namespaced objects are in a rendered namespace', async (t) => {
  for (const r of renderings) t.strictSame(checkNamespaces(r), [], r.name);
});

t.test('the known Kubernetes API calls are real @kubernetes/client-node methods', async (t) => {
  for (const [method, call] of Object.entries(KUBE_CALLS))
    t.type((call.api.prototype as Record<string, unknown>)[method], 'function', method);
});

t.test(
  "every Kubernetes API call in a service's code is granted to its account, and nothing more",
  async (t) => {
    const calls = new Map(SERVICES.map((s) => [s.service, kubeCallsOf(s.sourceDir)]));
    t.ok((calls.get('collector') ?? []).length >= 2, 'the collector lists and watches pods');
    t.ok((calls.get('query-api') ?? []).length >= 2, 'the query API reviews tokens and access');
    for (const r of renderings)
      for (const s of inspectAll(r))
        t.strictSame(
          checkServiceRbac(r, s, calls.get(s.spec.service) ?? []),
          [],
          `${r.name}: ${s.spec.service}`,
        );
  },
);

t.test("the services' real API requests pass RBAC as the manifests grant it", async (t) => {
  const known = Object.values(KUBE_CALLS).map((c) => describe(c.rule));
  for (const r of renderings) {
    const collector = await collectorRequests(r);
    const query = (await queryApiRequests(r)).requests;
    const retention = await retentionRequests(r);
    t.ok(
      retention.some((q) => q.attributes.verb === 'list' && q.attributes.resource === 'namespaces'),
      `${r.name}: retention listed the namespaces`,
    );
    t.ok(
      collector.some((q) => q.attributes.verb === 'list'),
      `${r.name}: the pod resolver listed`,
    );
    t.ok(
      collector.some((q) => q.attributes.verb === 'watch'),
      `${r.name}: the pod resolver watched`,
    );
    t.ok(
      collector.some((q) => q.attributes.verb === 'get' && q.attributes.resource === 'namespaces'),
      `${r.name}: the pod resolver read a namespace`,
    );
    t.ok(
      query.some((q) => q.attributes.resource === 'tokenreviews'),
      `${r.name}: a TokenReview was sent`,
    );
    for (const q of [...collector, ...query, ...retention]) {
      const what = describe({ ...q.attributes, namespace: undefined });
      t.ok(q.allowed, `${r.name}: ${what} is allowed`);
      // The static table must describe what the code really sends; watch comes from Watch paths.
      if (q.attributes.verb !== 'watch') t.ok(known.includes(what), `${r.name}: ${what} is in KUBE_CALLS`);
    }
  }
});

t.test('the user roles grant exactly the access reviews the query API makes', async (t) => {
  const literals = accessLiterals();
  t.ok(
    literals.verbs.size >= 2 && literals.subresources.size >= 1,
    'the access checks were found in the sources',
  );
  for (const r of renderings) {
    const { requests, caller } = await queryApiRequests(r);
    t.ok(caller, `${r.name}: the caller was authenticated`);
    const checked = accessReviews(requests);
    t.ok(checked.length >= 6, `${r.name}: access reviews recorded`);
    for (const verb of literals.verbs)
      t.ok(
        checked.some((a) => a.verb === verb),
        `${r.name}: verb ${verb} exercised`,
      );
    for (const sub of literals.subresources)
      t.ok(
        checked.some((a) => a.subresource === sub),
        `${r.name}: subresource ${sub} exercised`,
      );
    t.strictSame(checkUserRoles(r, checked), [], `${r.name}: user roles`);
  }
});

t.test('each check reports a manifest drifted from the code', async (t) => {
  if (!base) throw new Error('no base rendering');
  const reference = base;
  const reviewed = accessReviews((await queryApiRequests(reference)).requests);
  const drifted = (change: (objects: KubeObject[]) => void): Rendering => {
    const copy = { name: 'drifted', objects: structuredClone(reference.objects) };
    change(copy.objects);
    return copy;
  };
  const containerOf = (objects: KubeObject[], service: ServiceName): V1Container => {
    const w = workloadOf({ name: 'drifted', objects }, service);
    if (typeof w === 'string') throw new Error(w);
    return w.container;
  };
  const role = (objects: KubeObject[], name: string) =>
    objects.find((o) => o.kind === 'ClusterRole' && o.metadata.name === name) as unknown as V1ClusterRole;
  const setEnv = (c: V1Container, name: string, value: string) => {
    const e = c.env?.find((x) => x.name === name);
    if (e) e.value = value;
    else c.env?.push({ name, value });
  };
  const cases: {
    what: string;
    change: (o: KubeObject[]) => void;
    check: (r: Rendering) => string[];
    expect: RegExp;
  }[] = [
    {
      what: 'a misspelt variable',
      change: (o) => setEnv(containerOf(o, 'collector'), 'PODMORTEM_COLLECTOR_SPOOL_DIRECTORY', '/x'),
      check: (r) => inspect(r, 'collector').problems,
      expect: /PODMORTEM_COLLECTOR_SPOOL_DIRECTORY is not a key/,
    },
    {
      what: 'a value the loader refuses',
      change: (o) => setEnv(containerOf(o, 'indexer'), 'PODMORTEM_INDEXER_SHUTDOWN_GRACE_MS', 'soon'),
      check: (r) => inspect(r, 'indexer').problems,
      expect: /PODMORTEM_INDEXER_SHUTDOWN_GRACE_MS: must be a number/,
    },
    {
      what: 'a variable from a ConfigMap key that does not exist',
      change: (o) => {
        const ref = containerOf(o, 'indexer').env?.find((e) => e.valueFrom?.configMapKeyRef)?.valueFrom
          ?.configMapKeyRef;
        if (ref) ref.key = 'no-such-key';
      },
      check: (r) => inspect(r, 'indexer').problems,
      expect: /has no key no-such-key/,
    },
    {
      what: 'an ops port moved in the config but not in the probes',
      change: (o) => setEnv(containerOf(o, 'collector'), 'PODMORTEM_COLLECTOR_OPS_PORT', '9500'),
      check: (r) => checkProbesAndPorts(r, inspect(r, 'collector')),
      expect: /no containerPort 9500/,
    },
    {
      what: 'a readiness probe on the wrong path',
      change: (o) => {
        const get = containerOf(o, 'query-api').readinessProbe?.httpGet;
        if (get) get.path = '/ready';
      },
      check: (r) => checkProbesAndPorts(r, inspect(r, 'query-api')),
      expect: /readiness probe path is \/ready, not \/readyz/,
    },
    {
      what: 'a shutdown grace longer than the pod grace',
      change: (o) => setEnv(containerOf(o, 'collector'), 'PODMORTEM_COLLECTOR_SHUTDOWN_GRACE_MS', '60000'),
      check: (r) => checkGrace(r, inspect(r, 'collector')),
      expect: /does not exceed the shutdown grace of 60000 ms/,
    },
    {
      what: 'a spool folder the handler would not find on the host',
      change: (o) =>
        setEnv(containerOf(o, 'collector'), 'PODMORTEM_COLLECTOR_SPOOL_DIR', '/var/spool/podmortem'),
      check: (r) => checkHostPaths(r, inspect(r, 'collector')),
      expect: /the spool \(\/var\/spool\/podmortem\) is on no hostPath volume/,
    },
    {
      what: 'a hostPath that differs from its mount path',
      change: (o) => {
        const ds = o.find((x) => x.kind === 'DaemonSet') as unknown as {
          spec: { template: { spec: { volumes: { name: string; hostPath?: { path: string } }[] } } };
        };
        const spool = ds.spec.template.spec.volumes.find((v) => v.name === 'spool');
        if (spool?.hostPath) spool.hostPath.path = '/srv/spool';
      },
      check: (r) => checkHostPaths(r, inspect(r, 'collector')),
      expect: /the spool is \/var\/lib\/podmortem\/spool in the container but \/srv\/spool on the host/,
    },
    {
      what: 'the node name not from the downward API',
      change: (o) => {
        const c = containerOf(o, 'collector');
        c.env = (c.env ?? []).map((e) =>
          e.name === 'PODMORTEM_COLLECTOR_NODE_NAME' ? { name: e.name, value: 'node-a' } : e,
        );
      },
      check: (r) => checkCollectorPod(r, inspect(r, 'collector')),
      expect: /comes from value, not the downward API/,
    },
    {
      what: 'the query API mounting the storage writable',
      change: (o) => {
        const m = containerOf(o, 'query-api').volumeMounts?.find((x) => x.name === 'storage');
        if (m) m.readOnly = false;
        const d = o.find(
          (x) => x.kind === 'Deployment' && x.metadata.name === 'podmortem-query-api',
        ) as unknown as {
          spec: { template: { spec: { volumes: { persistentVolumeClaim?: { readOnly?: boolean } }[] } } };
        };
        for (const v of d.spec.template.spec.volumes)
          if (v.persistentVolumeClaim) v.persistentVolumeClaim.readOnly = false;
      },
      check: (r) => checkStorage(r, inspectAll(r)),
      expect: /mounted writable/,
    },
    {
      what: 'a storage root where no claim is mounted',
      change: (o) => setEnv(containerOf(o, 'query-api'), 'PODMORTEM_API_STORAGE_ROOT', '/var/lib/podmortem'),
      check: (r) => checkStorage(r, inspectAll(r)),
      expect: /no PersistentVolumeClaim is mounted at the storage root \/var\/lib\/podmortem/,
    },
    {
      what: 'a container without limits',
      change: (o) => {
        const res = containerOf(o, 'indexer').resources;
        if (res) delete res.limits;
      },
      check: (r) => checkResources(r, inspect(r, 'indexer')),
      expect: /no cpu in resources.limits/,
    },
    {
      what: 'the collector role without watch',
      change: (o) => {
        const rule = role(o, 'podmortem-collector').rules?.[0];
        if (rule) rule.verbs = ['get', 'list'];
      },
      check: (r) => checkServiceRbac(r, inspect(r, 'collector'), kubeCallsOf('collector/src')),
      expect: /calls watch \/api\/v1\/pods, needing watch core\/pods/,
    },
    {
      what: 'the retention role without list',
      change: (o) => {
        const rule = role(o, 'podmortem-retention').rules?.[0];
        if (rule) rule.verbs = ['get'];
      },
      check: (r) => checkServiceRbac(r, inspect(r, 'retention'), kubeCallsOf('retention/src')),
      expect: /calls listNamespace, needing list core\/namespaces/,
    },
    {
      what: 'the query API role granting more than it needs',
      change: (o) =>
        role(o, 'podmortem-query-api').rules?.push({
          apiGroups: [''],
          resources: ['secrets'],
          verbs: ['get'],
        }),
      check: (r) => checkServiceRbac(r, inspect(r, 'query-api'), kubeCallsOf('query-api/src')),
      expect: /grants get core\/secrets, which the code does not need/,
    },
    {
      what: 'a viewer role that can download',
      change: (o) =>
        role(o, 'podmortem-crash-viewer').rules?.push({
          apiGroups: ['podmortem.io'],
          resources: ['coredumps/dump'],
          verbs: ['get'],
        }),
      check: (r) => checkUserRoles(r, reviewed),
      expect:
        /^drifted: podmortem-crash-viewer allows get podmortem.io\/coredumps\/dump, which the query API checks$/,
    },
    {
      what: 'a user role on a resource name the query API does not check',
      change: (o) => {
        const rule = role(o, 'podmortem-dump-downloader').rules?.[0];
        if (rule) rule.resources = ['crashes'];
      },
      check: (r) => checkUserRoles(r, reviewed),
      expect: /does not allow list podmortem.io\/coredumps/,
    },
    {
      what: 'an unquoted number in env',
      change: (o) => {
        const e = containerOf(o, 'indexer').env?.find((x) => x.name === 'PODMORTEM_INDEXER_OPS_PORT');
        if (e) (e as { value: unknown }).value = 9465;
      },
      check: (r) => inspect(r, 'indexer').problems,
      expect: /PODMORTEM_INDEXER_OPS_PORT is not a string/,
    },
  ];
  for (const c of cases) {
    const problems = c.check(drifted(c.change));
    t.ok(
      problems.some((p) => c.expect.test(p)),
      `${c.what}: ${problems.join(' | ') || 'no problem reported'}`,
    );
  }
  t.strictSame(checkGrace(reference, inspect(reference, 'collector')), [], 'the reference itself is clean');
});
