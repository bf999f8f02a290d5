import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

// The CLI's side of the API: where it is, who the caller is, and errors mapped to exit codes
// that scripts can rely on.

/** Exit codes of `podmortem` (documented in its --help). */
export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  notFound: 3,
  auth: 4,
  verification: 5,
  /** The API (or what it reads) is unreachable, overloaded or starting: worth trying again. */
  unavailable: 6,
} as const;

export class CliError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number, message: string) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export function exitCodeForStatus(status: number): number {
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404 || status === 410) return EXIT.notFound;
  if (status === 400 || status === 416) return EXIT.usage;
  if (status === 429 || status === 502 || status === 503 || status === 504) return EXIT.unavailable;
  return EXIT.error;
}

export interface Credentials {
  server: string;
  token: string | undefined;
}

/**
 * The API address and token: flags first, then PODMORTEM_SERVER / PODMORTEM_TOKEN, then the
 * token of the current kubeconfig context (token, token file or exec plugin).
 */
export async function resolveCredentials(
  flags: { server?: string | undefined; token?: string | undefined; kubeconfig?: string | undefined },
  env: Record<string, string | undefined> = process.env,
): Promise<Credentials> {
  const server = flags.server ?? env.PODMORTEM_SERVER;
  if (!server) throw new CliError(EXIT.usage, 'no API address: pass --server URL or set PODMORTEM_SERVER');
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new CliError(EXIT.usage, `--server ${server} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new CliError(EXIT.usage, `--server ${server}: http or https only`);
  const token = flags.token ?? env.PODMORTEM_TOKEN ?? (await kubeconfigToken(flags.kubeconfig, env));
  return { server: server.replace(/\/+$/, ''), token };
}

async function kubeconfigToken(
  file: string | undefined,
  env: Record<string, string | undefined>,
): Promise<string | undefined> {
  const path =
    file ?? env.KUBECONFIG?.split(delimiter)[0] ?? (env.HOME ? join(env.HOME, '.kube', 'config') : undefined);
  if (path === undefined || path === '' || !existsSync(path)) return undefined;
  // Loaded only when a kubeconfig is used: the library is large, and most runs pass a token.
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(path);
  } catch (err) {
    throw new CliError(EXIT.usage, `kubeconfig ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const user = kc.getCurrentUser();
  if (!user) return undefined;
  if (user.token) return user.token;
  if (user.authProvider === undefined && user.exec === undefined) return undefined;
  // Exec plugins and auth providers: the client library runs them (token files are read on load).
  const opts: { headers?: Record<string, string> } = {};
  try {
    await kc.applyToHTTPSOptions(opts);
  } catch (err) {
    throw new CliError(EXIT.auth, `kubeconfig ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const auth = opts.headers?.Authorization;
  return auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined;
}

export class ApiClient {
  private readonly creds: Credentials;

  constructor(creds: Credentials) {
    this.creds = creds;
  }

  /** The API's address, without a trailing slash. */
  get server(): string {
    return this.creds.server;
  }

  /** The Authorization header this client sends, when it has a token. */
  authorization(): string | undefined {
    return this.creds.token ? `Bearer ${this.creds.token}` : undefined;
  }

  url(path: string, query: Record<string, string | number | undefined> = {}): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return `${this.creds.server}${path}${qs ? `?${qs}` : ''}`;
  }

  async fetch(path: string, query: Record<string, string | number | undefined> = {}, init: RequestInit = {}) {
    const headers = new Headers(init.headers);
    const authorization = this.authorization();
    if (authorization) headers.set('authorization', authorization);
    let res: Response;
    try {
      res = await fetch(this.url(path, query), { ...init, headers });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
      throw new CliError(EXIT.unavailable, `cannot reach ${this.creds.server}${cause}`);
    }
    if (!res.ok) {
      const text = await res.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        // Not our JSON error (a proxy's page): the text as it is.
      }
      const hint =
        res.status === 401 && !this.creds.token ? ' (no token: pass --token or set PODMORTEM_TOKEN)' : '';
      throw new CliError(exitCodeForStatus(res.status), `${res.status} ${message}${hint}`);
    }
    return res;
  }

  async json<T>(
    path: string,
    query: Record<string, string | number | undefined> = {},
    init: RequestInit = {},
  ): Promise<T> {
    const res = await this.fetch(path, query, init);
    return (await res.json()) as T;
  }
}
