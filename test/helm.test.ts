import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { V1DaemonSet, V1Deployment, V1PodSecurityContext } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { OpsServer } from '@podmortem/contract/runtime';
import { loadCollectorConfig } from '../collector/src/agent/config.ts';
import { HANDLER_WRAPPER_NAME } from '../collector/src/agent/handler-installer.ts';
import { CORE_PATTERN_MAX_BYTES, corePattern } from '../collector/src/core-pattern.ts';
import { routesOf } from '../query-api/src/app.ts';
import { documentApp } from '../query-api/src/openapi-app.ts';
import { CHART_DIR, helm, renderChart } from './support/helm.ts';
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
  workloadOf,
  type ServiceName,
} from './support/k8s-checks.ts';
import { describe, grantsOf } from './support/k8s-rbac.ts';
import {
  accessLiterals,
  accessReviews,
  collectorRequests,
  inspect,
  inspectAll,
  queryApiRequests,
  retentionRequests,
} from './support/k8s-requests.ts';
import { render, type KubeObject, type Rendering } from './support/kustomize.ts';
import { repoDir } from './support/stack.ts';

// deploy/helm/podmortem against the code it deploys and against the kustomize base: the real helm
// lints the chart and renders it with its defaults and with each provider's values, every
// rendering goes through the checks test/k8s-manifests.test.ts applies to the kustomize renderings
// (test/support/k8s-checks.ts, the services' real API requests through RBAC), each provider's host
// folders are checked against what its node OS allows, values.schema.json refuses bad values, and
// the standard provider's rendering must equal `kustomize build deploy/k8s/base` object by object.

/**
 * What each provider's nodes allow on the host: the folders a hostPath may write (the spool and
 * the state need only that) and those that may also hold executables (the handler wrapper and the
 * Node binary the kernel runs, under the handler install folder).
 */
const PROVIDERS: Record<string, { writable: string[]; executable: string[] }> = {
  // A general-purpose distribution: /var/lib is writable and executable.
  standard: { writable: ['/var/lib'], executable: ['/var/lib'] },
  // Container-Optimized OS: / is read-only, /var and /home are noexec but for /home/kubernetes/bin.
  'gke-cos': { writable: ['/var', '/home'], executable: ['/home/kubernetes/bin'] },
  // Bottlerocket: / is dm-verity; /var and /opt are bind mounts of /local, mounted without noexec.
  bottlerocket: { writable: ['/var', '/opt'], executable: ['/var', '/opt'] },
  // RHCOS: /var is writable and executable (/usr and / are not writable).
  openshift: { writable: ['/var'], executable: ['/var'] },
};

const defaults = renderChart('helm defaults');
const providers = Object.keys(PROVIDERS).map((p) => ({
  provider: p,
  rendering: renderChart(`helm ${p}`, [`providers/${p}.yaml`]),
}));
const renderings = [defaults, ...providers.map((p) => p.rendering)];

const SCC_GRANTS = /^podmortem-scc-/;

/**
 * The rendering without the OpenShift SCC grants: `use` on a SecurityContextConstraints is asked by
 * OpenShift's admission when a pod is created, not by any API call of the code, so the check of
 * the calls' RBAC would take it for a grant beyond them. The SCC grants are tested on their own.
 */
function withoutSccGrants(r: Rendering): Rendering {
  return {
    name: r.name,
    objects: r.objects.filter(
      (o) => !((o.kind === 'ClusterRole' || o.kind === 'RoleBinding') && SCC_GRANTS.test(o.metadata.name)),
    ),
  };
}

function daemonSet(r: Rendering): V1DaemonSet {
  const o = r.objects.find((x) => x.kind === 'DaemonSet' && x.metadata.name === 'podmortem-collector');
  if (!o) throw new Error(`${r.name}: no collector DaemonSet`);
  return o;
}

const under = (path: string, roots: string[]) =>
  roots.some((root) => path === root || path.startsWith(`${root}/`));

t.test('helm lints the chart with its defaults and with each provider file', async (t) => {
  for (const values of [
    [],
    ...Object.keys(PROVIDERS).map((p) => ['--values', `${CHART_DIR}/providers/${p}.yaml`]),
  ]) {
    const r = helm(['lint', '--strict', CHART_DIR, ...values]);
    t.equal(r.status, 0, `helm lint ${values.join(' ')}: ${r.stdout}${r.stderr}`);
  }
});

