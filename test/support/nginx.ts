import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { until } from './poll.ts';
import { freePort } from './ports.ts';
import type { TestCertificates } from './tls.ts';

// nginx (Debian's, installed by scripts/debian-deps.sh) as a TLS-terminating proxy with
// authentication in front of an http server: the stack's Elasticsearch has no security of its own
// (x-pack is not in its jars), so a test of https, a CA and credentials talks to this instead.

const run = promisify(execFile);

export interface AuthProxy {
  /** https://127.0.0.1:port: basic authentication against the htpasswd file's users. */
  readonly basicUrl: string;
  /** https://127.0.0.1:port: `Authorization: ApiKey <key>` with the one key it was given. */
  readonly apiKeyUrl: string;
  stop(): Promise<void>;
}

export interface AuthProxyOptions {
  /** Where the proxy forwards to (http://host:port). */
  upstream: string;
  certificates: TestCertificates;
  /** Users of basic authentication, name → password. */
  users: Record<string, string>;
  /** The API key (the encoded id:key) the API-key port accepts. */
  apiKey: string;
  /** The proxy's folder: configuration, htpasswd, logs. */
  dir: string;
}

export function nginxBinary(): string {
  const found = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
  if (!found)
    throw new Error(
      'nginx is not installed (Debian: apt-get install nginx-light; see scripts/debian-deps.sh)',
    );
  return found;
}

async function htpasswd(users: Record<string, string>): Promise<string> {
  const lines: string[] = [];
  for (const [name, password] of Object.entries(users)) {
    const { stdout } = await run('openssl', ['passwd', '-apr1', password]);
    lines.push(`${name}:${stdout.trim()}`);
  }
  return lines.join('\n') + '\n';
}

export async function startAuthProxy(o: AuthProxyOptions): Promise<AuthProxy> {
  const bin = nginxBinary();
  mkdirSync(o.dir, { recursive: true });
  const [basicPort, apiKeyPort] = [await freePort(), await freePort()];
  writeFileSync(join(o.dir, 'htpasswd'), await htpasswd(o.users));
  const asRoot = process.getuid?.() === 0 ? 'user root;' : '';
  const location = `
    location / {
      proxy_pass ${o.upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
    }`;
  const tls = `ssl_certificate ${o.certificates.certFile};
    ssl_certificate_key ${o.certificates.keyFile};`;
  writeFileSync(
    join(o.dir, 'nginx.conf'),
    `${asRoot}
daemon off;
worker_processes 1;
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log ${o.dir}/access.log;
  client_max_body_size 100m;
  client_body_temp_path ${o.dir}/body;
  proxy_temp_path ${o.dir}/proxy;
  fastcgi_temp_path ${o.dir}/fastcgi;
  uwsgi_temp_path ${o.dir}/uwsgi;
  scgi_temp_path ${o.dir}/scgi;
  server {
    listen 127.0.0.1:${basicPort} ssl;
    ${tls}
    auth_basic "podmortem test";
    auth_basic_user_file ${o.dir}/htpasswd;
    ${location}
  }
  server {
    listen 127.0.0.1:${apiKeyPort} ssl;
    ${tls}
    if ($http_authorization != "ApiKey ${o.apiKey}") { return 401; }
    ${location}
  }
}
`,
  );
  const child: ChildProcess = spawn(bin, ['-c', join(o.dir, 'nginx.conf'), '-p', o.dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  let exited = false;
  const gone = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const basicUrl = `https://127.0.0.1:${basicPort}`;
  const apiKeyUrl = `https://127.0.0.1:${apiKeyPort}`;
  await until(
    'nginx to listen',
    async () => {
      if (exited) throw new Error(`nginx exited: ${stderr}`);
      // Its answer, whatever it is (401 without credentials): the TLS port is up.
      return await run('curl', [
        '-s',
        '-o',
        '/dev/null',
        '--cacert',
        o.certificates.caFile,
        `${basicUrl}/`,
      ]).then(
        () => true,
        () => false,
      );
    },
    30_000,
  );
  return {
    basicUrl,
    apiKeyUrl,
    stop: async () => {
      if (!exited) child.kill('SIGTERM');
      await gone;
    },
  };
}
