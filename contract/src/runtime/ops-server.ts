import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Component } from './lifecycle.ts';

// The small HTTP server of services that serve nothing else: /metrics (Prometheus text format),
// /healthz (the process is alive) and /readyz (its dependencies are there).

export interface OpsServerParams {
  host: string;
  port: number;
  registry: Registry;
  ready: () => boolean;
}

export class OpsServer implements Component {
  readonly name = 'ops-server';
  private server: Server | undefined;
  private readonly params: OpsServerParams;

  constructor(params: OpsServerParams) {
    this.params = params;
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? this.params.port;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const { registry, ready } = this.params;
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET') {
        res.writeHead(405, { allow: 'GET' }).end();
      } else if (path === '/metrics') {
        registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else if (path === '/readyz') {
        const ok = ready();
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ ready: ok }));
      } else {
        res.writeHead(404).end();
      }
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.params.port, this.params.host, resolve);
    });
  }

  async shutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
