import { PROMETHEUS } from './datasources.ts';
import { esCount } from './es-queries.ts';
import type { EsTarget } from './dashboard-json.ts';

// Grafana-managed alert rules, in the file-provisioning format (provisioning/alerting). Most rules
// are query A, reduced to one number per series (B), compared with a threshold (C). The new crash
// group rule counts each signature over two windows (A: the last hour, H: the last 30 days),
// reduces both, and fires where the two counts are equal and not zero (N), i.e. where every crash
// of the signature in 30 days happened within the hour. Labels are plain words: Grafana expands
// `$` in provisioned labels as environment variables (not in annotations, where the alert
// templates go).

const EXPR = { type: '__expr__', uid: '__expr__' } as const;

interface PromAlertModel {
  refId: string;
  datasource: typeof PROMETHEUS;
  expr: string;
  instant: true;
  range: false;
  intervalMs: number;
  maxDataPoints: number;
}

type EsAlertModel = EsTarget & { intervalMs: number; maxDataPoints: number };

export type Reducer = 'last' | 'sum' | 'max';

export interface ReduceModel {
  refId: string;
  datasource: typeof EXPR;
  type: 'reduce';
  expression: string;
  reducer: Reducer;
}

/** A Grafana server-side math expression over reduced series ($RefId), joined by their labels. */
export interface MathModel {
  refId: string;
  datasource: typeof EXPR;
  type: 'math';
  expression: string;
}

export interface ThresholdModel {
  refId: 'C';
  datasource: typeof EXPR;
  type: 'threshold';
  expression: string;
  conditions: { evaluator: { type: 'gt'; params: [number] } }[];
}

export type DatasourceModel = PromAlertModel | EsAlertModel;
export type ExpressionModel = ReduceModel | MathModel | ThresholdModel;

export interface AlertQuery<M> {
  refId: string;
  relativeTimeRange?: { from: number; to: number };
  datasourceUid: string;
  model: M;
}

export interface AlertRule {
  uid: string;
  title: string;
  condition: 'C';
  /** The datasource queries first, then the expressions; the last one is the condition C. */
  data: AlertQuery<DatasourceModel | ExpressionModel>[];
  dashboardUid: string;
  panelId: number;
  noDataState: 'OK' | 'NoData' | 'Alerting';
  execErrState: 'Error' | 'Alerting' | 'OK';
  for: string;
  annotations: { summary: string; description: string };
  labels: Record<string, string>;
  isPaused: false;
}

export interface AlertGroup {
  orgId: 1;
  name: string;
  folder: string;
  interval: string;
  rules: AlertRule[];
}

export const ALERT_FOLDER = 'podmortem';

/** Where a rule points in the dashboards (its panel found by title when the files are made). */
export interface RulePanel {
  dashboardUid: string;
  panelId: number;
}

interface RuleSpec {
  uid: string;
  title: string;
  query: PromAlertModel | EsAlertModel;
  windowS: number;
  reducer: Reducer;
  above: number;
  for: string;
  severity: 'warning' | 'critical';
  panel: RulePanel;
  summary: string;
  description: string;
}

type RuleText = Omit<RuleSpec, 'query' | 'windowS' | 'reducer' | 'above'>;

function sourceQuery(refId: string, windowS: number, model: DatasourceModel): AlertQuery<DatasourceModel> {
  return {
    refId,
    relativeTimeRange: { from: windowS, to: 0 },
    datasourceUid: model.datasource.uid,
    model: { ...model, refId },
  };
}

function expression<M extends ExpressionModel>(model: M): AlertQuery<M> {
  return { refId: model.refId, datasourceUid: EXPR.uid, model };
}

function reduce(refId: string, of: string, reducer: Reducer): AlertQuery<ReduceModel> {
  return expression({ refId, datasource: EXPR, type: 'reduce', expression: of, reducer });
}

function threshold(of: string, above: number): AlertQuery<ThresholdModel> {
  return expression({
    refId: 'C',
    datasource: EXPR,
    type: 'threshold',
    expression: of,
    conditions: [{ evaluator: { type: 'gt', params: [above] } }],
  });
}

function withText(spec: RuleText, data: AlertRule['data']): AlertRule {
  return {
    uid: spec.uid,
    title: spec.title,
    condition: 'C',
    data,
    dashboardUid: spec.panel.dashboardUid,
    panelId: spec.panel.panelId,
    // No series means nothing happened (no crash, no failure), not a broken query.
    noDataState: 'OK',
    execErrState: 'Error',
    for: spec.for,
    annotations: { summary: spec.summary, description: spec.description },
    labels: { severity: spec.severity, team: 'podmortem' },
    isPaused: false,
  };
}

function rule(spec: RuleSpec): AlertRule {
  return withText(spec, [
    sourceQuery('A', spec.windowS, spec.query),
    reduce('B', 'A', spec.reducer),
    threshold('B', spec.above),
  ]);
}

/** The windows of the new crash group rule: recent, and the memory it is new against. */
export const NEW_GROUP_WINDOWS = { recentS: 3600, historyS: 30 * 86_400 } as const;

