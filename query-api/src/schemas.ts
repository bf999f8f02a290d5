import { STATUS_CODES } from 'node:http';
import { Type, type TSchema } from '@sinclair/typebox';
import { CRASH_ID_PATTERN, CrashEventSchema, DUMP_STATUSES, type CrashEvent } from '@podmortem/contract';

// Schemas shared by the routes, and the answers the CLI reads too (it derives its types from them).
// Every identifier a route takes is bounded by a pattern that admits no path separator, no dot-dot
// and no NUL, so a bad one is a 400 before any handler runs.

export const NAMESPACE_PATTERN = '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$';
/** DNS subdomain (RFC 1123), without consecutive dots. */
export const POD_PATTERN = '^(?!.*\\.\\.)[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$';
export const CONTAINER_PATTERN = NAMESPACE_PATTERN;
export const UID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
export const NODE_PATTERN = '^(?!.*\\.\\.)[A-Za-z0-9]([-A-Za-z0-9._]{0,251}[A-Za-z0-9])?$';
export const SIGNAL_PATTERN = '^(SIG[A-Z0-9+]{1,12}|[A-Z][A-Z0-9+]{1,11}|[0-9]{1,3})$';

export const Namespace = Type.String({ pattern: NAMESPACE_PATTERN, maxLength: 63, description: 'Namespace' });
export const PodName = Type.String({ pattern: POD_PATTERN, maxLength: 253, description: 'Pod name' });
export const ContainerName = Type.String({
  pattern: CONTAINER_PATTERN,
  maxLength: 63,
  description: 'Container name',
});
export const PodUid = Type.String({ pattern: UID_PATTERN, description: 'Pod UID' });
export const CrashId = Type.String({ pattern: CRASH_ID_PATTERN, description: 'Crash id (UUIDv7)' });
export const DateTime = Type.String({ format: 'date-time', maxLength: 64 });

export const CrashIdParams = Type.Object({ id: CrashId }, { additionalProperties: false });

export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer(),
    code: Type.String({ description: 'PM_ERR_* code' }),
    error: Type.String({ description: 'HTTP reason phrase' }),
    message: Type.String({ description: 'What is wrong, naming the parameter or resource' }),
  },
  { $id: 'Error', title: 'Error' },
);
export const ErrorRef = Type.Ref('Error');

function stripped(schema: unknown, dropRequired: boolean): unknown {
  if (Array.isArray(schema)) return schema.map((s) => stripped(s, dropRequired));
  if (typeof schema !== 'object' || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === '$id' || (dropRequired && k === 'required')) continue;
    out[k] = stripped(v, dropRequired);
  }
  return out;
}

/** The crash event of the contract, registered once as a shared schema (component). */
export const CrashEventComponent = {
  ...(stripped(CrashEventSchema, false) as TSchema),
  $id: 'CrashEvent',
  title: 'CrashEvent',
};
// Typed references: a bare Type.Ref('…') is `unknown` to Static, the handlers' and the CLI's types.
export const CrashEventRef = Type.Unsafe<CrashEvent>(Type.Ref('CrashEvent'));

/** A crash event of which only the selected `fields` may be present. */
export const PartialCrashEventComponent = {
  ...(stripped(CrashEventSchema, true) as TSchema),
  $id: 'CrashEventFields',
  title: 'CrashEventFields',
  description: 'A crash event, or the part of it chosen with `fields`',
};
export const PartialCrashEventRef = Type.Unsafe<Partial<CrashEvent>>(Type.Ref('CrashEventFields'));

export const DumpStatus = Type.Unsafe<(typeof DUMP_STATUSES)[number]>({
  type: 'string',
  enum: [...DUMP_STATUSES],
});

/** The answer of GET /v1/crashes. */
export const SearchResponse = Type.Object({
  items: Type.Array(PartialCrashEventRef),
  next_cursor: Type.Union([Type.String(), Type.Null()], {
    description: 'Pass as `cursor` for the next page; null on the last page',
  }),
});

const Series = Type.Object({
  name: Type.String({ description: 'memory, cpu, restarts or oom_kills' }),
  query: Type.String({ description: 'The PromQL sent' }),
  series: Type.Array(
    Type.Object({
      metric: Type.Record(Type.String(), Type.String()),
      values: Type.Array(Type.Tuple([Type.Number(), Type.String()]), {
        description: '[unix seconds, value]',
      }),
    }),
  ),
});

/** The answer of GET /v1/crashes/{id}/context. */
export const ContextResponse = Type.Object({
  crash: Type.Object({
    id: Type.String(),
    timestamp: Type.String(),
    namespace: Type.Optional(Type.String()),
    pod: Type.Optional(Type.String()),
    pod_uid: Type.Optional(Type.String()),
    container: Type.Optional(Type.String()),
    node: Type.Optional(Type.String()),
  }),
  window: Type.Object({ from: Type.String(), to: Type.String(), step_seconds: Type.Integer() }),
  metrics: Type.Array(Series),
  logs: Type.Object({
    index: Type.String(),
    lines: Type.Array(Type.Object({ timestamp: Type.String(), message: Type.String() })),
  }),
  other_crashes: Type.Array(PartialCrashEventRef),
  links: Type.Object({ grafana: Type.Optional(Type.String()), kibana: Type.Optional(Type.String()) }),
  errors: Type.Array(Type.Object({ source: Type.String(), message: Type.String() })),
});

const errorDescriptions: Record<number, string> = {
  400: 'A parameter is not valid (the message names it)',
  401: 'No bearer token, or not a valid one',
  403: 'The caller may not do this (RBAC on coredumps.podmortem.io)',
  404: 'Not found, or not visible to the caller',
  410: 'The dump was removed from storage by retention',
  416: 'The byte range lies outside the dump',
  422: 'The stored crash is not a valid crash event',
  429: 'Rate limit of the caller exceeded',
  503: 'A backend (Elasticsearch, the Kubernetes API) is unavailable; retry later',
};

/** Standard error responses of authenticated routes. */
export function errorResponses(...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const s of [400, 401, 429, 503, ...statuses])
    out[s] = Type.Ref('Error', { description: errorDescriptions[s] ?? STATUS_CODES[s] ?? 'Error' });
  return out;
}
