import { Client, errors as esErrors, type estypes } from '@elastic/elasticsearch';
import { crashIndexForId, type CrashEvent } from '@podmortem/contract';
import {
  ElasticsearchAuthError,
  elasticsearchClientOptions,
  messageOf,
  namingElasticsearchRefusals,
  type Component,
  type ElasticsearchConnection,
  type Logger,
} from '@podmortem/contract/runtime';
import { PM_ERR_BACKEND_UNAVAILABLE } from './errors.ts';
import { sortValuesOf, type SortValues } from './cursor.ts';
import { searchBody, SORT, type SearchRequest } from './search-query.ts';
import type { Telemetry } from './telemetry.ts';

// The crash index as the routes need it. The index is an alias over monthly indices: searches go
// through the alias, and a crash by id is read from the monthly index its id's time names (GET by
// id does not work on an alias of several indices). Missing indices read as empty; an unreachable
// cluster is a 503.

/**
 * The Elasticsearch client of the API: one retry only, so that a caller hears of an unreachable
 * cluster (503) in a moment rather than after the client's long default backoff. A URL alone, or
 * the connection of the API's settings (CA, credentials; see elasticsearchConnection).
 */
export function createElasticsearchClient(
  connection: string | ElasticsearchConnection,
  timeoutMs = 15_000,
): Client {
  const c = typeof connection === 'string' ? { node: connection, credentialVariables: [] } : connection;
  return namingElasticsearchRefusals(
    new Client({ ...elasticsearchClientOptions(c), maxRetries: 1, requestTimeout: timeoutMs }),
    c,
  );
}

/**
 * A start-up component asking Elasticsearch once whether it takes the API's credentials: refused
 * ones fail the start-up (exit 1, the variables named) rather than every search after it with a
 * 503. Any other failure is logged and the API starts anyway: it serves while the cluster is down.
 */
export function elasticsearchCredentialsCheck(es: Client, logger: Logger): Component {
  return {
    name: 'elasticsearch-credentials',
    async start() {
      try {
        // Bounded: a cluster that does not answer must not hold the API's start-up for long.
        await es.ping({}, { requestTimeout: 5000, maxRetries: 0 });
      } catch (err) {
        if (err instanceof ElasticsearchAuthError) throw err;
        logger.warn({ err: messageOf(err) }, 'Elasticsearch did not answer at start-up; serving anyway');
      }
    },
    shutdown: () => Promise.resolve(),
  };
}

export interface CrashHit {
  event: CrashEvent;
  sort: SortValues | undefined;
}

/**
 * Only crash documents: the indexer writes an analysis that arrives before its crash as a
 * placeholder (crash id, time, namespace and the analysis) that the crash record completes later.
 * A placeholder has no schema_version, and is no crash a caller may see yet.
 */
export function crashesOnly(query: estypes.QueryDslQueryContainer): estypes.QueryDslQueryContainer {
  return { bool: { filter: [{ exists: { field: 'schema_version' } }, query] } };
}

/** A crash document, not a placeholder (see crashesOnly). */
function isCrash(source: CrashEvent): boolean {
  return (source as Partial<CrashEvent>).schema_version !== undefined;
}

/** Options that make a missing index (or alias) an empty result rather than an error. */
export const lenientIndex = { ignore_unavailable: true, allow_no_indices: true } as const;

export class CrashStore {
  private readonly es: Client;
  private readonly index: string;
  private readonly telemetry: Telemetry;

  constructor(params: { es: Client; index: string; telemetry: Telemetry }) {
    this.es = params.es;
    this.index = params.index;
    this.telemetry = params.telemetry;
  }