/** Fires per signature whose crashes of the last 30 days all happened in the last hour. */
function newGroupRule(text: RuleText): AlertRule {
  const bySignature = (interval: string): EsAlertModel => ({
    ...esCount('_exists_:analysis.signature', {
      by: [{ field: 'analysis.signature', size: 500 }],
      overTime: true,
      interval,
    }),
    intervalMs: 60_000,
    maxDataPoints: 43_200,
  });
  return withText(text, [
    sourceQuery('A', NEW_GROUP_WINDOWS.recentS, bySignature('1m')),
    // Daily buckets: 30 of them per signature stay far below Elasticsearch's bucket limit.
    sourceQuery('H', NEW_GROUP_WINDOWS.historyS, bySignature('1d')),
    reduce('RA', 'A', 'sum'),
    reduce('RH', 'H', 'sum'),
    expression({ refId: 'N', datasource: EXPR, type: 'math', expression: '$RA > 0 && $RA == $RH' }),
    threshold('N', 0),
  ]);
}

function promQuery(expr: string): PromAlertModel {
  return {
    refId: 'A',
    datasource: PROMETHEUS,
    expr,
    instant: true,
    range: false,
    intervalMs: 60_000,
    maxDataPoints: 43_200,
  };
}

export interface AlertPanels {
  crashesByNamespace: RulePanel;
  topSignatures: RulePanel;
  spoolEntries: RulePanel;
  deliveryFailures: RulePanel;
  deadLettered: RulePanel;
  consumerLag: RulePanel;
}

export function alertRules(panels: AlertPanels) {
  const crashRate: EsAlertModel = {
    ...esCount('', {
      by: [{ field: 'kubernetes.namespace', size: 100 }],
      overTime: true,
      interval: '1m',
    }),
    intervalMs: 60_000,
    maxDataPoints: 43_200,
  };
  const groups: AlertGroup[] = [
    {
      orgId: 1,
      name: 'podmortem-crashes',
      folder: ALERT_FOLDER,
      interval: '1m',
      rules: [
        rule({
          uid: 'podmortem-crash-rate',
          title: 'Crash rate in a namespace',
          query: crashRate,
          windowS: 600,
          reducer: 'sum',
          above: 10,
          for: '0s',
          severity: 'warning',
          panel: panels.crashesByNamespace,
          summary: 'More than 10 crashes in 10 minutes in {{ index $labels "kubernetes.namespace" }}',
          description:
            '{{ $values.B }} crashes of processes in pods of the namespace in the last 10 minutes.',
        }),
        newGroupRule({
          uid: 'podmortem-new-crash-group',
          title: 'New crash group',
          for: '0s',
          severity: 'warning',
          panel: panels.topSignatures,
          summary: 'A new crash signature: {{ index $labels "analysis.signature" }}',
          description:
            '{{ $values.RA }} crashes in the last hour with a stack signature not seen in the 30 days before: ' +
            'a new bug. GET /v1/groups/{signature} of the query API lists its pods and crashes.',
        }),
      ],
    },
    {
      orgId: 1,
      name: 'podmortem-self',
      folder: ALERT_FOLDER,
      interval: '1m',
      rules: [
        rule({
          uid: 'podmortem-spool-backlog',
          title: 'Collector spool backlog growing',
          query: promQuery('max by (instance) (delta(podmortem_collector_spool_entries[15m]))'),
          windowS: 900,
          reducer: 'last',
          above: 10,
          for: '15m',
          severity: 'warning',
          panel: panels.spoolEntries,
          summary: 'The crash spool of {{ $labels.instance }} keeps growing',
          description:
            '{{ $values.B }} more crashes wait in the spool than 15 minutes ago: deliveries to storage, OTLP or Kafka are not keeping up.',
        }),
        rule({
          uid: 'podmortem-delivery-failures',
          title: 'Collector deliveries failing',
          query: promQuery(
            'sum by (instance, step) (increase(podmortem_collector_delivery_failures_total[10m]))',
          ),
          windowS: 600,
          reducer: 'last',
          above: 0,
          for: '10m',
          severity: 'warning',
          panel: panels.deliveryFailures,
          summary: 'The {{ $labels.step }} step of {{ $labels.instance }} keeps failing',
          description:
            '{{ $values.B }} failed attempts in 10 minutes. Crashes wait in the spool and are retried; none is lost.',
        }),
        rule({
          uid: 'podmortem-dead-letters',
          title: 'Indexer dead-lettering records',
          query: promQuery(
            'sum by (instance, code) (increase(podmortem_indexer_records_dead_lettered_total[10m]))',
          ),
          windowS: 600,
          reducer: 'last',
          above: 0,
          for: '0s',
          severity: 'critical',
          panel: panels.deadLettered,
          summary: 'The indexer {{ $labels.instance }} dead-lettered records ({{ $labels.code }})',
          description:
            '{{ $values.B }} records went to the dead-letter topic in 10 minutes: those crashes are not searchable.',
        }),
        rule({
          uid: 'podmortem-consumer-lag',
          title: 'Indexer consumer lag',
          query: promQuery('sum by (topic) (podmortem_indexer_consumer_lag)'),
          windowS: 600,
          reducer: 'last',
          above: 1000,
          for: '10m',
          severity: 'warning',
          panel: panels.consumerLag,
          summary: 'Crashes of {{ $labels.topic }} are waiting to be indexed',
          description: '{{ $values.B }} records of the topic are not yet indexed and committed.',
        }),
      ],
    },
  ];
  return { apiVersion: 1, groups };
}
