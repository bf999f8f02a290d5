// Template variables filled in the way Grafana does before a query leaves it, for the tests that
// run the dashboards' queries against the real servers: `$name`, `${name}` and `[[name]]`, a value
// formatted for the query language (Lucene escaping, or a regex alternation for PromQL
// multi-values). A `{ raw }` value is used as it is, like Grafana's custom "All" values and its
// built-in `$__interval`, `$__rate_interval`, `$__range`, `$__interval_ms`.

export type VariableValue = string | string[] | { raw: string };
export type Format = 'lucene' | 'promql';

const VARIABLE = /\$(\w+)|\$\{(\w+)\}|\[\[(\w+)\]\]/g;

/** Grafana's luceneEscape: numbers as they are, every query_string operator character escaped. */
export function luceneEscape(value: string): string {
  if (!Number.isNaN(Number(value))) return value;
  return value.replace(/([!*+\-=<>\s&|()[\]{}^~?:\\/"])/g, '\\$1');
}

function regexEscape(value: string): string {
  return value.replace(/[\\^$*+?.()|[\]{}]/g, '\\$&');
}

function formatted(value: VariableValue, format: Format): string {
  if (typeof value === 'object' && !Array.isArray(value)) return value.raw;
  if (format === 'lucene') {
    if (typeof value === 'string') return luceneEscape(value);
    return `(${value.map((v) => `"${luceneEscape(v)}"`).join(' OR ')})`;
  }
  if (typeof value === 'string') return value;
  return `(${value.map(regexEscape).join('|')})`;
}

/** The text with every variable replaced; a variable without a value is an error naming it. */
export function interpolate(text: string, values: Record<string, VariableValue>, format: Format): string {
  return text.replace(VARIABLE, (whole, a?: string, b?: string, c?: string) => {
    const name = a ?? b ?? c ?? '';
    const value = values[name];
    if (value === undefined) throw new Error(`no value for the variable ${whole} in: ${text}`);
    return formatted(value, format);
  });
}
