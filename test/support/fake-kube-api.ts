import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

// The one fake podmortem allows: no Kubernetes API server can be had here. This small server
// speaks the real JSON shapes of the endpoints podmortem uses — pods (list, get, watch),
// namespaces (list, get) and TokenReview / SubjectAccessReview — so the agent and the query API run their real
// @kubernetes/client-node code against it. It keeps no more logic than those endpoints need.

export interface FakeContainer {
  name: string;
  image: string;
  /** `containerd://<64 hex>` (or cri-o://, docker://), as the kubelet reports it. */
  containerID: string;
  imageID?: string;
}

export interface FakePodSpec {
  namespace: string;
  name: string;
  uid?: string;
  nodeName: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  owner?: { kind: string; name: string };
  containers: FakeContainer[];
}

export interface FakeNamespaceMeta {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface FakeNamespace {
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface FakeUser {
  username: string;
  uid?: string;
  groups?: string[];
}

export interface FakeGrant {
  user: string;
  /** '' grants in every namespace (a cluster-wide role binding). */
  namespace: string;
  verbs: string[];
  group: string;
  resource: string;
  /** Undefined grants the resource itself only; '*' grants every subresource too. */
  subresource?: string;
}

type Pod = ReturnType<typeof podObject>;
type WatchEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: Pod; rv: number };

function podObject(spec: FakePodSpec, uid: string, resourceVersion: number) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: spec.name,
      namespace: spec.namespace,
      uid,
      resourceVersion: String(resourceVersion),
      creationTimestamp: new Date().toISOString(),
      labels: spec.labels ?? {},
      annotations: spec.annotations ?? {},
      ownerReferences: spec.owner
        ? [
            {
              apiVersion: 'apps/v1',
              kind: spec.owner.kind,
              name: spec.owner.name,
              uid: randomUUID(),
              controller: true,
            },
          ]
        : [],
    },
    spec: {
      nodeName: spec.nodeName,
      containers: spec.containers.map((c) => ({ name: c.name, image: c.image })),
    },
    status: {
      phase: 'Running',
      containerStatuses: spec.containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: c.imageID ?? '',
        containerID: c.containerID,
        ready: true,
        restartCount: 0,
        started: true,
        state: { running: { startedAt: new Date().toISOString() } },
      })),
    },
  };
}

function namespaceObject(name: string, ns: FakeNamespace) {
  return {
    metadata: { name, uid: ns.uid, labels: ns.labels, annotations: ns.annotations },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' },
  };
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      reason,
      code,
    }),
  );
}

function json(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
}

export class FakeKubeApi {
  /** The token of the service account podmortem itself runs as: TokenReview and SAR need it. */
  readonly serviceToken = `sa-${randomUUID()}`;
  /** Requests by "METHOD path", for tests of caching. */
  readonly requests = new Map<string, number>();
  private readonly pods = new Map<string, Pod>();
  /** Namespaces by name; only the ones a test added (pods add none). */
  private readonly namespaces = new Map<string, FakeNamespace>();
  private readonly events: WatchEvent[] = [];
  private readonly tokens = new Map<string, FakeUser>();
  private readonly grants: FakeGrant[] = [];
  private readonly watchers = new Set<{ res: ServerResponse; nodeName: string | undefined }>();
  private readonly sockets = new Set<Socket>();
  private resourceVersion = 1;
  private stalled = false;
  private server: Server | undefined;
  private port = 0;

  static async start(): Promise<FakeKubeApi> {
    const api = new FakeKubeApi();
    await api.listen();
    return api;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  kubeConfig(token = this.serviceToken): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromString(this.kubeconfigText(token));
    return kc;
  }

  /** A kubeconfig file for child processes (JSON is YAML). */
  writeKubeconfig(path: string, token = this.serviceToken): string {
    writeFileSync(path, this.kubeconfigText(token), { mode: 0o600 });
    return path;
  }

