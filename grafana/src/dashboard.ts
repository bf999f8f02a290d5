import { generatedNote } from './generated-note.ts';
import type {
  Annotation,
  Dashboard,
  DataSourceRef,
  Panel,
  QueryVariable,
  VariableOption,
} from './dashboard-json.ts';

// A podmortem dashboard: the common settings, tagged so each links to the others, with the
// generated note leading its description.

export const DASHBOARD_TAG = 'podmortem';

const builtInAnnotation: Annotation = {
  builtIn: 1,
  datasource: { type: 'grafana', uid: '-- Grafana --' },
  enable: true,
  hide: true,
  iconColor: 'rgba(0, 211, 255, 1)',
  name: 'Annotations & Alerts',
  type: 'dashboard',
};

const ALL: VariableOption = { selected: true, text: ['All'], value: ['$__all'] };

/**
 * A query variable, refreshed when the time range changes. With `allValue` it takes several values
 * and offers "All", which Grafana puts into the queries as `allValue`; without, it takes one.
 */
export function queryVariable(params: {
  datasource: DataSourceRef;
  name: string;
  label: string;
  query: string;
  allValue?: string;
}): QueryVariable {
  const multi = params.allValue !== undefined;
  return {
    type: 'query',
    name: params.name,
    label: params.label,
    datasource: params.datasource,
    query: params.query,
    definition: params.query,
    refresh: 2,
    multi,
    includeAll: multi,
    ...(params.allValue !== undefined ? { allValue: params.allValue } : {}),
    sort: 1,
    regex: '',
    hide: 0,
    options: [],
    current: multi ? ALL : {},
  };
}

export function dashboard(params: {
  uid: string;
  title: string;
  about: string;
  source: string;
  from: string;
  variables: QueryVariable[];
  annotations?: Annotation[];
  panels: Panel[];
}): Dashboard {
  return {
    description: `${params.about} ${generatedNote(params.source)}`,
    uid: params.uid,
    title: params.title,
    tags: [DASHBOARD_TAG],
    editable: false,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '1m',
    timezone: 'browser',
    time: { from: params.from, to: 'now' },
    templating: { list: params.variables },
    annotations: { list: [builtInAnnotation, ...(params.annotations ?? [])] },
    links: [
      {
        title: 'podmortem',
        type: 'dashboards',
        tags: [DASHBOARD_TAG],
        asDropdown: true,
        includeVars: false,
        keepTime: true,
      },
    ],
    panels: params.panels,
  };
}