  /** Runs an Elasticsearch call; failures of the cluster become a 503 naming it. */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      this.telemetry.backendErrors.inc({ backend: 'elasticsearch' });
      const status = err instanceof esErrors.ResponseError ? err.statusCode : undefined;
      // A request the cluster refuses (other than for load) is this service's fault: a 500 that
      // is logged, never the cluster's message handed to the caller as if it were theirs.
      if (status !== undefined && status < 500 && status !== 429)
        throw new Error(`Elasticsearch refused a query: ${messageOf(err)}`, { cause: err });
      throw PM_ERR_BACKEND_UNAVAILABLE('Elasticsearch', messageOf(err));
    }
  }

  async search(req: SearchRequest): Promise<CrashHit[]> {
    // Built outside call(): a bad parameter is the caller's 400, not the cluster's 503.
    const body = searchBody(req);
    const res = await this.call(() =>
      this.es.search<CrashEvent>({
        index: this.index,
        ...lenientIndex,
        ...body,
        query: crashesOnly(body.query),
      }),
    );
    return res.hits.hits.flatMap((h) =>
      h._source ? [{ event: h._source, sort: sortValuesOf(h.sort) }] : [],
    );
  }

  /**
   * The crash of an id, read from the one monthly index that holds it: the month of the id's time,
   * where the indexer writes it (docs/architecture.md §3). Another crash claiming the id is never
   * stored, and a copy of the id in another month is never read. A placeholder is no crash yet.
   */
  async get(id: string): Promise<CrashEvent | undefined> {
    const index = crashIndexForId(id, this.index);
    if (index === undefined) return undefined;
    if (/[*?,]/.test(this.index)) return this.getByPattern(id, index.slice(this.index.length));
    const res = await this.call(() => this.es.get<CrashEvent>({ index, id }, { ignore: [404] }));
    const source = res.found ? res._source : undefined;
    return source && isCrash(source) ? source : undefined;
  }

  /** With an index pattern configured: the hit of the id whose index is of the id's month. */
  private async getByPattern(id: string, monthSuffix: string): Promise<CrashEvent | undefined> {
    const res = await this.call(() =>
      this.es.search<CrashEvent>({
        index: this.index,
        ...lenientIndex,
        query: crashesOnly({ ids: { values: [id] } }),
        size: 10,
      }),
    );
    return res.hits.hits.find((h) => h._index.endsWith(monthSuffix))?._source;
  }

  /** Crashes matching a query, newest first, up to `size`. */
  async find(query: estypes.QueryDslQueryContainer, size: number, fields?: string[]): Promise<CrashEvent[]> {
    const res = await this.call(() =>
      this.es.search<CrashEvent>({
        index: this.index,
        ...lenientIndex,
        query: crashesOnly(query),
        size,
        sort: SORT.map((s) => ({ ...s })),
        ...(fields ? { _source: { includes: fields } } : {}),
      }),
    );
    return res.hits.hits.flatMap((h) => (h._source ? [h._source] : []));
  }

  /** Distinct values of a keyword field among the crashes matching `query`. */
  async distinct(field: string, query: estypes.QueryDslQueryContainer, size = 10_000): Promise<string[]> {
    const res = await this.call(() =>
      this.es.search({
        index: this.index,
        ...lenientIndex,
        size: 0,
        query: crashesOnly(query),
        aggs: { values: { terms: { field, size } } },
      }),
    );
    const agg = res.aggregations?.values as { buckets?: { key: string }[] } | undefined;
    return (agg?.buckets ?? []).map((b) => b.key);
  }

  namespaces(): Promise<string[]> {
    return this.distinct('kubernetes.namespace', { match_all: {} });
  }

  async aggregate(
    query: estypes.QueryDslQueryContainer,
    aggs: Record<string, estypes.AggregationsAggregationContainer>,
  ) {
    const res = await this.call(() =>
      this.es.search({
        index: this.index,
        ...lenientIndex,
        size: 0,
        track_total_hits: true,
        query: crashesOnly(query),
        aggs,
      }),
    );
    const total = typeof res.hits.total === 'number' ? res.hits.total : (res.hits.total?.value ?? 0);
    return { total, aggregations: (res.aggregations ?? {}) as Record<string, unknown> };
  }

  async ready(): Promise<boolean> {
    try {
      await this.es.cluster.health({ timeout: '2s' }, { requestTimeout: 3000, maxRetries: 0 });
      return true;
    } catch {
      return false;
    }
  }
}
