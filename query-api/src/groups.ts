import { Type, type FastifyPluginCallbackTypebox, type Static } from '@fastify/type-provider-typebox';
import type { estypes } from '@elastic/elasticsearch';
import { callerOf } from './crash-get.ts';
import type { CrashStore } from './crash-store.ts';
import { PM_ERR_BAD_PARAMETER, PM_ERR_GROUP_NOT_FOUND } from './errors.ts';
import type { RouteDeps } from './route-deps.ts';
import { DateTime, Namespace, PartialCrashEventRef, errorResponses } from './schemas.ts';
import { filterClauses, timeBounds, type NamespaceScope } from './search-query.ts';

// GET /v1/groups and /v1/groups/{signature}: crashes grouped by the analyzer's signature
// (docs/architecture.md §9), over the namespaces the caller may list. Every figure of a group —
// count, pods, nodes, first and last crash — is computed over the caller's namespaces alone, so
// a signature that also occurs elsewhere shows the caller only their own share of it.

/** Most groups one answer holds. */
export const MAX_GROUPS = 200;
const DEFAULT_RANGE_MS = 7 * 86_400_000;
/** Pod, node and namespace names listed per group (their counts are exact up to PRECISION). */
const NAMES_PER_GROUP = 5;
const PRECISION = 3000;
const DURATION_PATTERN = '^[1-9][0-9]{0,3}[mhd]$';
const unitMs = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

export function durationMs(param: string, value: string): number {
  const m = /^([1-9][0-9]{0,3})([mhd])$/.exec(value);
  if (!m) throw PM_ERR_BAD_PARAMETER(param, 'must be a number and m, h or d (30m, 24h, 7d)');
  return Number(m[1]) * unitMs[m[2] as keyof typeof unitMs];
}

const Names = Type.Object({
  count: Type.Integer({ description: 'Distinct values' }),
  names: Type.Array(Type.String(), { description: `The ${NAMES_PER_GROUP} with the most crashes` }),
});

export const Group = Type.Object({
  signature: Type.String(),
  title: Type.Optional(Type.String({ description: 'The title of the newest crash of the group' })),
  count: Type.Integer({ description: 'Crashes in the time range' }),
  first_seen: Type.String({ description: 'First crash in the time range' }),
  last_seen: Type.String({ description: 'Last crash in the time range' }),
  first_seen_ever: Type.String({ description: 'First crash of all time (in the caller’s namespaces)' }),
  new: Type.Boolean({ description: 'first_seen_ever is within new_within of now' }),
  pods: { ...Names, description: 'Pods by uid (count); pod names (names)' },
  nodes: { ...Names, description: 'Nodes the pods ran on' },
  namespaces: Type.Array(Type.String()),
  example_crash_id: Type.String({ description: 'The newest crash of the group in the time range' }),
});
export type GroupView = Static<typeof Group>;

const windowParams = {
  namespace: Type.Optional(Namespace),
  from: Type.Optional({ ...DateTime, description: 'Crashes at or after this time (RFC 3339)' }),
  to: Type.Optional({ ...DateTime, description: 'Crashes at or before this time (RFC 3339); default now' }),
  new_within: Type.Optional(
    Type.String({
      pattern: DURATION_PATTERN,
      description:
        'A group is new when its first crash is this recent (30m, 24h, 7d); default from the configuration',
    }),
  ),
};

export const GroupsResponse = Type.Object({
  from: Type.String(),
  to: Type.String(),
  new_within: Type.String(),
  groups: Type.Array(Group),
});

export const GroupResponse = Type.Object({
  from: Type.Union([Type.String(), Type.Null()], { description: 'null: from the first crash on' }),
  to: Type.String(),
  new_within: Type.String(),
  group: Group,
  crashes: Type.Array(PartialCrashEventRef, { description: 'The newest crashes of the group' }),
});

interface Bucket {
  key: string;
  doc_count: number;
  first_seen: { value_as_string?: string; value: number | null };
  last_seen: { value_as_string?: string; value: number | null };
  pod_count: { value: number };
  pods: { buckets: { key: string }[] };
  node_count: { value: number };
  nodes: { buckets: { key: string }[] };
  namespaces: { buckets: { key: string }[] };
  latest: {
    hits: { hits: { _source?: { crash?: { id?: string }; analysis?: { title?: string } } }[] };
  };
}

