import { generatedNote } from './generated-note.ts';
import type { Annotation, Dashboard, Panel, QueryVariable } from './dashboard-json.ts';

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
