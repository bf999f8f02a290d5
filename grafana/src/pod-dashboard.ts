import { POD_METRIC_QUERIES } from '@podmortem/contract';
import { dashboard } from './dashboard.ts';
import { esCount, esCrashAnnotation, esDocuments, esTermsVariable } from './es-queries.ts';
import { documentTable, PanelGrid, stat, timeseries } from './panels.ts';
import { prom } from './prom-queries.ts';
import type { Dashboard } from './dashboard-json.ts';

// One pod's container around its crashes: the metrics the query API's crash context shows (the
// same PromQL, from the contract's POD_METRIC_QUERIES) with every crash
// as an annotation, and the crashes themselves. The query API links here with the namespace, pod,
// container and time window in the URL (query-api/src/links.ts).

export const POD_DASHBOARD_UID = 'podmortem-pod';

/** A query API PromQL template with its `{namespace}`, `{pod}`, `{container}` as dashboard variables. */
export function withVariables(template: string): string {
  return template.replace(/\{(namespace|pod|container)\}/g, (_, name: string) => `$${name}`);
}

export function podDashboard(): Dashboard {
  const container =
    'kubernetes.namespace:$namespace AND kubernetes.pod.name:$pod AND kubernetes.container.name:$container';
  const grid = new PanelGrid();
  grid.add(
    stat('Crashes', [esCount(container, { overTime: true })], {
      calc: 'sum',
      redFrom: 1,
      description: 'Crashes of this container in the time range',
    }),
    8,
    4,
  );
  grid.add(
    stat('Restarts', [prom(withVariables(POD_METRIC_QUERIES.restarts), '{{container}}')], {
      description: 'Restarts of this container (kube-state-metrics)',
    }),
    8,
    4,
  );
  grid.add(
    stat('Last terminated: OOMKilled', [prom(withVariables(POD_METRIC_QUERIES.oomKills), '{{container}}')], {
      redFrom: 1,
      description: '1 when the last termination of this container was the OOM killer (kube-state-metrics)',
    }),
    8,
    4,
  );
  grid.add(
    timeseries('Memory working set', [prom(withVariables(POD_METRIC_QUERIES.memory), '{{container}}')], {
      unit: 'bytes',
      min: 0,
      description: 'The working set the OOM killer judges the container by (cAdvisor)',
    }),
    12,
    8,
  );
  grid.add(
    timeseries('CPU', [prom(withVariables(POD_METRIC_QUERIES.cpu), '{{container}}')], {
      unit: 'short',
      min: 0,
      description: 'CPU cores used (cAdvisor)',
    }),
    12,
    8,
  );
  grid.add(
    timeseries('Restarts over time', [prom(withVariables(POD_METRIC_QUERIES.restarts), '{{container}}')], {
      unit: 'short',
      min: 0,
    }),
    24,
    6,
  );
  grid.add(
    documentTable('Crashes of this container', esDocuments(container, 100), [
      { field: 'crash.id', title: 'Crash id' },
      { field: 'signal.name', title: 'Signal' },
      { field: 'process.executable', title: 'Executable' },
      { field: 'analysis.title', title: 'Title' },
      { field: 'dump.status', title: 'Dump' },
      { field: 'dump.reason', title: 'Reason' },
      { field: 'kubernetes.node.name', title: 'Node' },
    ]),
    24,
    10,
  );
  return dashboard({
    uid: POD_DASHBOARD_UID,
    title: 'podmortem / Pod',
    about: 'One container of a pod: its memory, CPU and restarts, with its crashes marked.',
    source: 'pod-dashboard.ts',
    from: 'now-6h',
    variables: [
      esTermsVariable({ name: 'namespace', label: 'Namespace', field: 'kubernetes.namespace', multi: false }),
      esTermsVariable({
        name: 'pod',
        label: 'Pod',
        field: 'kubernetes.pod.name',
        query: 'kubernetes.namespace:$namespace',
        multi: false,
      }),
      esTermsVariable({
        name: 'container',
        label: 'Container',
        field: 'kubernetes.container.name',
        query: 'kubernetes.namespace:$namespace AND kubernetes.pod.name:$pod',
        multi: false,
      }),
    ],
    annotations: [esCrashAnnotation('Crashes', container)],
    panels: grid.panels,
  });
}
