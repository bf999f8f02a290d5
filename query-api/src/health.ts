import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { Registry } from 'prom-client';
import type { CrashStore } from './crash-store.ts';
import type { StorageReader } from './storage-reader.ts';

// /healthz (the process answers), /readyz (Elasticsearch and the storage root are there) and
// /metrics (Prometheus text format). No authentication and no rate limit: probes and scrapers.

export interface HealthDeps {
  crashes: CrashStore;
  storage: StorageReader;
  registry: Registry;
}

const open = { security: [], tags: ['ops'] };

export const healthRoutes: FastifyPluginCallbackTypebox<HealthDeps> = (app, deps, done) => {
  app.get(
    '/healthz',
    {
      schema: {
        ...open,
        summary: 'Liveness: the process answers',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    () => ({ status: 'ok' as const }),
  );

  const Ready = Type.Object({
    ready: Type.Boolean(),
    elasticsearch: Type.Boolean(),
    storage: Type.Boolean(),
  });
  app.get(
    '/readyz',
    {
      schema: {
        ...open,
        summary: 'Readiness: Elasticsearch answers and the storage root is mounted',
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_request, reply) => {
      const [elasticsearch, storage] = await Promise.all([deps.crashes.ready(), deps.storage.ready()]);
      const ready = elasticsearch && storage;
      return reply.code(ready ? 200 : 503).send({ ready, elasticsearch, storage });
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        ...open,
        summary: 'Self-telemetry in the Prometheus text format',
        response: {
          200: {
            description: 'Prometheus exposition format',
            content: { 'text/plain': { schema: Type.String() } },
          },
        },
      },
    },
    async (_request, reply) => {
      const text = await deps.registry.metrics();
      return reply.type(deps.registry.contentType).send(text);
    },
  );
  done();
};