t.test("the chart's appVersion is the repository's version, and every workload renders", async (t) => {
  const chart = parse(readFileSync(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as {
    version: string;
    appVersion: string;
  };
  const root = JSON.parse(readFileSync(join(repoDir, 'package.json'), 'utf8')) as { version: string };
  t.equal(chart.version, '0.1.0');
  t.equal(chart.appVersion, root.version);
  for (const r of renderings)
    for (const spec of SERVICES) t.type(workloadOf(r, spec.service), 'object', `${r.name}: ${spec.service}`);
});

t.test(
  'every variable the chart sets is a key of its service schema, and the service loader accepts them all',
  async (t) => {
    for (const r of renderings)
      for (const s of inspectAll(r)) {
        t.strictSame(s.problems, [], `${r.name}: ${s.spec.service}`);
        t.ok(s.facts, `${r.name}: ${s.spec.service} configuration loads`);
      }
  },
);

t.test('probes, ports, grace periods, resources, commands, images and namespaces', async (t) => {
  for (const r of renderings) {
    for (const s of inspectAll(r)) {
      const at = `${r.name}: ${s.spec.service}`;
      t.strictSame(checkProbesAndPorts(r, s), [], `${at}: probes and ports`);
      t.strictSame(checkGrace(r, s), [], `${at}: grace`);
      t.strictSame(checkResources(r, s), [], `${at}: resources`);
      t.strictSame(checkCommandAndImage(r, s, true), [], `${at}: command and image`);
    }
    t.strictSame(checkServices(r), [], `${r.name}: Services`);
    t.strictSame(checkNamespaces(r), [], `${r.name}: namespaces`);
  }
});

t.test('the probe paths are served by the services themselves', async (t) => {
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
      for (const path of paths)
        if (s.spec.service === 'query-api')
          t.ok(apiRoutes.includes(path), `${r.name}: the API serves ${path}`);
        else {
          const res = await fetch(`http://127.0.0.1:${String(ops.port)}${path}`);
          t.equal(res.status, 200, `${r.name}: ${s.spec.service} ops server answers ${path}`);
        }
    }
});

t.test("the collector's folders, storage and volume binding", async (t) => {
  for (const r of [
    ...renderings,
    renderChart(
      'helm nfs',
      [],
      ['storage.nfs.server=nfs.example.internal', 'storage.nfs.path=/exports/podmortem'],
    ),
  ]) {
    const s = inspect(r, 'collector');
    t.strictSame(checkHostPaths(r, s), [], `${r.name}: host paths`);
    t.strictSame(checkCollectorPod(r, s), [], `${r.name}: hostPID, privileged, node name`);
    t.strictSame(checkStorage(r, inspectAll(r)), [], `${r.name}: storage`);
    t.strictSame(checkVolumeBinding(r), [], `${r.name}: volume binding`);
  }
});

t.test("each provider's host folders are ones its nodes can write, and run the handler from", async (t) => {
  for (const { provider, rendering: r } of providers) {
    const allowed = PROVIDERS[provider];
    if (!allowed) throw new Error(provider);
    const s = inspect(r, 'collector');
    const facts = s.facts;
    if (!facts) throw new Error(`${r.name}: the collector configuration does not load`);
    const env = s.env.env;
    const volumes = daemonSet(r).spec?.template.spec?.volumes ?? [];
    const hostPath = (name: string) => volumes.find((v) => v.name === name)?.hostPath?.path;
    const installDir = env.PODMORTEM_COLLECTOR_HANDLER_INSTALL_DIR ?? '';
    t.equal(
      hostPath('handler-bin'),
      installDir,
      `${provider}: the install folder's hostPath is the variable's`,
    );
    t.equal(hostPath('spool'), env.PODMORTEM_COLLECTOR_SPOOL_DIR, `${provider}: the spool's hostPath`);
    t.equal(hostPath('state'), env.PODMORTEM_COLLECTOR_STATE_DIR, `${provider}: the state's hostPath`);
    t.ok(
      under(installDir, allowed.executable),
      `${provider}: ${installDir} is under ${allowed.executable.join(' or ')}`,
    );
    const node = s.workload.container.command?.[0] ?? '';
    t.ok(
      node.startsWith(`${installDir}/`),
      `${provider}: the agent's Node (${node}) is staged in ${installDir}`,
    );
    for (const v of volumes)
      if (v.hostPath)
        t.ok(
          under(v.hostPath.path, allowed.writable),
          `${provider}: hostPath ${v.hostPath.path} is writable there`,
        );
    // The kernel keeps 127 bytes of core_pattern: the wrapper's path must leave room for the specifiers.
    const pattern = corePattern(posix.join(installDir, HANDLER_WRAPPER_NAME));
    t.ok(Buffer.byteLength(pattern) <= CORE_PATTERN_MAX_BYTES, `${provider}: ${pattern}`);
  }
  const cos = providers.find((p) => p.provider === 'gke-cos');
  t.equal(
    cos && inspect(cos.rendering, 'collector').env.env.PODMORTEM_COLLECTOR_HANDLER_INSTALL_DIR,
    '/home/kubernetes/bin/podmortem',
    'on COS the handler is installed where GKE allows executables',
  );
});

t.test(
  'OpenShift: the collector may use the privileged SCC, retention anyuid, the others get a user assigned',
  async (t) => {
    const openshift = providers.find((p) => p.provider === 'openshift')?.rendering;
    if (!openshift) throw new Error('no openshift rendering');
    const scc = (account: string) =>
      grantsOf(openshift.objects, { kind: 'ServiceAccount', name: account, namespace: 'podmortem' })
        .filter((g) => g.rules.some((rule) => rule.resources?.includes('securitycontextconstraints')))
        .flatMap((g) =>
          g.rules.map((rule) => ({ found: g.roleFound, verbs: rule.verbs, names: rule.resourceNames })),
        );
    t.strictSame(scc('podmortem-collector'), [{ found: true, verbs: ['use'], names: ['privileged'] }]);
    t.strictSame(scc('podmortem-retention'), [{ found: true, verbs: ['use'], names: ['anyuid'] }]);
    for (const account of ['podmortem-indexer', 'podmortem-analyzer', 'podmortem-query-api'])
      t.strictSame(scc(account), [], `${account} takes restricted-v2`);
    for (const service of ['indexer', 'analyzer', 'query-api'] as const) {
      const pod = inspect(openshift, service).workload.template.spec?.securityContext as V1PodSecurityContext;
      t.equal(pod.runAsUser, undefined, `${service}: no fixed user`);
      t.equal(pod.runAsGroup, undefined, `${service}: no fixed group`);
      t.equal(pod.runAsNonRoot, true, `${service}: still never root`);
    }
    for (const r of renderings.filter((x) => x !== openshift))
      t.notOk(
        r.objects.some((o) => SCC_GRANTS.test(o.metadata.name)),
        `${r.name}: no SCC grant off OpenShift`,
      );
  },
);

t.test(
  "every Kubernetes API call in a service's code is granted to its account, and nothing more",
  async (t) => {
    const calls = new Map(SERVICES.map((s) => [s.service, kubeCallsOf(s.sourceDir)]));
    for (const r of renderings.map(withoutSccGrants))
      for (const s of inspectAll(r))
        t.strictSame(
          checkServiceRbac(r, s, calls.get(s.spec.service) ?? []),
          [],
          `${r.name}: ${s.spec.service}`,
        );
  },
);

t.test("the services' real API requests pass RBAC as the chart grants it", async (t) => {
  const known = Object.values(KUBE_CALLS).map((c) => describe(c.rule));
  for (const r of renderings) {
    const requests = [
      ...(await collectorRequests(r)),
      ...(await queryApiRequests(r)).requests,
      ...(await retentionRequests(r)),
    ];
    t.ok(
      requests.some((q) => q.attributes.verb === 'watch'),
      `${r.name}: the pod resolver watched`,
    );
    t.ok(
      requests.some((q) => q.attributes.verb === 'get' && q.attributes.resource === 'namespaces'),
      `${r.name}: the pod resolver read a namespace`,
    );
    t.ok(
      requests.some((q) => q.attributes.resource === 'tokenreviews'),
      `${r.name}: a TokenReview was sent`,
    );
    t.ok(
      requests.some((q) => q.attributes.resource === 'namespaces'),
      `${r.name}: retention listed the namespaces`,
    );
    for (const q of requests) {
      const what = describe({ ...q.attributes, namespace: undefined });
      t.ok(q.allowed, `${r.name}: ${what} is allowed`);
      if (q.attributes.verb !== 'watch') t.ok(known.includes(what), `${r.name}: ${what} is in KUBE_CALLS`);
    }
  }
});

t.test('the user roles grant exactly the access reviews the query API makes', async (t) => {
  const literals = accessLiterals();
  for (const r of renderings) {
    const { requests, caller } = await queryApiRequests(r);
    t.ok(caller, `${r.name}: the caller was authenticated`);
    const checked = accessReviews(requests);
    for (const verb of literals.verbs)
      t.ok(
        checked.some((a) => a.verb === verb),
        `${r.name}: verb ${verb} exercised`,
      );
    t.strictSame(checkUserRoles(r, checked), [], `${r.name}: user roles`);
  }
});

t.test('values.schema.json refuses bad values, naming them', async (t) => {
  const refused = (what: string, set: string, expect: RegExp) => {
    const r = helm(['template', 'podmortem', CHART_DIR, '--set', set]);
    t.not(r.status, 0, `${what}: helm exits non-zero`);
    t.match(r.stderr, expect, `${what}: ${r.stderr.trim()}`);
  };
  refused('replicas: "two"', 'indexer.replicas=two', /\/indexer\/replicas': got string, want integer/);
  refused('a misspelt key', 'queryApi.replica=2', /\/queryApi': additional properties 'replica' not allowed/);
  refused('a relative host path', 'collector.hostPaths.spoolDir=spool', /\/collector\/hostPaths\/spoolDir/);
  refused('a broker without a port', 'endpoints.kafkaBrokers=kafka', /\/endpoints\/kafkaBrokers/);
  refused(
    'a variable of no service',
    'indexer.extraEnv[0].name=FOO,indexer.extraEnv[0].value=1',
    /\/indexer\/extraEnv\/0\/name/,
  );
  const ok = helm(['template', 'podmortem', CHART_DIR, '--set', 'indexer.replicas=3']);
  t.equal(ok.status, 0, `a good value renders: ${ok.stderr}`);
});

const NODE_TERM =
  'indexer.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]';

t.test("each service's values reach its pods", async (t) => {
  const r = renderChart(
    'helm values',
    [],
    [
      'image.registry=registry.example/pm',
      'queryApi.image.tag=9.9.9',
      'collector.image.registry=mirror.example/pm',
      'indexer.replicas=5',
      'analyzer.priorityClassName=podmortem-high',
      'retention.nodeSelector.pool=system',
      'queryApi.tolerations[0].key=dedicated,queryApi.tolerations[0].operator=Exists',
      ['key=pool', 'operator=In', 'values[0]=podmortem'].map((x) => `${NODE_TERM}.${x}`).join(','),
      'indexer.resources.limits.memory=3Gi',
      'collector.extraEnv[0].name=PODMORTEM_COLLECTOR_KAFKA_CLIENT_ID,collector.extraEnv[0].value=pm-agent',
      'storage.existingClaim=my-claim',
    ],
  );
  const pod = (service: ServiceName) => inspect(r, service).workload.template.spec;
  const deployment = (name: string) =>
    r.objects.find((o) => o.kind === 'Deployment' && o.metadata.name === name) as V1Deployment | undefined;
  t.equal(pod('indexer')?.containers[0]?.image, 'registry.example/pm/indexer:0.1.0', 'the global registry');
  t.equal(pod('query-api')?.containers[0]?.image, 'registry.example/pm/query-api:9.9.9', "a service's tag");
  for (const c of [...(pod('collector')?.initContainers ?? []), ...(pod('collector')?.containers ?? [])])
    t.equal(c.image, 'mirror.example/pm/collector:0.1.0', `${c.name}: a service's registry`);
  t.equal(deployment('podmortem-indexer')?.spec?.replicas, 5, 'replicas');
  t.equal(pod('analyzer')?.priorityClassName, 'podmortem-high', 'priorityClassName');
  t.strictSame(pod('retention')?.nodeSelector, { pool: 'system' }, 'nodeSelector');
  t.strictSame(pod('query-api')?.tolerations, [{ key: 'dedicated', operator: 'Exists' }], 'tolerations');
  t.strictSame(
    pod('indexer')?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
    [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['podmortem'] }] }],
    'affinity',
  );
  t.equal(pod('indexer')?.containers[0]?.resources?.limits?.memory, '3Gi', 'resources');
  const collector = inspect(r, 'collector');
  t.strictSame(collector.problems, [], 'the extra variable is one of the collector schema');
  t.equal(collector.facts && loadCollectorConfig(collector.env.env).kafkaClientId, 'pm-agent', 'extra env');
  t.notOk(
    r.objects.some((o) => o.kind === 'PersistentVolumeClaim'),
    'an existing claim: the chart makes none',
  );
  for (const service of ['collector', 'analyzer', 'query-api', 'retention'] as const)
    t.ok(
      pod(service)?.volumes?.some((v) => v.persistentVolumeClaim?.claimName === 'my-claim'),
      `${service} mounts the existing claim`,
    );
});

