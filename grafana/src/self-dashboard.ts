import { dashboard } from './dashboard.ts';
import { PanelGrid, timeseries } from './panels.ts';
import { prom, promLabelVariable } from './prom-queries.ts';
import type { Dashboard, PromTarget } from './dashboard-json.ts';

// podmortem's own health, from the self-telemetry of the collector agents, the indexer and the
// query API (each service's telemetry.ts): is every crash getting through, and how fast.

export const SELF_DASHBOARD_UID = 'podmortem-self';

export const SELF_PANELS = {
  spoolEntries: 'Spool entries',
  deliveryFailures: 'Delivery failures',
  deadLettered: 'Records dead-lettered',
  consumerLag: 'Consumer lag',
} as const;

const at = '{instance=~"$instance"}';
const rate = (metric: string, by: string) => `sum by (${by}) (rate(${metric}${at}[$__rate_interval]))`;
const QUANTILES = [
  { q: '0.5', name: 'p50', refId: 'A' },
  { q: '0.99', name: 'p99', refId: 'B' },
] as const;
const quantiles = (histogram: string, by: string[]): PromTarget[] =>
  QUANTILES.map(({ q, name, refId }) =>
    prom(
      `histogram_quantile(${q}, sum by (${['le', ...by].join(', ')}) (rate(${histogram}_bucket${at}[$__rate_interval])))`,
      [name, ...by.map((l) => `{{${l}}}`)].join(' '),
      refId,
    ),
  );

export function selfDashboard(): Dashboard {
  const grid = new PanelGrid();
  grid.row('Collector agents');
  grid.add(
    timeseries(
      'Crashes delivered',
      [prom(rate('podmortem_collector_crashes_total', 'namespace'), '{{namespace}}')],
      {
        unit: 'cps',
        description: 'Crashes stored, announced over OTLP and Kafka, per second, by namespace',
      },
    ),
    8,
    8,
  );
  grid.add(
    timeseries(
      'Crashes by dump status',
      [prom(rate('podmortem_collector_crashes_total', 'dump_status'), '{{dump_status}}')],
      {
        unit: 'cps',
        stacked: true,
      },
    ),
    8,
    8,
  );
  grid.add(
    timeseries(
      SELF_PANELS.deliveryFailures,
      [prom(rate('podmortem_collector_delivery_failures_total', 'step, code'), '{{step}} {{code}}')],
      {
        unit: 'cps',
        description: 'Failed delivery steps per second (each is retried; the crash stays in the spool)',
      },
    ),
    8,
    8,
  );
  grid.add(
    timeseries(
      SELF_PANELS.spoolEntries,
      [prom(`max by (instance) (podmortem_collector_spool_entries${at})`, '{{instance}}')],
      { unit: 'short', min: 0, description: 'Crashes waiting in each node spool' },
    ),
    12,
    8,
  );
  grid.add(
    timeseries(
      'Spool size',
      [prom(`max by (instance) (podmortem_collector_spool_bytes${at})`, '{{instance}}')],
      {
        unit: 'bytes',
        min: 0,
      },
    ),
    12,
    8,
  );
  grid.row('Indexer');
  grid.add(
    timeseries(
      'Records indexed',
      [prom(rate('podmortem_indexer_records_indexed_total', 'result'), '{{result}}')],
      {
        unit: 'cps',
        description: 'Records Elasticsearch acknowledged per second (updated: re-delivered)',
      },
    ),
    8,
    8,
  );
  grid.add(
    timeseries(
      SELF_PANELS.deadLettered,
      [prom(rate('podmortem_indexer_records_dead_lettered_total', 'code'), '{{code}}')],
      { unit: 'cps', description: 'Records written to the dead-letter topic per second, by error code' },
    ),
    8,
    8,
  );
  grid.add(
    timeseries(
      SELF_PANELS.consumerLag,
      [prom(`sum by (topic) (podmortem_indexer_consumer_lag${at})`, '{{topic}}')],
      { unit: 'short', min: 0, description: 'Records not yet committed by the consumer group' },
    ),
    8,
    8,
  );
  grid.add(
    timeseries('Bulk latency', quantiles('podmortem_indexer_bulk_duration_seconds', []), {
      unit: 's',
      description: 'Latency of one bulk request to Elasticsearch',
    }),
    24,
    8,
  );
  grid.row('Query API');
  grid.add(
    timeseries('Requests', [prom(rate('podmortem_api_requests_total', 'status'), '{{status}}')], {
      unit: 'reqps',
      stacked: true,
    }),
    8,
    8,
  );
  grid.add(
    timeseries('Request latency', quantiles('podmortem_api_request_duration_seconds', ['route']), {
      unit: 's',
      description: 'Time to answer, until the last byte of a stream, by route',
    }),
    8,
    8,
  );
  grid.add(
    timeseries(
      'Downloads',
      [prom(rate('podmortem_api_downloads_total', 'kind, outcome'), '{{kind}} {{outcome}}')],
      {
        unit: 'cps',
        description: 'Dump and archive downloads per second, complete or aborted',
      },
    ),
    8,
    8,
  );
  return dashboard({
    uid: SELF_DASHBOARD_UID,
    title: 'podmortem / Self',
    about: "podmortem's own health: collector spools and deliveries, indexing, the query API.",
    source: 'self-dashboard.ts',
    from: 'now-6h',
    variables: [
      promLabelVariable({
        name: 'instance',
        label: 'Instance',
        selector: '{__name__=~"podmortem_(collector|indexer|api)_.+"}',
      }),
    ],
    panels: grid.panels,
  });
}
