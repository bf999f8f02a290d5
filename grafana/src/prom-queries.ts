import { PROMETHEUS } from './datasources.ts';
import type { PromTarget, QueryVariable } from './dashboard-json.ts';
import { queryVariable } from './dashboard.ts';

// PromQL targets and variables over the podmortem Prometheus datasource.

export function prom(expr: string, legendFormat: string, refId = 'A'): PromTarget {
  return { refId, datasource: PROMETHEUS, expr, legendFormat, range: true, instant: false };
}

/** A multi-value variable of one label's values among the series matching `selector`. */
export function promLabelVariable(params: { name: string; label: string; selector: string }): QueryVariable {
  return queryVariable({
    datasource: PROMETHEUS,
    name: params.name,
    label: params.label,
    query: `label_values(${params.selector}, ${params.name})`,
    allValue: '.*',
  });
}

/** Parses `label_values(selector, label)` back, for the tests that run it. */
export function parseLabelValues(query: string): { selector: string; label: string } | undefined {
  const m = /^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)$/.exec(query);
  if (!m?.[1] || !m[2]) return undefined;
  return { selector: m[1].trim(), label: m[2] };
}