// ---- the chart and the kustomize base render the same workloads --------------------------------

/** Labels and annotations Helm adds that the base has not: the chart's identity, the release's. */
const HELM_LABELS = [
  'helm.sh/chart',
  'app.kubernetes.io/managed-by',
  'app.kubernetes.io/instance',
  'app.kubernetes.io/version',
];
/** The base rolls pods by hashing the ConfigMap's name, the chart by this annotation. */
const HELM_POD_ANNOTATIONS = ['checksum/endpoints'];

function normalize(r: Rendering, generatedNames: Map<string, string>): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const original of r.objects) {
    const text = JSON.stringify(original, (_key, value: unknown) =>
      typeof value === 'string' ? (generatedNames.get(value) ?? value) : value,
    );
    const o = JSON.parse(text) as KubeObject & {
      spec?: { template?: { metadata?: { annotations?: Record<string, string> } } };
    };
    for (const l of HELM_LABELS) delete o.metadata.labels?.[l];
    const annotations = o.spec?.template?.metadata?.annotations;
    for (const a of HELM_POD_ANNOTATIONS) delete annotations?.[a];
    out.set(`${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`, o);
  }
  return out;
}

const show = (v: unknown) => (v === undefined ? 'absent' : JSON.stringify(v));

/** Every path at which two values differ, with both sides. */
function differences(a: unknown, b: unknown, path: string, found: string[]): string[] {
  if (
    typeof a === 'object' &&
    a !== null &&
    typeof b === 'object' &&
    b !== null &&
    Array.isArray(a) === Array.isArray(b)
  ) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys)
      differences(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        `${path}.${k}`,
        found,
      );
  } else if (JSON.stringify(a) !== JSON.stringify(b))
    found.push(`${path}: kustomize ${show(a)}, helm ${show(b)}`);
  return found;
}

