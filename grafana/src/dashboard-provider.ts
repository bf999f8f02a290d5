// The file provider that loads the dashboards: grafana/dashboards mounted at DASHBOARDS_PATH in
// the Grafana container. Provisioned dashboards are read-only in the UI; change the generator.

export const DASHBOARDS_PATH = '/var/lib/grafana/dashboards/podmortem';
export const DASHBOARD_FOLDER = 'podmortem';

export function dashboardProvider() {
  return {
    apiVersion: 1,
    providers: [
      {
        name: 'podmortem',
        orgId: 1,
        folder: DASHBOARD_FOLDER,
        folderUid: DASHBOARD_FOLDER,
        type: 'file',
        disableDeletion: true,
        allowUiUpdates: false,
        updateIntervalSeconds: 60,
        options: { path: DASHBOARDS_PATH, foldersFromFilesStructure: false },
      },
    ],
  };
}
