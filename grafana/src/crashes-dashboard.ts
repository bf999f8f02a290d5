import { dashboard } from './dashboard.ts';
import { esCount, esDocuments, esTermsVariable } from './es-queries.ts';
import { barGauge, documentTable, PanelGrid, stat, timeseries } from './panels.ts';
import { POD_DASHBOARD_UID } from './pod-dashboard.ts';
import type { Dashboard } from './dashboard-json.ts';

// The crash overview: every crash in the index, by namespace, over time; what crashed most; and
// the newest crashes, each linking to its pod's dashboard.

export const CRASHES_DASHBOARD_UID = 'podmortem-crashes';

const inNamespaces = 'kubernetes.namespace:$namespace';

export const CRASHES_PANEL = 'Crashes by namespace';
export const SIGNATURES_PANEL = 'Top signatures';

export function crashesDashboard(): Dashboard {
  const grid = new PanelGrid();
  grid.add(
    stat('Crashes', [esCount(inNamespaces, { overTime: true })], {
      calc: 'sum',
      description: 'Crashes of processes in pods of the chosen namespaces in the time range',
    }),
    12,
    4,
  );
  grid.add(
    stat(
      'Dumps not stored',
      [esCount(`${inNamespaces} AND dump.status:(skipped OR truncated OR failed)`, { overTime: true })],
      {
        calc: 'sum',
        redFrom: 1,
        description: 'Crashes whose core was skipped (rate limit, quota, free space), truncated or lost',
      },
    ),
    12,
    4,
  );
  grid.add(
    timeseries(
      CRASHES_PANEL,
      [esCount(inNamespaces, { by: [{ field: 'kubernetes.namespace', size: 10 }], overTime: true })],
      {
        bars: true,
        stacked: true,
        unit: 'short',
        min: 0,
        description: 'The 10 namespaces with most crashes',
      },
    ),
    24,
    8,
  );
  const top = (title: string, field: string, description: string) =>
    grid.add(barGauge(title, esCount(inNamespaces, { by: [{ field, size: 10 }] }), description), 6, 8);
  top('Top signals', 'signal.name', 'Crashes by the signal that killed the process');
  top(SIGNATURES_PANEL, 'analysis.signature', 'Crashes by stack signature, where the dump was analysed');
  top('Top executables', 'process.executable', 'Crashes by the path of the crashed executable');
  top('Dump status', 'dump.status', 'What became of the cores: stored, skipped, truncated, failed');
  const podLink = {
    title: 'Pod dashboard',
    url:
      `/d/${POD_DASHBOARD_UID}/?var-namespace=\${__data.fields["Namespace"]}&var-pod=\${__value.raw}` +
      '&var-container=${__data.fields["Container"]}&${__url_time_range}',
  };
  grid.add(
    documentTable('Recent crashes', esDocuments(inNamespaces, 100), [
      { field: 'kubernetes.namespace', title: 'Namespace' },
      { field: 'kubernetes.pod.name', title: 'Pod', links: [podLink] },
      { field: 'kubernetes.container.name', title: 'Container' },
      { field: 'signal.name', title: 'Signal' },
      { field: 'process.executable', title: 'Executable' },
      { field: 'dump.status', title: 'Dump' },
      { field: 'crash.id', title: 'Crash id' },
    ]),
    24,
    12,
  );
  return dashboard({
    uid: CRASHES_DASHBOARD_UID,
    title: 'podmortem / Crashes',
    about: 'Crashes of processes in Kubernetes pods, from the podmortem crash index.',
    source: 'crashes-dashboard.ts',
    from: 'now-7d',
    variables: [
      esTermsVariable({ name: 'namespace', label: 'Namespace', field: 'kubernetes.namespace', multi: true }),
    ],
    panels: grid.panels,
  });
}