/** Every difference between a kustomize rendering and a Helm one, object by object. */
function compare(t: Test, base: Rendering, chart: Rendering) {
  // kustomize's configMapGenerator appends a content hash to the name; the chart's name has none.
  const chartConfigMaps = new Set(
    chart.objects.filter((o) => o.kind === 'ConfigMap').map((o) => o.metadata.name),
  );
  const generated = new Map<string, string>();
  for (const o of base.objects.filter((x) => x.kind === 'ConfigMap')) {
    const m = /^(.+)-[a-z0-9]{10}$/.exec(o.metadata.name);
    if (m?.[1] !== undefined && chartConfigMaps.has(m[1])) generated.set(o.metadata.name, m[1]);
  }
  t.ok(generated.size > 0, `${base.name}: the endpoints ConfigMap is matched`);
  const fromKustomize = normalize(base, generated);
  const fromHelm = normalize(chart, new Map());
  t.strictSame(
    [...fromHelm.keys()].sort(),
    [...fromKustomize.keys()].sort(),
    `${base.name}: the same objects, by kind and name`,
  );
  const kinds = new Set([...fromKustomize.keys()].map((k) => k.split(' ')[0]));
  for (const kind of [
    'DaemonSet',
    'Deployment',
    'ClusterRole',
    'ClusterRoleBinding',
    'ServiceAccount',
    'Service',
  ])
    t.ok(kinds.has(kind), `${base.name}: the comparison covers ${kind}`);
  for (const [key, o] of fromKustomize) {
    if (!fromHelm.has(key)) continue;
    t.strictSame(differences(o, fromHelm.get(key), '', []), [], `${base.name} and ${chart.name}: ${key}`);
  }
}

