import { CRASH_ALIAS } from '@podmortem/contract';
import type { DataSourceRef } from './dashboard-json.ts';

// The two datasources every dashboard and alert rule refers to, by fixed uids, and their Grafana
// provisioning. URLs come from the environment of the Grafana server (provisioning files expand
// `${VAR}`), so the same files serve every cluster.

export const PROMETHEUS: DataSourceRef = { type: 'prometheus', uid: 'podmortem-prometheus' };
export const ELASTICSEARCH: DataSourceRef = { type: 'elasticsearch', uid: 'podmortem-elasticsearch' };

export const TIME_FIELD = '@timestamp';

export interface ProvisionedDatasource {
  name: string;
  uid: string;
  type: DataSourceRef['type'];
  access: 'proxy';
  url: string;
  isDefault: boolean;
  editable: boolean;
  jsonData: Record<string, string | number>;
}

export function datasourcesProvisioning() {
  const datasources: ProvisionedDatasource[] = [
    {
      name: 'podmortem Prometheus',
      uid: PROMETHEUS.uid,
      type: PROMETHEUS.type,
      access: 'proxy',
      url: '${PODMORTEM_PROMETHEUS_URL}',
      isDefault: false,
      editable: false,
      jsonData: { httpMethod: 'POST', timeInterval: '30s' },
    },
    {
      name: 'podmortem crashes',
      uid: ELASTICSEARCH.uid,
      type: ELASTICSEARCH.type,
      access: 'proxy',
      url: '${PODMORTEM_ELASTICSEARCH_URL}',
      isDefault: false,
      editable: false,
      // The read alias spans the monthly indices, so no index date pattern is needed.
      jsonData: { index: CRASH_ALIAS, timeField: TIME_FIELD, maxConcurrentShardRequests: 5 },
    },
  ];
  return { apiVersion: 1, datasources };
}
