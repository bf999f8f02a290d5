import { crashMappings } from '@podmortem/contract';
import { PM_ERR_BAD_PARAMETER } from './errors.ts';
import type { SortValues } from './cursor.ts';

// Search parameters → the Elasticsearch query. Every filter is a term (or prefix) clause on the
// keyword fields of the crash index; free text goes to simple_query_string, which never fails on
// syntax. The namespace scope of the caller is always part of the filter.

export interface CrashFilters {
  namespace?: string | undefined;
  pod?: string | undefined;
  pod_uid?: string | undefined;
  container?: string | undefined;
  node?: string | undefined;
  image?: string | undefined;
  signal?: string | undefined;
  executable?: string | undefined;
  signature?: string | undefined;
  status?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  q?: string | undefined;
}

/** The namespaces a caller may see: every one (cluster-wide rights), or a list. */
export type NamespaceScope = { all: true } | { all: false; namespaces: string[] };

export const SORT = [{ '@timestamp': { order: 'desc' } }, { 'crash.id': { order: 'desc' } }] as const;

const textFields = [
  'process.executable.text',
  'process.args.text',
  'analysis.signature.text',
  'analysis.title.text',
  'dump.reason.text',
  'process.name',
  'kubernetes.pod.name',
  'kubernetes.container.name',
  'container.image.name',
];

type Clause = Record<string, unknown>;

function escapeWildcard(value: string): string {
  return value.replace(/[\\*?]/g, (c) => `\\${c}`);
}

export function signalClause(signal: string): Clause {
  if (/^[0-9]+$/.test(signal)) return { term: { 'signal.number': Number(signal) } };
  return { term: { 'signal.name': signal.startsWith('SIG') ? signal : `SIG${signal}` } };
}

/** Parses the time bounds; `to` before `from` is an error naming `to`. */
export function timeBounds(filters: Pick<CrashFilters, 'from' | 'to'>): { from?: number; to?: number } {
  const out: { from?: number; to?: number } = {};
  for (const key of ['from', 'to'] as const) {
    const raw = filters[key];
    if (raw === undefined) continue;
    const ms = Date.parse(raw);
    if (Number.isNaN(ms)) throw PM_ERR_BAD_PARAMETER(`querystring/${key}`, 'must be an RFC 3339 date-time');
    out[key] = ms;
  }
  if (out.from !== undefined && out.to !== undefined && out.to < out.from)
    throw PM_ERR_BAD_PARAMETER('querystring/to', 'must not be before querystring/from');
  return out;
}

export function filterClauses(filters: CrashFilters, scope: NamespaceScope): Clause[] {
  const f: Clause[] = [];
  if (!scope.all) f.push({ terms: { 'kubernetes.namespace': scope.namespaces } });
  const term = (field: string, value: string | undefined) => {
    if (value !== undefined) f.push({ term: { [field]: value } });
  };
  term('kubernetes.namespace', filters.namespace);
  term('kubernetes.pod.name', filters.pod);
  term('kubernetes.pod.uid', filters.pod_uid);
  term('kubernetes.container.name', filters.container);
  term('kubernetes.node.name', filters.node);
  term('analysis.signature', filters.signature);
  term('dump.status', filters.status);
  if (filters.image !== undefined) {
    // A reference with or without its tag or digest: `registry/app` finds `registry/app:1.2`.
    f.push({
      bool: {
        should: [
          { term: { 'container.image.name': filters.image } },
          { prefix: { 'container.image.name': `${filters.image}:` } },
          { prefix: { 'container.image.name': `${filters.image}@` } },
        ],
        minimum_should_match: 1,
      },
    });
  }
  if (filters.executable !== undefined) {
    // A full path, or a program name matching the last segment of the path.
    f.push({
      bool: {
        should: [
          { term: { 'process.executable': filters.executable } },
          { wildcard: { 'process.executable': { value: `*/${escapeWildcard(filters.executable)}` } } },
        ],
        minimum_should_match: 1,
      },
    });
  }
  if (filters.signal !== undefined) f.push(signalClause(filters.signal));
  const { from, to } = timeBounds(filters);
  if (from !== undefined || to !== undefined) {
    const range: Record<string, unknown> = { format: 'epoch_millis' };
    if (from !== undefined) range.gte = from;
    if (to !== undefined) range.lte = to;
    f.push({ range: { '@timestamp': range } });
  }
  return f;
}

export function crashQuery(filters: CrashFilters, scope: NamespaceScope): Clause {
  const must: Clause[] = [];
  if (filters.q !== undefined && filters.q.trim() !== '') {
    must.push({
      simple_query_string: { query: filters.q, fields: textFields, default_operator: 'and', lenient: true },
    });
  }
  return { bool: { filter: filterClauses(filters, scope), must } };
}

function fieldPaths(props: Record<string, unknown>, prefix: string, out: string[]): string[] {
  for (const [name, def] of Object.entries(props)) {
    const path = prefix + name;
    out.push(path);
    const sub = (def as { properties?: Record<string, unknown> }).properties;
    if (sub) fieldPaths(sub, `${path}.`, out);
  }
  return out;
}

/** Every field (and object) of the crash event that `fields` may name. */
export const SELECTABLE_FIELDS: ReadonlySet<string> = new Set(fieldPaths(crashMappings.properties, '', []));

/** Parses `fields=a,b.c`; unknown names are a 400 naming them. Id and time are always kept. */
export function parseFields(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const unknown = names.filter((n) => !SELECTABLE_FIELDS.has(n));
  if (unknown.length > 0)
    throw PM_ERR_BAD_PARAMETER('querystring/fields', `names unknown fields: ${unknown.join(', ')}`);
  if (names.length === 0) throw PM_ERR_BAD_PARAMETER('querystring/fields', 'names no field');
  return [...new Set(['crash.id', '@timestamp', ...names])];
}

export interface SearchRequest {
  filters: CrashFilters;
  scope: NamespaceScope;
  limit: number;
  after?: SortValues | undefined;
  fields?: string[] | undefined;
}

/** The body of the search: one more hit than the page, to know whether there is a next page. */
export function searchBody(req: SearchRequest) {
  return {
    query: crashQuery(req.filters, req.scope),
    sort: SORT.map((s) => ({ ...s })),
    size: req.limit + 1,
    track_total_hits: false,
    ...(req.after ? { search_after: req.after } : {}),
    ...(req.fields ? { _source: { includes: req.fields } } : {}),
  };
}