t.test('helm with the standard provider renders what kustomize renders from deploy/k8s/base', async (t) => {
  const standard = providers.find((p) => p.provider === 'standard')?.rendering;
  if (!standard) throw new Error('no standard rendering');
  compare(t, render('base'), standard);
});

t.test('with the NFS server of overlays/nfs it renders what that overlay renders', async (t) => {
  const nfs = renderChart(
    'helm standard nfs',
    ['providers/standard.yaml'],
    ['storage.nfs.server=nfs.example.internal', 'storage.nfs.path=/exports/podmortem'],
  );
  compare(t, render('overlays/nfs'), nfs);
});

t.test('the comparison reports a difference', async (t) => {
  const base = render('base');
  const changed = structuredClone(base.objects);
  const ds = changed.find((o) => o.kind === 'DaemonSet') as V1DaemonSet & KubeObject;
  const c = ds.spec?.template.spec?.containers[0];
  c?.env?.push({ name: 'PODMORTEM_COLLECTOR_KAFKA_TOPIC', value: 'other' });
  const a = normalize(base, new Map()).get('DaemonSet podmortem/podmortem-collector');
  const b = normalize({ name: 'changed', objects: changed }, new Map()).get(
    'DaemonSet podmortem/podmortem-collector',
  );
  t.match(
    differences(a, b, '', []).join('\n'),
    /\.spec\.template\.spec\.containers\.0\.env\.\d+: kustomize absent/,
  );
});
