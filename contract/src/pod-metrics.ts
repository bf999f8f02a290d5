// The metrics of one pod's container that podmortem shows beside its crashes: the query API's crash
// context and the Grafana pod dashboard run the same PromQL. `{namespace}`, `{pod}` and
// `{container}` are placeholders: the query API fills them in (escaped), Grafana turns them into
// dashboard variables. The query API's PODMORTEM_API_PROMQL_* settings override these defaults.

export const POD_METRIC_QUERIES = {
  memory: 'container_memory_working_set_bytes{namespace="{namespace}",pod="{pod}",container="{container}"}',
  cpu: 'rate(container_cpu_usage_seconds_total{namespace="{namespace}",pod="{pod}",container="{container}"}[5m])',
  restarts:
    'kube_pod_container_status_restarts_total{namespace="{namespace}",pod="{pod}",container="{container}"}',
  oomKills:
    'kube_pod_container_status_last_terminated_reason{namespace="{namespace}",pod="{pod}",container="{container}",reason="OOMKilled"}',
} as const;