type Clause = estypes.QueryDslQueryContainer;

function groupAggregation(
  size: number,
  sort: 'count' | 'last_seen',
): estypes.AggregationsAggregationContainer {
  const names = (field: string, n = NAMES_PER_GROUP) => ({ terms: { field, size: n } });
  const order: Record<string, estypes.SortOrder>[] =
    sort === 'count'
      ? [{ _count: 'desc' }, { last_seen: 'desc' }]
      : [{ last_seen: 'desc' }, { _count: 'desc' }];
  return {
    terms: { field: 'analysis.signature', size, order },
    aggs: {
      first_seen: { min: { field: '@timestamp' } },
      last_seen: { max: { field: '@timestamp' } },
      pod_count: { cardinality: { field: 'kubernetes.pod.uid', precision_threshold: PRECISION } },
      pods: names('kubernetes.pod.name'),
      node_count: { cardinality: { field: 'kubernetes.node.name', precision_threshold: PRECISION } },
      nodes: names('kubernetes.node.name'),
      namespaces: names('kubernetes.namespace', 20),
      latest: {
        top_hits: {
          size: 1,
          sort: [{ '@timestamp': { order: 'desc' } }],
          _source: { includes: ['crash.id', 'analysis.title'] },
        },
      },
    },
  };
}

const iso = (v: { value: number | null }) => new Date(v.value ?? 0).toISOString();

/** The first crash of each signature over all time, in the scope (and namespace) of the query. */
async function firstSeenEver(
  crashes: CrashStore,
  signatures: string[],
  namespace: string | undefined,
  scope: NamespaceScope,
): Promise<Map<string, number>> {
  if (signatures.length === 0) return new Map();
  const { aggregations } = await crashes.aggregate(
    {
      bool: {
        filter: [...filterClauses({ namespace }, scope), { terms: { 'analysis.signature': signatures } }],
      },
    },
    {
      groups: {
        terms: { field: 'analysis.signature', size: signatures.length },
        aggs: { first: { min: { field: '@timestamp' } } },
      },
    },
  );
  const buckets = (aggregations.groups as { buckets?: { key: string; first: { value: number | null } }[] })
    .buckets;
  return new Map((buckets ?? []).map((b) => [b.key, b.first.value ?? 0]));
}

interface GroupsQuery {
  filter: Clause[];
  namespace: string | undefined;
  scope: NamespaceScope;
  size: number;
  sort: 'count' | 'last_seen';
  newSince: number;
}

async function groupsOf(crashes: CrashStore, q: GroupsQuery): Promise<GroupView[]> {
  const { aggregations } = await crashes.aggregate(
    { bool: { filter: [...q.filter, { exists: { field: 'analysis.signature' } }] } },
    { groups: groupAggregation(q.size, q.sort) },
  );
  const buckets = (aggregations.groups as { buckets?: Bucket[] } | undefined)?.buckets ?? [];
  const first = await firstSeenEver(
    crashes,
    buckets.map((b) => b.key),
    q.namespace,
    q.scope,
  );
  return buckets.map((b) => {
    const latest = b.latest.hits.hits[0]?._source;
    const ever = Math.min(first.get(b.key) ?? Infinity, b.first_seen.value ?? Infinity);
    const title = latest?.analysis?.title;
    return {
      signature: b.key,
      ...(title === undefined ? {} : { title }),
      count: b.doc_count,
      first_seen: iso(b.first_seen),
      last_seen: iso(b.last_seen),
      first_seen_ever: new Date(ever).toISOString(),
      new: ever > q.newSince,
      pods: { count: b.pod_count.value, names: b.pods.buckets.map((p) => p.key) },
      nodes: { count: b.node_count.value, names: b.nodes.buckets.map((n) => n.key) },
      namespaces: b.namespaces.buckets.map((n) => n.key),
      example_crash_id: latest?.crash?.id ?? '',
    };
  });
}

/** Summary fields of the crashes listed with a group (no threads, no modules). */
const CRASH_FIELDS = [
  'crash.id',
  '@timestamp',
  'kubernetes',
  'container',
  'process',
  'signal',
  'dump.status',
  'analysis.status',
  'analysis.signature',
  'analysis.title',
  'collector.node',
];

