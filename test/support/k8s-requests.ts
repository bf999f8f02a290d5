import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { pino } from 'pino';
import { PodResolver } from '../../collector/src/agent/pod-resolver.ts';
import { Access } from '../../query-api/src/auth.ts';
import { createKubeReviews, type Caller } from '../../query-api/src/kube-reviews.ts';
import { LoginLimiter } from '../../query-api/src/login-limiter.ts';
import { createTelemetry } from '../../query-api/src/telemetry.ts';
import { FakeKubeApi } from './fake-kube-api.ts';
import { SERVICES, inspectService, type ServiceInRendering, type ServiceName } from './k8s-checks.ts';
import { RbacProxy, grantsOf, type ProxiedRequest, type ResourceAttributes } from './k8s-rbac.ts';
import type { Rendering } from './kustomize.ts';
import { until } from './poll.ts';
import { repoDir } from './stack.ts';

// The Kubernetes API requests the services really make, sent through RBAC evaluated from a
// rendering's roles (test/support/k8s-rbac.ts) to the stand-in API server: for any rendering, the
// kustomize base and overlays (test/k8s-manifests.test.ts) or the Helm chart (test/helm.test.ts).

const silent = pino({ level: 'silent' });

export function inspect(r: Rendering, service: ServiceName): ServiceInRendering {
  const s = inspectService(r, service);
  if (typeof s === 'string') throw new Error(s);
  return s;
}

export function inspectAll(r: Rendering): ServiceInRendering[] {
  return SERVICES.map((spec) => inspect(r, spec.service));
}

function serviceAccountGrants(r: Rendering, s: ServiceInRendering) {
  const name = s.workload.template.spec?.serviceAccountName ?? 'default';
  return grantsOf(r.objects, { kind: 'ServiceAccount', name, namespace: s.workload.namespace });
}

/**
 * The requests the agent's pod resolver really sends while it lists and starts watching, and reads
 * a namespace.
 */
export async function collectorRequests(r: Rendering): Promise<ProxiedRequest[]> {
  const fake = await FakeKubeApi.start();
  fake.addNamespace('team-a');
  const proxy = await RbacProxy.start(
    { url: fake.url, token: fake.serviceToken },
    serviceAccountGrants(r, inspect(r, 'collector')),
  );
  const resolver = new PodResolver({
    kubeConfig: proxy.kubeConfig(),
    nodeName: 'node-0',
    tombstoneMs: 60_000,
    logger: silent,
  });
  try {
    await resolver.start();
    await until(
      'a watch started, or a request refused',
      () => proxy.requests.some((q) => q.attributes.verb === 'watch' || !q.allowed),
      10_000,
    );
    // A crashed pod's namespace, read for its podmortem.io/capture setting.
    await resolver.namespaceCapture('team-a').catch(() => undefined);
  } finally {
    await resolver.shutdown(Date.now() + 2000);
    await proxy.close();
    await fake.close();
  }
  return proxy.requests;
}

/** The request retention's pass sends for the namespaces, through the client call it makes. */
export async function retentionRequests(r: Rendering): Promise<ProxiedRequest[]> {
  const fake = await FakeKubeApi.start();
  fake.addNamespace('team-a');
  const proxy = await RbacProxy.start(
    { url: fake.url, token: fake.serviceToken },
    serviceAccountGrants(r, inspect(r, 'retention')),
  );
  try {
    await proxy
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .listNamespace()
      .catch(() => undefined);
    return proxy.requests;
  } finally {
    await proxy.close();
    await fake.close();
  }
}

/** The requests the query API's authentication and authorisation really send, for every check it makes. */
export async function queryApiRequests(
  r: Rendering,
): Promise<{ requests: ProxiedRequest[]; caller: Caller | undefined }> {
  const fake = await FakeKubeApi.start();
  fake.addToken('alice-token', { username: 'alice' });
  const proxy = await RbacProxy.start(
    { url: fake.url, token: fake.serviceToken },
    serviceAccountGrants(r, inspect(r, 'query-api')),
  );
  try {
    const reviews = createKubeReviews(proxy.kubeConfig(), { timeoutMs: 5000 });
    const caller = await reviews.reviewToken('alice-token').catch(() => undefined);
    if (caller) {
      const access = new Access({
        reviews,
        telemetry: createTelemetry(undefined, false),
        logger: silent,
        ttlMs: 1000,
        namespaceTtlMs: 1000,
        indexNamespaces: () => Promise.resolve(['team-a']),
        logins: new LoginLimiter({ max: 1000, windowMs: 60_000 }),
      });
      // Every question the API can ask: search in one namespace and across all, read one crash,
      // download and delete its dump, in a namespace and (host processes) cluster-wide. Refusals
      // are expected.
      const asks: (() => Promise<unknown>)[] = [
        () => access.listScope(caller, 'team-a'),
        () => access.listScope(caller),
        () => access.mayRead(caller, 'team-a'),
        () => access.mayRead(caller, 'team-a', 'dump'),
        () => access.mayRead(caller, undefined),
        () => access.mayRead(caller, undefined, 'dump'),
        () => access.mayDeleteDump(caller, 'team-a'),
        () => access.mayDeleteDump(caller, undefined),
      ];
      for (const ask of asks) await ask().catch(() => undefined);
    }
    return { requests: proxy.requests, caller };
  } finally {
    await proxy.close();
    await fake.close();
  }
}

/** The resource attributes of the SubjectAccessReviews sent, as the API server would read them. */
export function accessReviews(requests: ProxiedRequest[]): ResourceAttributes[] {
  return requests
    .filter((q) => q.attributes.resource === 'subjectaccessreviews')
    .map((q) => {
      const spec = (q.body as { spec?: { resourceAttributes?: Record<string, string | undefined> } }).spec;
      const a = spec?.resourceAttributes ?? {};
      return {
        verb: a.verb ?? '',
        group: a.group ?? '',
        resource: a.resource ?? '',
        subresource: a.subresource === '' ? undefined : a.subresource,
        namespace: a.namespace === '' ? undefined : a.namespace,
      };
    });
}

/** The query API's sources name these verbs and subresources in its access checks. */
export function accessLiterals(): { verbs: Set<string>; subresources: Set<string> } {
  const dir = join(repoDir, 'query-api/src');
  const text = readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('\n');
  const all = (re: RegExp) => new Set([...text.matchAll(re)].map((m) => m[1] ?? ''));
  return {
    verbs: all(/\bverb: '([a-z]+)'/g),
    subresources: all(/(?:subresource\??: |mayRead\([^)]*, )'([a-z]+)'/g),
  };
}
