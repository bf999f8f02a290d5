import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { callerOf } from './crash-get.ts';
import { PM_ERR_BAD_PARAMETER } from './errors.ts';
import type { RouteDeps } from './route-deps.ts';
import { DateTime, Namespace, errorResponses } from './schemas.ts';
import { filterClauses, timeBounds } from './search-query.ts';

// GET /v1/stats: crash counts by namespace, signal, signature and dump status, and over time,
// for a time range — over the namespaces the caller may list.

const DEFAULT_RANGE_MS = 7 * 86_400_000;
const MAX_BUCKETS = 2000;
const unitMs = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const autoIntervals = ['1m', '5m', '15m', '1h', '3h', '12h', '1d', '7d'];

export function intervalMs(interval: string): number {
  const m = /^([1-9][0-9]{0,3})([mhd])$/.exec(interval);
  if (!m) throw PM_ERR_BAD_PARAMETER('querystring/interval', 'must be a number and m, h or d (15m, 1h, 1d)');
  return Number(m[1]) * unitMs[m[2] as keyof typeof unitMs];
}

/** The smallest of the usual intervals that gives at most ~200 buckets over the range. */
export function autoInterval(rangeMs: number): string {
  return autoIntervals.find((i) => rangeMs / intervalMs(i) <= 200) ?? '7d';
}

const Buckets = Type.Array(Type.Object({ key: Type.String(), count: Type.Integer() }));

export const StatsResponse = Type.Object({
  from: Type.String(),
  to: Type.String(),
  interval: Type.String(),
  total: Type.Integer(),
  by_namespace: Buckets,
  by_signal: Buckets,
  by_signature: Buckets,
  by_status: Buckets,
  over_time: Type.Array(Type.Object({ time: Type.String(), count: Type.Integer() })),
});

interface TermsAgg {
  buckets?: { key: string | number; doc_count: number }[];
}
interface HistogramAgg {
  buckets?: { key: number; doc_count: number }[];
}

export const statsRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  app.get(
    '/stats',
    {
      schema: {
        tags: ['crashes'],
        summary: 'Crash counts by namespace, signal, signature and status, and over time',
        querystring: Type.Object(
          {
            from: Type.Optional({
              ...DateTime,
              description: 'Start (RFC 3339); default: 7 days before `to`',
            }),
            to: Type.Optional({ ...DateTime, description: 'End (RFC 3339); default: now' }),
            namespace: Type.Optional(Namespace),
            interval: Type.Optional(
              Type.String({
                pattern: '^[1-9][0-9]{0,3}[mhd]$',
                description: 'Histogram interval (15m, 1h, 1d); default chosen from the range',
              }),
            ),
            top: Type.Optional(
              Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'Buckets per breakdown' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: StatsResponse, ...errorResponses(403) },
      },
    },
    async (request) => {
      const q = request.query;
      const bounds = timeBounds(q);
      const to = bounds.to ?? Date.now();
      const from = bounds.from ?? to - DEFAULT_RANGE_MS;
      if (from > to)
        throw PM_ERR_BAD_PARAMETER('querystring/from', 'must not be after the default `to` (now)');
      const interval = q.interval ?? autoInterval(to - from);
      if ((to - from) / intervalMs(interval) > MAX_BUCKETS)
        throw PM_ERR_BAD_PARAMETER(
          'querystring/interval',
          `gives more than ${MAX_BUCKETS} buckets over the range`,
        );
      const scope = await deps.access.listScope(callerOf(request), q.namespace);
      const query = {
        bool: {
          filter: filterClauses(
            {
              namespace: q.namespace,
              from: new Date(from).toISOString(),
              to: new Date(to).toISOString(),
            },
            scope,
          ),
        },
      };
      const terms = (field: string) => ({ terms: { field, size: q.top ?? 10 } });
      const { total, aggregations } = await deps.crashes.aggregate(query, {
        by_namespace: terms('kubernetes.namespace'),
        by_signal: terms('signal.name'),
        by_signature: terms('analysis.signature'),
        by_status: terms('dump.status'),
        over_time: {
          date_histogram: {
            field: '@timestamp',
            fixed_interval: interval,
            min_doc_count: 0,
            extended_bounds: { min: from, max: to },
          },
        },
      });
      const buckets = (name: string) =>
        ((aggregations[name] as TermsAgg | undefined)?.buckets ?? []).map((b) => ({
          key: String(b.key),
          count: b.doc_count,
        }));
      const overTime = ((aggregations.over_time as HistogramAgg | undefined)?.buckets ?? []).map((b) => ({
        time: new Date(b.key).toISOString(),
        count: b.doc_count,
      }));
      return {
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        interval,
        total,
        by_namespace: buckets('by_namespace'),
        by_signal: buckets('by_signal'),
        by_signature: buckets('by_signature'),
        by_status: buckets('by_status'),
        over_time: overTime,
      };
    },
  );
  done();
};
