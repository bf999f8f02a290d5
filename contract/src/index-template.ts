import { crashIdTime, isCrashId } from './crash-id.ts';

// Elasticsearch index template for crash events: composable, built from two component templates,
// for time-based indices podmortem-crashes-YYYY.MM behind the read alias podmortem-crashes.
// Only core features: no ingest pipelines, ILM or data streams (the local server has none, and the
// indexer deletes whole indices for retention).

export const CRASH_INDEX_PREFIX = 'podmortem-crashes-';
export const CRASH_ALIAS = 'podmortem-crashes';
export const CRASH_INDEX_TEMPLATE = 'podmortem-crashes';
/** Raised on every change of the templates below; the indexer upgrades an older installed one. */
export const CRASH_TEMPLATE_VERSION = 5;

const keyword = { type: 'keyword', ignore_above: 1024 } as const;
const long = { type: 'long' } as const;
const searchableKeyword = { ...keyword, fields: { text: { type: 'text' } } } as const;

const frameMappings = {
  properties: {
    module: keyword,
    function: keyword,
    offset: long,
    build_id: keyword,
    file: keyword,
    line: { type: 'integer' },
    column: { type: 'integer' },
  },
} as const;

export const crashMappings = {
  dynamic: 'strict',
  properties: {
    '@timestamp': { type: 'date' },
    schema_version: { type: 'short' },
    crash: { properties: { id: keyword } },
    kubernetes: {
      properties: {
        namespace: keyword,
        pod: { properties: { name: keyword, uid: keyword } },
        container: { properties: { name: keyword } },
        node: { properties: { name: keyword } },
        labels: { type: 'flattened' },
        owner: { properties: { kind: keyword, name: keyword } },
      },
    },
    container: {
      properties: {
        id: keyword,
        runtime: keyword,
        image: { properties: { name: keyword, digest: keyword } },
      },
    },
    process: {
      properties: {
        pid: long,
        ns_pid: long,
        tid: long,
        executable: searchableKeyword,
        executable_deleted: { type: 'boolean' },
        name: keyword,
        args: searchableKeyword,
        uid: long,
        gid: long,
      },
    },
    signal: { properties: { number: { type: 'short' }, name: keyword, code: { type: 'integer' } } },
    fault: { properties: { address: keyword } },
    registers: { properties: { pc: keyword, sp: keyword } },
    dump: {
      properties: {
        status: keyword,
        reason: searchableKeyword,
        path: { type: 'keyword', index: false },
        size_bytes: long,
        stored_bytes: long,
        compression: keyword,
        sha256: keyword,
        limit_bytes: long,
        removed_at: { type: 'date' },
        removed_by: keyword,
      },
    },
    analysis: {
      properties: {
        status: keyword,
        reason: searchableKeyword,
        frames: frameMappings,
        threads: {
          properties: {
            tid: long,
            name: keyword,
            crashing: { type: 'boolean' },
            truncated: { type: 'boolean' },
            error: searchableKeyword,
            frames: frameMappings,
          },
        },
        analyzed_at: { type: 'date' },
        analyzer: keyword,
        modules: {
          properties: {
            path: keyword,
            build_id: keyword,
            deleted: { type: 'boolean' },
            start: keyword,
            end: keyword,
            captured: { type: 'boolean' },
            skipped: keyword,
            skip_reason: searchableKeyword,
          },
        },
        build_id: keyword,
        signature: searchableKeyword,
        title: searchableKeyword,
      },
    },
    collector: { properties: { version: keyword, node: keyword, handler_ms: { type: 'float' } } },
  },
} as const;

export interface CrashTemplateOptions {
  /** Replicas per index; 0 on a single-node cluster. */
  replicas: number;
  shards: number;
  /**
   * The read alias; every other name derives from it (indices `<alias>-YYYY.MM`, templates
   * `<alias>`, `<alias>-settings`, `<alias>-mappings`), so tests can keep a set of their own.
   */
  alias?: string;
}

export const defaultCrashTemplateOptions: CrashTemplateOptions = { replicas: 0, shards: 1 };

export function crashIndexTemplates(options: CrashTemplateOptions = defaultCrashTemplateOptions) {
  const meta = { managed_by: 'podmortem', template_version: CRASH_TEMPLATE_VERSION };
  const alias = options.alias ?? CRASH_ALIAS;
  return {
    componentTemplates: [
      {
        name: `${alias}-settings`,
        template: {
          settings: { number_of_shards: options.shards, number_of_replicas: options.replicas },
        },
        version: CRASH_TEMPLATE_VERSION,
        _meta: meta,
      },
      {
        name: `${alias}-mappings`,
        template: { mappings: crashMappings },
        version: CRASH_TEMPLATE_VERSION,
        _meta: meta,
      },
    ],
    indexTemplate: {
      name: options.alias === undefined ? CRASH_INDEX_TEMPLATE : alias,
      index_patterns: [`${alias}-*`],
      composed_of: [`${alias}-settings`, `${alias}-mappings`],
      template: { aliases: { [alias]: {} } },
      priority: 200,
      version: CRASH_TEMPLATE_VERSION,
      _meta: meta,
    },
  };
}

/** The monthly index a crash belongs in, by its own time (UTC). */
export function crashIndexFor(timestamp: string | Date, alias: string = CRASH_ALIAS): string {
  const d = typeof timestamp === 'string' ? new Date(timestamp) : timestamp;
  if (Number.isNaN(d.getTime())) throw new Error(`not a time: ${String(timestamp)}`);
  const month = String(d.getUTCMonth() + 1).padStart(2, '0');
  return `${alias}-${d.getUTCFullYear()}.${month}`;
}

/**
 * The monthly index that holds a crash: the month of its id's time (a UUIDv7's first 48 bits,
 * when the handler made it), so every writer and reader of one id addresses one index whatever
 * time its records carry. Undefined when that time is outside the years an index name can hold.
 */
export function crashIndexForId(id: string, alias: string = CRASH_ALIAS): string | undefined {
  if (!isCrashId(id)) return undefined;
  const index = crashIndexFor(new Date(crashIdTime(id)), alias);
  return crashIndexMonth(index, alias) === undefined ? undefined : index;
}

/** The month an index holds, or undefined for names that are not ours (not `<alias>-YYYY.MM`). */
export function crashIndexMonth(index: string, alias: string = CRASH_ALIAS): Date | undefined {
  if (!index.startsWith(`${alias}-`)) return undefined;
  const m = /^(\d{4})\.(\d{2})$/.exec(index.slice(alias.length + 1));
  if (!m) return undefined;
  const month = Number(m[2]);
  if (month < 1 || month > 12) return undefined;
  return new Date(Date.UTC(Number(m[1]), month - 1, 1));
}
