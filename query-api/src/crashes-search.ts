import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { callerOf } from './crash-get.ts';
import { CURSOR_PATTERN, decodeCursor, encodeCursor } from './cursor.ts';
import type { RouteDeps } from './route-deps.ts';
import {
  ContainerName,
  DateTime,
  DumpStatus,
  Namespace,
  NODE_PATTERN,
  PodName,
  PodUid,
  SearchResponse,
  SIGNAL_PATTERN,
  errorResponses,
} from './schemas.ts';
import { parseFields } from './search-query.ts';

// GET /v1/crashes: search, newest first, with cursor paging over search_after. Only the
// namespaces the caller may list are searched.

export function searchQuerystring(maxPageSize: number) {
  return Type.Object(
    {
      namespace: Type.Optional(Namespace),
      pod: Type.Optional(PodName),
      pod_uid: Type.Optional(PodUid),
      container: Type.Optional(ContainerName),
      node: Type.Optional(Type.String({ pattern: NODE_PATTERN, maxLength: 253, description: 'Node name' })),
      image: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 1024,
          description: 'Image reference; without a tag or digest it matches every tag and digest',
        }),
      ),
      signal: Type.Optional(
        Type.String({ pattern: SIGNAL_PATTERN, description: 'Signal name (SIGSEGV or SEGV) or number' }),
      ),
      executable: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 4096,
          description: 'Executable path, or a program name matching the last part of the path',
        }),
      ),
      signature: Type.Optional(
        Type.String({ minLength: 1, maxLength: 1024, description: 'Crash signature' }),
      ),
      status: Type.Optional({ ...DumpStatus, description: 'Dump status' }),
      from: Type.Optional({ ...DateTime, description: 'Crashes at or after this time (RFC 3339)' }),
      to: Type.Optional({ ...DateTime, description: 'Crashes at or before this time (RFC 3339)' }),
      q: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 256,
          description: 'Free text over executable, arguments, signature, title, reason, pod and image',
        }),
      ),
      limit: Type.Optional(
        Type.Integer({ minimum: 1, maximum: maxPageSize, default: 50, description: 'Page size' }),
      ),
      cursor: Type.Optional(
        Type.String({ pattern: CURSOR_PATTERN, description: 'next_cursor of the previous page' }),
      ),
      fields: Type.Optional(
        Type.String({
          pattern: '^[A-Za-z0-9@_.,]{1,2048}$',
          description: 'Comma-separated fields to return (crash.id and @timestamp always come)',
        }),
      ),
    },
    { additionalProperties: false },
  );
}

export const crashesSearchRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  app.get(
    '/crashes',
    {
      schema: {
        tags: ['crashes'],
        summary: 'Search crashes, newest first',
        querystring: searchQuerystring(deps.config.maxPageSize),
        response: { 200: SearchResponse, ...errorResponses(403) },
      },
    },
    async (request) => {
      const { limit = 50, cursor, fields, ...filters } = request.query;
      const caller = callerOf(request);
      const after = cursor === undefined ? undefined : decodeCursor(cursor);
      const selected = parseFields(fields);
      const scope = await deps.access.listScope(caller, filters.namespace);
      const hits = await deps.crashes.search({ filters, scope, limit, after, fields: selected });
      const page = hits.slice(0, limit);
      const last = page[page.length - 1];
      const next = hits.length > limit && last?.sort ? encodeCursor(last.sort) : null;
      return { items: page.map((h) => h.event), next_cursor: next };
    },
  );
  done();
};