  private kubeconfigText(token: string): string {
    return JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      // Plain HTTP on loopback: the client allows it only with TLS verification declared off.
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake-user', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake-user' } }],
      'current-context': 'fake',
    });
  }

  addPod(spec: FakePodSpec): Pod {
    const key = `${spec.namespace}/${spec.name}`;
    const existing = this.pods.get(key);
    const pod = podObject(spec, spec.uid ?? existing?.metadata.uid ?? randomUUID(), ++this.resourceVersion);
    this.pods.set(key, pod);
    this.publish({ type: existing ? 'MODIFIED' : 'ADDED', object: pod, rv: this.resourceVersion });
    return pod;
  }

  deletePod(namespace: string, name: string): void {
    const pod = this.pods.get(`${namespace}/${name}`);
    if (!pod) throw new Error(`no pod ${namespace}/${name}`);
    this.pods.delete(`${namespace}/${name}`);
    const gone = { ...pod, metadata: { ...pod.metadata, resourceVersion: String(++this.resourceVersion) } };
    this.publish({ type: 'DELETED', object: gone, rv: this.resourceVersion });
  }

  /**
   * Lists (and gets) the namespace from now on. Adding one already there keeps its uid and, with
   * `meta`, replaces its labels and annotations.
   */
  addNamespace(name: string, meta?: FakeNamespaceMeta): void {
    const existing = this.namespaces.get(name);
    this.namespaces.set(name, {
      uid: existing?.uid ?? randomUUID(),
      labels: meta ? { ...meta.labels } : (existing?.labels ?? {}),
      annotations: meta ? { ...meta.annotations } : (existing?.annotations ?? {}),
    });
    this.resourceVersion++;
  }

  /** The namespace is listed no more, as once Kubernetes has finished deleting it. */
  removeNamespace(name: string): void {
    if (!this.namespaces.delete(name)) throw new Error(`no namespace ${name}`);
    this.resourceVersion++;
  }

  addToken(token: string, user: FakeUser): void {
    this.tokens.set(token, user);
  }

  grant(grant: FakeGrant): void {
    this.grants.push(grant);
  }

  /** Makes the API unreachable: closes the listener and every open connection (watches too). */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * A Kubernetes API that takes connections and requests and never answers them (until
   * `stall(false)`, which leaves the stalled ones unanswered still).
   */
  stall(on = true): void {
    this.stalled = on;
  }

  /** Reachable again, on the same port. */
  async restart(): Promise<void> {
    await this.listen();
  }

  async close(): Promise<void> {
    await this.stop();
  }

  private async listen(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => status(res, 500, 'InternalError', String(err)));
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  private publish(event: WatchEvent): void {
    this.events.push(event);
    for (const w of this.watchers) {
      if (w.nodeName === undefined || event.object.spec.nodeName === w.nodeName) {
        w.res.write(JSON.stringify({ type: event.type, object: event.object }) + '\n');
      }
    }
  }

  private authenticated(req: IncomingMessage): boolean {
    return req.headers.authorization === `Bearer ${this.serviceToken}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const key = `${req.method ?? 'GET'} ${url.pathname}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    if (this.stalled) return;
    if (!this.authenticated(req)) {
      status(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    const path = url.pathname;
    if (req.method === 'GET' && path === '/api/v1/pods') {
      this.listPods(url, res);
      return;
    }
    if (req.method === 'GET' && path === '/api/v1/namespaces') {
      json(res, {
        apiVersion: 'v1',
        kind: 'NamespaceList',
        metadata: { resourceVersion: String(this.resourceVersion) },
        items: [...this.namespaces].map(([name, ns]) => namespaceObject(name, ns)),
      });
      return;
    }
    const namespaceMatch = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && namespaceMatch) {
      const name = decodeURIComponent(namespaceMatch[1] ?? '');
      const ns = this.namespaces.get(name);
      if (ns) json(res, { apiVersion: 'v1', kind: 'Namespace', ...namespaceObject(name, ns) });
      else status(res, 404, 'NotFound', `namespaces "${name}" not found`);
      return;
    }
    const podMatch = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && podMatch) {
      const pod = this.pods.get(`${podMatch[1] ?? ''}/${podMatch[2] ?? ''}`);
      if (pod) json(res, pod);
      else status(res, 404, 'NotFound', `pods "${podMatch[2] ?? ''}" not found`);
      return;
    }
    if (req.method === 'POST' && path === '/apis/authentication.k8s.io/v1/tokenreviews') {
      const body = (await readBody(req)) as { spec?: { token?: string } };
      const user = this.tokens.get(body.spec?.token ?? '');
      json(res, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        metadata: { creationTimestamp: null },
        spec: body.spec ?? {},
        status: user
          ? {
              authenticated: true,
              user: { username: user.username, uid: user.uid ?? user.username, groups: user.groups ?? [] },
            }
          : { authenticated: false, error: 'token not recognised' },
      });
      return;
    }
    if (req.method === 'POST' && path === '/apis/authorization.k8s.io/v1/subjectaccessreviews') {
      const body = (await readBody(req)) as {
        spec?: { user?: string; resourceAttributes?: Record<string, string | undefined> };
      };
      const attrs = body.spec?.resourceAttributes ?? {};
      const allowed = this.grants.some(
        (g) =>
          g.user === body.spec?.user &&
          (g.namespace === '' || g.namespace === (attrs.namespace ?? '')) &&
          g.verbs.includes(attrs.verb ?? '') &&
          g.group === (attrs.group ?? '') &&
          g.resource === (attrs.resource ?? '') &&
          (g.subresource === '*' || (g.subresource ?? '') === (attrs.subresource ?? '')),
      );
      json(res, {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        metadata: { creationTimestamp: null },
        spec: body.spec ?? {},
        status: allowed ? { allowed: true, reason: 'granted by the test' } : { allowed: false },
      });
      return;
    }
    status(res, 404, 'NotFound', `the server could not find the requested resource (${key})`);
  }

  private listPods(url: URL, res: ServerResponse): void {
    const selector = url.searchParams.get('fieldSelector') ?? '';
    const nodeName = /^spec\.nodeName=(.+)$/.exec(selector)?.[1];
    if (selector !== '' && nodeName === undefined) {
      status(res, 400, 'BadRequest', `field selector ${selector} is not supported by the fake`);
      return;
    }
    const onNode = (p: Pod) => nodeName === undefined || p.spec.nodeName === nodeName;
    if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') {
      const since = Number(url.searchParams.get('resourceVersion') ?? '0');
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      for (const e of this.events) {
        if (e.rv > since && onNode(e.object))
          res.write(JSON.stringify({ type: e.type, object: e.object }) + '\n');
      }
      const watcher = { res, nodeName };
      this.watchers.add(watcher);
      res.on('close', () => this.watchers.delete(watcher));
      return;
    }
    json(res, {
      apiVersion: 'v1',
      kind: 'PodList',
      metadata: { resourceVersion: String(this.resourceVersion) },
      items: [...this.pods.values()].filter(onNode),
    });
  }
}
