import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { CrashStore } from './crash-store.ts';
import type { StorageReader } from './storage-reader.ts';

// /healthz (the process answers) and /readyz (Elasticsearch and the storage root are there): no
// authentication and no rate limit, for the kubelet's probes. /metrics is not on this port: it
// names namespaces, so it is served by the ops server on a port of its own (main.ts).

export interface HealthDeps {
  crashes: CrashStore;
  storage: StorageReader;
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

  done();
};
