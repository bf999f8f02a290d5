import { interpolate, type VariableValue } from './template-vars.ts';
import type { EsAnnotation, EsBucketAgg, EsTarget, EsTermsFind } from './dashboard-json.ts';

// The Elasticsearch _search bodies Grafana sends for a panel target, a terms variable and an
// annotation (after Grafana's ElasticQueryBuilder and annotation request), and the rows it reads
// back from bucket aggregations. The tests run these against the real Elasticsearch, so a query
// that Elasticsearch refuses, or that counts the wrong crashes, fails there and not in a
// Grafana nobody can start here.

export interface QueryContext {
  fromMs: number;
  toMs: number;
  /** What `auto` date histogram intervals become (Grafana's `$__interval_ms`). */
  intervalMs: number;
  values: Record<string, VariableValue>;
}

type Body = Record<string, unknown>;

function filters(timeField: string, query: string, ctx: QueryContext): Body[] {
  const out: Body[] = [
    { range: { [timeField]: { gte: ctx.fromMs, lte: ctx.toMs, format: 'epoch_millis' } } },
  ];
  const lucene = interpolate(query, ctx.values, 'lucene');
  if (lucene !== '') out.push({ query_string: { analyze_wildcard: true, query: lucene } });
  return out;
}

function bucketAgg(agg: EsBucketAgg, ctx: QueryContext): Body {
  if (agg.type === 'terms') {
    const order =
      agg.settings.orderBy === '_term' ? { _key: agg.settings.order } : { _count: agg.settings.order };
    const size = Number(agg.settings.size);
    return {
      terms: {
        field: agg.field,
        size: size === 0 ? 500 : size,
        order,
        min_doc_count: Number(agg.settings.min_doc_count),
      },
    };
  }
  const interval = agg.settings.interval === 'auto' ? `${ctx.intervalMs}ms` : agg.settings.interval;
  const calendar = ['1w', '1M', '1q', '1y'].includes(interval);
  return {
    date_histogram: {
      field: agg.field,
      min_doc_count: Number(agg.settings.min_doc_count),
      extended_bounds: { min: ctx.fromMs, max: ctx.toMs },
      format: 'epoch_millis',
      [calendar ? 'calendar_interval' : 'fixed_interval']: interval,
    },
  };
}

export function targetSearch(target: EsTarget, ctx: QueryContext): Body {
  const body: Body = { size: 0, query: { bool: { filter: filters(target.timeField, target.query, ctx) } } };
  const documents = target.metrics.find((m) => m.type === 'raw_data');
  if (documents) {
    return {
      ...body,
      size: Number(documents.settings?.size ?? 500),
      sort: [
        { [target.timeField]: { order: 'desc', unmapped_type: 'boolean' } },
        { _doc: { order: 'desc' } },
      ],
      script_fields: {},
    };
  }
  if (target.bucketAggs.length === 0)
    throw new Error(`target ${target.refId}: a count needs bucket aggregations`);
  // Nested in order, the first outermost; count needs no metric aggregation (doc_count).
  let aggs: Body = {};
  for (const agg of [...target.bucketAggs].reverse()) aggs = { [agg.id]: { ...bucketAgg(agg, ctx), aggs } };
  return { ...body, aggs };
}

export function termsVariableSearch(find: EsTermsFind, timeField: string, ctx: QueryContext): Body {
  return {
    size: 0,
    query: { bool: { filter: filters(timeField, find.query ?? '', ctx) } },
    aggs: { '1': { terms: { field: find.field, size: find.size ?? 500, order: { _key: 'asc' } } } },
  };
}

/**
 * The annotation request. Elasticsearch 9 refuses the `from`/`to` range older Grafana sent here;
 * Grafana 12.2.4 and 12.3.2 send `gte`/`lte` (grafana/grafana#113723, #115500). `legacyRange`
 * makes the old request, for the test that shows why the README asks for those versions.
 */
export function annotationSearch(annotation: EsAnnotation, ctx: QueryContext, legacyRange = false): Body {
  const bounds = legacyRange ? { from: ctx.fromMs, to: ctx.toMs } : { gte: ctx.fromMs, lte: ctx.toMs };
  const range = { [annotation.timeField]: { ...bounds, format: 'epoch_millis' } };
  const filter: Body[] = [{ bool: { should: [{ range }], minimum_should_match: 1 } }];
  const lucene = interpolate(annotation.target.query, ctx.values, 'lucene');
  if (lucene !== '') filter.push({ query_string: { query: lucene } });
  return { query: { bool: { filter } }, size: 10_000 };
}

export interface Bucket {
  key: string | number;
  doc_count: number;
  [agg: string]: unknown;
}

/** One row per innermost bucket: the key of each bucket aggregation (by field) and the count. */
export function bucketRows(
  aggregations: Record<string, unknown>,
  bucketAggs: EsBucketAgg[],
): { keys: Record<string, string | number>; count: number }[] {
  const [first, ...rest] = bucketAggs;
  if (!first) return [];
  const agg = aggregations[first.id] as { buckets: Bucket[] } | undefined;
  if (!agg) throw new Error(`no aggregation ${first.id} in the response`);
  const name = first.type === 'terms' ? first.field : first.type;
  return agg.buckets.flatMap((b) => {
    if (rest.length === 0) return [{ keys: { [name]: b.key }, count: b.doc_count }];
    return bucketRows(b, rest).map((r) => ({ keys: { [name]: b.key, ...r.keys }, count: r.count }));
  });
}
