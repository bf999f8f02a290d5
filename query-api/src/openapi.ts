import { fileURLToPath } from 'node:url';
import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger';

// The OpenAPI document is generated from the route schemas by @fastify/swagger. A copy is kept in
// the repository (query-api/openapi.json, for readers and client generators); a test regenerates
// it and fails on any difference. `npm run generate -w query-api` (openapi-app.ts) rewrites it.

export const OPENAPI_FILE = fileURLToPath(new URL('../openapi.json', import.meta.url));

export const GENERATED_NOTE =
  'Generated from the route schemas of query-api/src by `npm run generate -w query-api`; do not edit.';

export function openapiOptions(version: string): FastifyDynamicSwaggerOptions {
  return {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'podmortem query API',
        version,
        description:
          'Find the crashes of Kubernetes pods, download their core dumps, and see what happened around ' +
          'them. Every /v1 route (and /buildid/…) needs `Authorization: Bearer <Kubernetes token>`; access is granted per ' +
          'namespace by RBAC on `coredumps.podmortem.io` (list to search, get to read, get on the `dump` ' +
          'subresource to download).',
      },
      tags: [
        { name: 'crashes', description: 'Search and read crash events' },
        { name: 'dumps', description: 'Download core dumps' },
        { name: 'context', description: 'What happened around a crash' },
        { name: 'groups', description: 'Crashes grouped by signature' },
        { name: 'debuginfod', description: 'Stored modules by build id, on the debuginfod protocol paths' },
        { name: 'ops', description: 'Health and metrics' },
      ],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'A Kubernetes bearer token (TokenReview)' },
        },
      },
      security: [{ bearer: [] }],
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  };
}

/** The document in its committed form: sorted nowhere, stamped as generated. */
export function renderOpenapi(document: unknown): string {
  const doc = document as Record<string, unknown>;
  return JSON.stringify({ 'x-generated': GENERATED_NOTE, ...doc }, null, 2) + '\n';
}
