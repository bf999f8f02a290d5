import { ELASTICSEARCH, TIME_FIELD } from './datasources.ts';
import type { EsAnnotation, EsBucketAgg, EsTarget, EsTermsFind, QueryVariable } from './dashboard-json.ts';
import { queryVariable } from './dashboard.ts';

// Elasticsearch queries as Grafana stores them: a Lucene query string, metrics and bucket
// aggregations (applied in order, the first outermost), over the crash alias.

export interface TermsBy {
  field: string;
  size: number;
}

/** Terms buckets, biggest first; a panel's terms come before its date histogram. */
function terms(by: TermsBy, id: string): EsBucketAgg {
  return {
    id,
    type: 'terms',
    field: by.field,
    settings: { size: String(by.size), order: 'desc', orderBy: '_count', min_doc_count: '1' },
  };
}

function dateHistogram(id: string, interval = 'auto'): EsBucketAgg {
  return {
    id,
    type: 'date_histogram',
    field: TIME_FIELD,
    settings: { interval, min_doc_count: '0', trimEdges: '0' },
  };
}

/** Crashes counted per bucket: by terms, then (for time series) per interval. */
export function esCount(
  query: string,
  params: { by?: TermsBy[]; overTime?: boolean; interval?: string; refId?: string } = {},
): EsTarget {
  const aggs = (params.by ?? []).map((by, i) => terms(by, String(i + 2)));
  if (params.overTime) aggs.push(dateHistogram(String(aggs.length + 2), params.interval));
  return {
    refId: params.refId ?? 'A',
    datasource: ELASTICSEARCH,
    query,
    alias: '',
    metrics: [{ id: '1', type: 'count' }],
    bucketAggs: aggs,
    timeField: TIME_FIELD,
  };
}

/** The newest matching crash documents themselves. */
export function esDocuments(query: string, size: number): EsTarget {
  return {
    refId: 'A',
    datasource: ELASTICSEARCH,
    query,
    alias: '',
    metrics: [{ id: '1', type: 'raw_data', settings: { size: String(size) } }],
    bucketAggs: [],
    timeField: TIME_FIELD,
  };
}

/** A variable holding the values of one keyword field among the crashes in the time range. */
export function esTermsVariable(params: {
  name: string;
  label: string;
  field: string;
  query?: string;
  multi: boolean;
}): QueryVariable {
  const find: EsTermsFind = { find: 'terms', field: params.field };
  if (params.query !== undefined) find.query = params.query;
  return queryVariable({
    datasource: ELASTICSEARCH,
    name: params.name,
    label: params.label,
    query: JSON.stringify(find),
    // An unformatted match-anything, instead of every value OR-ed into the query.
    ...(params.multi ? { allValue: '*' } : {}),
  });
}

/** Crashes as annotations: a marker per crash, its process as the text, its signal as the tag. */
export function esCrashAnnotation(name: string, query: string): EsAnnotation {
  return {
    name,
    datasource: ELASTICSEARCH,
    enable: true,
    iconColor: 'red',
    target: { refId: 'Anno', query },
    timeField: TIME_FIELD,
    textField: 'process.executable',
    tagsField: 'signal.name',
  };
}
