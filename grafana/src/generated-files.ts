import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { alertRules, type RulePanel } from './alert-rules.ts';
import { CRASHES_PANEL, SIGNATURES_PANEL, crashesDashboard } from './crashes-dashboard.ts';
import { allPanels, type Dashboard } from './dashboard-json.ts';
import { dashboardProvider } from './dashboard-provider.ts';
import { datasourcesProvisioning } from './datasources.ts';
import { generatedNote } from './generated-note.ts';
import { kibanaObjects } from './kibana-objects.ts';
import { podDashboard } from './pod-dashboard.ts';
import { SELF_PANELS, selfDashboard } from './self-dashboard.ts';

// Everything `npm run grafana` writes, as objects and as the text of each file: JSON and YAML in
// the repository's prettier format (so `prettier --check` agrees), NDJSON one object a line.

export const REPO_DIR = fileURLToPath(new URL('../..', import.meta.url));

function panelRef(dashboard: Dashboard, title: string): RulePanel {
  const panel = allPanels(dashboard).find((p) => p.title === title);
  if (!panel) throw new Error(`dashboard ${dashboard.uid} has no panel "${title}"`);
  return { dashboardUid: dashboard.uid, panelId: panel.id };
}

export function grafanaObjects() {
  const crashes = crashesDashboard();
  const self = selfDashboard();
  return {
    dashboards: [crashes, podDashboard(), self],
    datasources: datasourcesProvisioning(),
    dashboardProvider: dashboardProvider(),
    alerting: alertRules({
      crashesByNamespace: panelRef(crashes, CRASHES_PANEL),
      topSignatures: panelRef(crashes, SIGNATURES_PANEL),
      spoolEntries: panelRef(self, SELF_PANELS.spoolEntries),
      deliveryFailures: panelRef(self, SELF_PANELS.deliveryFailures),
      deadLettered: panelRef(self, SELF_PANELS.deadLettered),
      consumerLag: panelRef(self, SELF_PANELS.consumerLag),
    }),
    kibana: kibanaObjects(),
  };
}

export type GrafanaObjects = ReturnType<typeof grafanaObjects>;

export interface GeneratedFile {
  /** Relative to the repository root. */
  path: string;
  content: string;
  /** What the file holds, parsed back by the tests. */
  value: unknown;
}

async function formatted(path: string, text: string): Promise<string> {
  // prettier is a development tool of the repository, needed only to write the files.
  const prettier = await import('prettier');
  const file = join(REPO_DIR, path);
  const options = (await prettier.resolveConfig(file)) ?? {};
  return prettier.format(text, { ...options, filepath: file });
}

async function yamlFile(path: string, source: string, value: object): Promise<GeneratedFile> {
  const text = `# ${generatedNote(source)}\n${stringify(value, { lineWidth: 0, aliasDuplicateObjects: false })}`;
  return { path, content: await formatted(path, text), value };
}

export async function generatedFiles(objects: GrafanaObjects = grafanaObjects()): Promise<GeneratedFile[]> {
  const files: GeneratedFile[] = [];
  for (const d of objects.dashboards) {
    const path = `grafana/dashboards/${d.uid}.json`;
    files.push({ path, content: await formatted(path, JSON.stringify(d)), value: d });
  }
  files.push(
    await yamlFile('grafana/provisioning/datasources/podmortem.yaml', 'datasources.ts', objects.datasources),
    await yamlFile(
      'grafana/provisioning/dashboards/podmortem.yaml',
      'dashboard-provider.ts',
      objects.dashboardProvider,
    ),
    await yamlFile('grafana/provisioning/alerting/podmortem.yaml', 'alert-rules.ts', objects.alerting),
  );
  files.push({
    path: 'grafana/kibana/podmortem.ndjson',
    content: objects.kibana.map((o) => JSON.stringify(o)).join('\n') + '\n',
    value: objects.kibana,
  });
  return files;
}
