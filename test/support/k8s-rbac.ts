import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  KubeConfig,
  type V1ClusterRole,
  type V1PolicyRule,
  type V1RoleBinding,
} from '@kubernetes/client-node';
import type { KubeObject } from './kustomize.ts';

// Kubernetes RBAC as the API server applies it, over rendered manifests: the request attributes
// of a URL (the API server's request-info rules), whether roles bound to a subject allow them, and
// a proxy that puts that decision in front of the fake API, so the services' real
// @kubernetes/client-node calls meet the rendered ClusterRoles the way they would in a cluster.

export interface ResourceAttributes {
  verb: string;
  /** '' for the core group. */
  group: string;
  resource: string;
  subresource?: string | undefined;
  /** Undefined for cluster-scoped requests. */
  namespace?: string | undefined;
}

export interface Subject {
  kind: 'ServiceAccount' | 'User' | 'Group';
  name: string;
  namespace?: string | undefined;
}

export function describe(a: ResourceAttributes): string {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  return `${a.verb} ${a.group === '' ? 'core' : a.group}/${resource}${a.namespace ? ` in ${a.namespace}` : ''}`;
}

/** The attributes the API server derives from a request for a resource (not for /version etc.). */
export function requestAttributes(method: string, url: URL): ResourceAttributes | undefined {
  const parts = url.pathname.split('/').filter((p) => p !== '');
  let group: string;
  let rest: string[];
  if (parts[0] === 'api') {
    group = '';
    rest = parts.slice(2);
  } else if (parts[0] === 'apis') {
    group = parts[1] ?? '';
    rest = parts.slice(3);
  } else return undefined;
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resource, name, subresource] = rest;
  if (resource === undefined) return undefined;
  const watching = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
  const verbs: Record<string, string> = {
    GET: name !== undefined ? 'get' : watching ? 'watch' : 'list',
    POST: 'create',
    PUT: 'update',
    PATCH: 'patch',
    DELETE: name !== undefined ? 'delete' : 'deletecollection',
  };
  const verb = verbs[method];
  if (verb === undefined) return undefined;
  return { verb, group, resource, subresource, namespace };
}

function matches(list: string[] | undefined, value: string): boolean {
  return (list ?? []).some((v) => v === '*' || v === value);
}

export function ruleAllows(rule: V1PolicyRule, a: ResourceAttributes): boolean {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resources = rule.resources ?? [];
  const resourceMatches =
    resources.includes('*') ||
    resources.includes(resource) ||
    (a.subresource !== undefined && resources.includes(`*/${a.subresource}`));
  return matches(rule.apiGroups, a.group) && resourceMatches && matches(rule.verbs, a.verb);
}

function bound(binding: V1RoleBinding, subject: Subject): boolean {
  return (binding.subjects ?? []).some(
    (s) =>
      s.kind === subject.kind &&
      s.name === subject.name &&
      (subject.kind !== 'ServiceAccount' || s.namespace === subject.namespace),
  );
}

export interface Grant {
  /** `ClusterRoleBinding x → ClusterRole y`, for messages. */
  via: string;
  /** Undefined: every namespace (a ClusterRoleBinding). */
  namespace: string | undefined;
  /** False when the binding names a role the rendering lacks (it then grants nothing). */
  roleFound: boolean;
  rules: V1PolicyRule[];
}

/** What the bindings in `objects` give `subject`; a binding to a role not rendered gives nothing. */
export function grantsOf(objects: KubeObject[], subject: Subject): Grant[] {
  const roles = (kind: string, namespace: string | undefined) =>
    new Map(
      objects
        .filter((o) => o.kind === kind && o.metadata.namespace === namespace)
        .map((o) => [o.metadata.name, o as unknown as V1ClusterRole]),
    );
  const clusterRoles = roles('ClusterRole', undefined);
  const grants: Grant[] = [];
  for (const o of objects) {
    if (o.kind !== 'ClusterRoleBinding' && o.kind !== 'RoleBinding') continue;
    const binding = o as unknown as V1RoleBinding;
    if (!bound(binding, subject)) continue;
    const namespace = o.kind === 'RoleBinding' ? o.metadata.namespace : undefined;
    const role =
      binding.roleRef.kind === 'ClusterRole'
        ? clusterRoles.get(binding.roleRef.name)
        : roles('Role', namespace).get(binding.roleRef.name);
    grants.push({
      via: `${o.kind} ${o.metadata.name} → ${binding.roleRef.kind} ${binding.roleRef.name}`,
      namespace,
      roleFound: role !== undefined,
      rules: role?.rules ?? [],
    });
  }
  return grants;
}

export function allows(grants: Grant[], a: ResourceAttributes): boolean {
  return grants.some(
    (g) =>
      (g.namespace === undefined || g.namespace === a.namespace) && g.rules.some((r) => ruleAllows(r, a)),
  );
}

export interface ProxiedRequest {
  attributes: ResourceAttributes;
  allowed: boolean;
  /** The JSON body of a create (the reviews the query API sends). */
  body?: unknown;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * An API endpoint that authorises every request as `subject` against the rendered roles (403, as
 * the API server answers, when they do not allow it) and passes allowed ones on to `target`.
 */
export class RbacProxy {
  readonly requests: ProxiedRequest[] = [];
  private readonly server: Server;
  private readonly target: { url: string; token: string };
  private readonly grants: Grant[];

  private constructor(target: { url: string; token: string }, grants: Grant[]) {
    this.target = target;
    this.grants = grants;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        res.writeHead(502).end(String(err));
      });
    });
  }

  static async start(target: { url: string; token: string }, grants: Grant[]): Promise<RbacProxy> {
    const proxy = new RbacProxy(target, grants);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'proxy', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'service-account', token: 'the-service-account-token' }],
      contexts: [{ name: 'proxy', cluster: 'proxy', user: 'service-account' }],
      currentContext: 'proxy',
    });
    return kc;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', this.url);
    const attributes = requestAttributes(method, url);
    const body = await readBody(req);
    if (!attributes) {
      res.writeHead(404).end();
      return;
    }
    const allowed = allows(this.grants, attributes);
    this.requests.push({
      attributes,
      allowed,
      ...(method === 'POST' && body.length > 0 ? { body: JSON.parse(body.toString('utf8')) as unknown } : {}),
    });
    if (!allowed) {
      res.writeHead(403, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          reason: 'Forbidden',
          code: 403,
          message: `forbidden: ${describe(attributes)}`,
        }),
      );
      return;
    }
    const upstream = request(new URL(req.url ?? '/', this.target.url), {
      method,
      headers: {
        ...req.headers,
        host: new URL(this.target.url).host,
        authorization: `Bearer ${this.target.token}`,
      },
    });
    upstream.on('response', (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', (err) => res.destroy(err));
    res.on('close', () => upstream.destroy());
    upstream.end(body);
  }
}
