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
        { name: 'ops', description: 'Liveness and readiness' },
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
    transformObject: (documentObject) =>
      'openapiObject' in documentObject
        ? asOpenapi31(documentObject.openapiObject)
        : documentObject.swaggerObject,
  };
}

/**
 * The route schemas are draft-07 (what Fastify validates and serializes with), where a tuple is
 * `items: [...]`; OpenAPI 3.1 (JSON Schema 2020-12) does not allow that form. The document gives a
 * tuple as an array of its positions' types (`items: { anyOf }`) of exactly its length: valid in
 * 3.1 and understood by tools that do not know `prefixItems` (schemathesis converts 3.1 schemas
 * to an older draft and refused the `prefixItems` form). Every operation may also be answered 431
 * by Node's HTTP server itself, before any route runs.
 */
function asOpenapi31<T extends object>(document: T): T {
  const doc = tuplesAsArrays(document) as T & { paths?: Record<string, Record<string, unknown>> };
  for (const methods of Object.values(doc.paths ?? {})) {
    for (const op of Object.values(methods)) {
      const responses = (op as { responses?: Record<string, unknown> }).responses;
      if (responses && !('431' in responses))
        responses['431'] = {
          description: 'Request header fields too large (answered by the HTTP server, no body)',
        };
    }
  }
  return doc;
}

function tuplesAsArrays(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(tuplesAsArrays);
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  const record = node as Record<string, unknown>;
  for (const [key, value] of Object.entries(record)) {
    if (key === 'items' && Array.isArray(value)) {
      out.items = { anyOf: value.map(tuplesAsArrays) };
      out.minItems ??= value.length;
      out.maxItems ??= value.length;
    } else if (key !== 'additionalItems' || !Array.isArray(record.items)) {
      out[key] = tuplesAsArrays(value);
    }
  }
  return out;
}

/** The document in its committed form: sorted nowhere, stamped as generated. */
export function renderOpenapi(document: unknown): string {
  const doc = document as Record<string, unknown>;
  return JSON.stringify({ 'x-generated': GENERATED_NOTE, ...doc }, null, 2) + '\n';
}
