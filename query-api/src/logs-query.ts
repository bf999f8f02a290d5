import type { Client } from '@elastic/elasticsearch';
import type { LogsFields } from './config.ts';
import { lenientIndex } from './crash-store.ts';

// The last log lines of one pod's container from the configured logs index pattern. Field names
// come from the configuration (ECS `kubernetes.*` or OTel `resource.attributes.k8s.*`); an exact
// match is asked of the field and of its `.keyword` sub-field, so both keyword mappings and
// Elasticsearch's dynamic text+keyword mappings are served.

export interface LogLine {
  timestamp: string;
  message: string;
}

export interface LogsWindow {
  namespace: string;
  pod: string;
  container: string;
  fromMs: number;
  toMs: number;
  limit: number;
}

function exact(field: string, value: string) {
  return {
    bool: {
      should: [{ term: { [field]: value } }, { term: { [`${field}.keyword`]: value } }],
      minimum_should_match: 1,
    },
  };
}

export function logsQuery(fields: LogsFields, w: LogsWindow) {
  return {
    query: {
      bool: {
        filter: [
          exact(fields.namespace, w.namespace),
          exact(fields.pod, w.pod),
          exact(fields.container, w.container),
          { range: { [fields.timestamp]: { gte: w.fromMs, lte: w.toMs, format: 'epoch_millis' } } },
        ],
      },
    },
    sort: [{ [fields.timestamp]: { order: 'desc' as const, unmapped_type: 'date' } }],
    size: w.limit,
  };
}

/** A value at a dotted path, whether the document nests objects or keeps dotted keys flat. */
export function valueAt(doc: unknown, path: string): unknown {
  if (typeof doc !== 'object' || doc === null) return undefined;
  const obj = doc as Record<string, unknown>;
  if (path in obj) return obj[path];
  const parts = path.split('.');
  for (let i = parts.length - 1; i > 0; i--) {
    const head = parts.slice(0, i).join('.');
    if (head in obj) {
      const found = valueAt(obj[head], parts.slice(i).join('.'));
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === undefined || value === null) return '';
  return JSON.stringify(value);
}

/** Log lines of the window, oldest first (the newest `limit` of them). */
export async function lastLogLines(
  es: Client,
  index: string,
  fields: LogsFields,
  w: LogsWindow,
): Promise<LogLine[]> {
  const res = await es.search({ index, ...lenientIndex, ...logsQuery(fields, w) });
  return res.hits.hits
    .map((h) => {
      const ts = valueAt(h._source, fields.timestamp);
      return {
        timestamp: typeof ts === 'number' ? new Date(ts).toISOString() : text(ts),
        message: text(valueAt(h._source, fields.message)),
      };
    })
    .reverse();
}
