// The part of Grafana's dashboard JSON model (schemaVersion 39) the podmortem dashboards use, typed
// so a misspelt key fails the compiler instead of being ignored by Grafana.

export interface DataSourceRef {
  type: 'prometheus' | 'elasticsearch';
  uid: string;
}

export interface GridPos {
  h: number;
  w: number;
  x: number;
  y: number;
}

export interface PromTarget {
  refId: string;
  datasource: DataSourceRef;
  expr: string;
  legendFormat: string;
  range: boolean;
  instant: boolean;
}

export interface EsMetric {
  id: string;
  type: 'count' | 'raw_data';
  settings?: { size: string };
}

export interface EsTermsAgg {
  id: string;
  type: 'terms';
  field: string;
  settings: { size: string; order: 'asc' | 'desc'; orderBy: '_count' | '_term'; min_doc_count: string };
}

export interface EsDateHistogramAgg {
  id: string;
  type: 'date_histogram';
  field: string;
  settings: { interval: string; min_doc_count: string; trimEdges: string };
}

export type EsBucketAgg = EsTermsAgg | EsDateHistogramAgg;

export interface EsTarget {
  refId: string;
  datasource: DataSourceRef;
  /** Lucene query string; template variables are interpolated with the `lucene` format. */
  query: string;
  alias: string;
  metrics: EsMetric[];
  bucketAggs: EsBucketAgg[];
  timeField: string;
}

export type Target = PromTarget | EsTarget;

export interface DataLink {
  title: string;
  url: string;
}

export interface FieldConfig {
  defaults: {
    unit?: string;
    decimals?: number;
    min?: number;
    links?: DataLink[];
    color?: { mode: string };
    custom?: Record<string, unknown>;
    thresholds?: { mode: 'absolute'; steps: { color: string; value: number | null }[] };
  };
  overrides: {
    matcher: { id: 'byName'; options: string };
    properties: { id: string; value: unknown }[];
  }[];
}

export interface Transformation {
  id: 'filterFieldsByName' | 'organize';
  options: Record<string, unknown>;
}

export interface Panel {
  id: number;
  type: 'timeseries' | 'bargauge' | 'table' | 'stat' | 'row';
  title: string;
  description?: string;
  gridPos: GridPos;
  datasource?: DataSourceRef;
  targets?: Target[];
  fieldConfig?: FieldConfig;
  options?: Record<string, unknown>;
  transformations?: Transformation[];
  collapsed?: boolean;
  panels?: Panel[];
}

export interface VariableOption {
  selected: boolean;
  text: string | string[];
  value: string | string[];
}

export interface QueryVariable {
  type: 'query';
  name: string;
  label: string;
  datasource: DataSourceRef;
  /** Elasticsearch: a JSON `{"find": "terms", …}`; Prometheus: `label_values(selector, label)`. */
  query: string;
  definition: string;
  /** 1: on dashboard load, 2: on time range change. */
  refresh: 1 | 2;
  multi: boolean;
  includeAll: boolean;
  allValue?: string;
  sort: 1;
  regex: '';
  hide: 0;
  options: [];
  current: VariableOption | Record<string, never>;
}

/** The Elasticsearch variable query: the values of one field among the documents matching `query`. */
export interface EsTermsFind {
  find: 'terms';
  field: string;
  query?: string;
  size?: number;
}

export interface BuiltInAnnotation {
  builtIn: 1;
  datasource: { type: 'grafana'; uid: '-- Grafana --' };
  enable: true;
  hide: true;
  iconColor: string;
  name: 'Annotations & Alerts';
  type: 'dashboard';
}

export interface EsAnnotation {
  name: string;
  datasource: DataSourceRef;
  enable: boolean;
  iconColor: string;
  target: { refId: string; query: string };
  timeField: string;
  textField: string;
  tagsField: string;
}

export type Annotation = BuiltInAnnotation | EsAnnotation;

export interface DashboardLink {
  title: string;
  type: 'dashboards';
  tags: string[];
  asDropdown: boolean;
  includeVars: boolean;
  keepTime: boolean;
}

export interface Dashboard {
  /** First, so the file opens with the note that it is generated. */
  description: string;
  uid: string;
  title: string;
  tags: string[];
  editable: boolean;
  graphTooltip: 0 | 1 | 2;
  schemaVersion: number;
  version: number;
  refresh: string;
  timezone: 'browser' | 'utc';
  time: { from: string; to: string };
  templating: { list: QueryVariable[] };
  annotations: { list: Annotation[] };
  links: DashboardLink[];
  panels: Panel[];
}

export function isEsTarget(target: Target): target is EsTarget {
  return target.datasource.type === 'elasticsearch';
}

/** Every panel, rows' children included. */
export function allPanels(dashboard: Dashboard): Panel[] {
  return dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}
