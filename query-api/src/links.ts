import type { LogsFields } from './config.ts';

// Links from a crash to the tools people already use: the Grafana pod dashboard and Kibana
// Discover, with the pod and the time window filled in.

export interface LinkTarget {
  namespace: string;
  pod: string;
  container: string;
  fromMs: number;
  toMs: number;
}

function base(url: string): string {
  return url.replace(/\/+$/, '');
}

export function grafanaLink(grafanaUrl: string, dashboardUid: string, t: LinkTarget): string | undefined {
  if (grafanaUrl === '') return undefined;
  const params = new URLSearchParams({
    'var-namespace': t.namespace,
    'var-pod': t.pod,
    'var-container': t.container,
    from: String(t.fromMs),
    to: String(t.toMs),
  });
  return `${base(grafanaUrl)}/d/${encodeURIComponent(dashboardUid)}/?${params.toString()}`;
}

/** A Rison string literal (Kibana's URL state format): quotes and bangs are escaped with `!`. */
export function risonString(value: string): string {
  return `'${value.replace(/[!']/g, (c) => `!${c}`)}'`;
}

/** A KQL quoted value. */
function kqlString(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

export function kibanaDiscoverLink(
  kibanaUrl: string,
  dataView: string,
  fields: LogsFields,
  t: LinkTarget,
): string | undefined {
  if (kibanaUrl === '') return undefined;
  const kql = [
    `${fields.namespace}:${kqlString(t.namespace)}`,
    `${fields.pod}:${kqlString(t.pod)}`,
    `${fields.container}:${kqlString(t.container)}`,
  ].join(' and ');
  const g = `(time:(from:${risonString(new Date(t.fromMs).toISOString())},to:${risonString(new Date(t.toMs).toISOString())}))`;
  const a = `(${dataView === '' ? '' : `dataSource:(dataViewId:${risonString(dataView)},type:dataView),`}query:(language:kuery,query:${risonString(kql)}))`;
  return `${base(kibanaUrl)}/app/discover#/?_g=${encodeURIComponent(g)}&_a=${encodeURIComponent(a)}`;
}
