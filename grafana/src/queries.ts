import {
  allPanels,
  isEsTarget,
  type Dashboard,
  type EsAnnotation,
  type EsTarget,
  type EsTermsFind,
} from './dashboard-json.ts';
import { ELASTICSEARCH } from './datasources.ts';
import { parseLabelValues } from './prom-queries.ts';
import type { AlertGroup } from './alert-rules.ts';

// Every query the dashboards and alert rules make, each with where it is, so the tests can run
// them all against the real servers and name the one that fails.

export type FoundQuery =
  | { where: string; kind: 'promql'; expr: string }
  | { where: string; kind: 'prom-label-values'; selector: string; label: string }
  | { where: string; kind: 'es-target'; target: EsTarget }
  | { where: string; kind: 'es-terms'; find: EsTermsFind }
  | { where: string; kind: 'es-annotation'; annotation: EsAnnotation };

export function dashboardQueries(dashboard: Dashboard): FoundQuery[] {
  const found: FoundQuery[] = [];
  const at = (what: string) => `${dashboard.uid}: ${what}`;
  for (const v of dashboard.templating.list) {
    const where = at(`variable ${v.name}`);
    if (v.datasource.type === 'elasticsearch') {
      found.push({ where, kind: 'es-terms', find: JSON.parse(v.query) as EsTermsFind });
    } else {
      const parsed = parseLabelValues(v.query);
      if (!parsed) throw new Error(`${where}: not a label_values() query: ${v.query}`);
      found.push({ where, kind: 'prom-label-values', ...parsed });
    }
  }
  for (const a of dashboard.annotations.list) {
    if ('target' in a)
      found.push({ where: at(`annotation ${a.name}`), kind: 'es-annotation', annotation: a });
  }
  for (const panel of allPanels(dashboard)) {
    for (const target of panel.targets ?? []) {
      const where = at(`panel "${panel.title}" ${target.refId}`);
      if (isEsTarget(target)) found.push({ where, kind: 'es-target', target });
      else found.push({ where, kind: 'promql', expr: target.expr });
    }
  }
  return found;
}

export function alertQueries(groups: AlertGroup[]): FoundQuery[] {
  return groups.flatMap((g) =>
    g.rules.flatMap((r) => {
      const sources = r.data.filter((q) => q.datasourceUid !== '__expr__');
      return sources.map((q): FoundQuery => {
        // A rule of one query is named by its uid alone; one of several by its uid and refId.
        const where = sources.length === 1 ? `alert ${r.uid}` : `alert ${r.uid} ${q.refId}`;
        const model = q.model;
        if (q.datasourceUid === ELASTICSEARCH.uid && 'bucketAggs' in model)
          return { where, kind: 'es-target', target: model };
        if ('expr' in model) return { where, kind: 'promql', expr: model.expr };
        throw new Error(`${where}: query ${q.refId} is neither PromQL nor Elasticsearch`);
      });
    }),
  );
}