export const groupsRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  const newWithinOf = (raw: string | undefined) => {
    const value = raw ?? deps.config.groupsNewWithin;
    return { value, ms: durationMs('querystring/new_within', value) };
  };

  app.get(
    '/groups',
    {
      schema: {
        tags: ['groups'],
        summary: 'Crashes grouped by signature, the largest (or latest) groups first',
        querystring: Type.Object(
          {
            ...windowParams,
            from: Type.Optional({
              ...DateTime,
              description: 'Start (RFC 3339); default: 7 days before `to`',
            }),
            new: Type.Optional(Type.Boolean({ description: 'Only the groups that are new' })),
            sort: Type.Optional(
              Type.Union([Type.Literal('count'), Type.Literal('last_seen')], {
                default: 'count',
                description: 'count: most crashes first; last_seen: latest crash first',
              }),
            ),
            limit: Type.Optional(
              Type.Integer({ minimum: 1, maximum: MAX_GROUPS, default: 50, description: 'Groups returned' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: GroupsResponse, ...errorResponses(403) },
      },
    },
    async (request) => {
      const q = request.query;
      const newWithin = newWithinOf(q.new_within);
      const bounds = timeBounds(q);
      const now = Date.now();
      const to = bounds.to ?? now;
      const from = bounds.from ?? to - DEFAULT_RANGE_MS;
      if (from > to)
        throw PM_ERR_BAD_PARAMETER('querystring/from', 'must not be after the default `to` (now)');
      const newSince = now - newWithin.ms;
      const limit = q.limit ?? 50;
      const scope = await deps.access.listScope(callerOf(request), q.namespace);
      // A new group has no crash before newSince: only crashes after it can make one, and the
      // largest groups of those are the candidates.
      const start = q.new === true ? Math.max(from, newSince) : from;
      const filter = filterClauses(
        { namespace: q.namespace, from: new Date(start).toISOString(), to: new Date(to).toISOString() },
        scope,
      );
      const groups =
        start > to
          ? []
          : await groupsOf(deps.crashes, {
              filter,
              namespace: q.namespace,
              scope,
              size: q.new === true ? MAX_GROUPS : limit,
              sort: q.sort ?? 'count',
              newSince,
            });
      return {
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        new_within: newWithin.value,
        groups: (q.new === true ? groups.filter((g) => g.new) : groups).slice(0, limit),
      };
    },
  );

  app.get(
    '/groups/:signature',
    {
      schema: {
        tags: ['groups'],
        summary: 'One group of crashes and its newest crashes',
        params: Type.Object(
          {
            signature: Type.String({
              minLength: 1,
              maxLength: 1024,
              description: 'The signature (URL-encoded)',
            }),
          },
          { additionalProperties: false },
        ),
        querystring: Type.Object(
          {
            ...windowParams,
            from: Type.Optional({ ...DateTime, description: 'Start (RFC 3339); default: the first crash' }),
            limit: Type.Optional(
              Type.Integer({
                minimum: 1,
                maximum: deps.config.maxPageSize,
                default: 20,
                description: 'Crashes listed',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: GroupResponse, ...errorResponses(403, 404) },
      },
    },
    async (request) => {
      const q = request.query;
      const { signature } = request.params;
      const newWithin = newWithinOf(q.new_within);
      const bounds = timeBounds(q);
      const now = Date.now();
      const to = bounds.to ?? now;
      const scope = await deps.access.listScope(callerOf(request), q.namespace);
      const filter = [
        ...filterClauses(
          {
            namespace: q.namespace,
            signature,
            ...(bounds.from === undefined ? {} : { from: new Date(bounds.from).toISOString() }),
            to: new Date(to).toISOString(),
          },
          scope,
        ),
      ];
      const [group] = await groupsOf(deps.crashes, {
        filter,
        namespace: q.namespace,
        scope,
        size: 1,
        sort: 'count',
        newSince: now - newWithin.ms,
      });
      if (!group) throw PM_ERR_GROUP_NOT_FOUND(signature);
      const crashes = await deps.crashes.find({ bool: { filter } }, q.limit ?? 20, CRASH_FIELDS);
      return {
        from: bounds.from === undefined ? null : new Date(bounds.from).toISOString(),
        to: new Date(to).toISOString(),
        new_within: newWithin.value,
        group,
        crashes,
      };
    },
  );
  done();
};
