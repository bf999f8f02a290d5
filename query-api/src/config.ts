import { Type, type Static } from '@sinclair/typebox';
import {
  ANALYSIS_REQUEST_TOPIC,
  CRASH_ALIAS,
  DUMP_DELETION_TOPIC,
  POD_METRIC_QUERIES,
} from '@podmortem/contract';
import { isIP } from 'node:net';
import {
  configRule,
  elasticsearchConnection,
  elasticsearchSettings,
  kafkaSecurity,
  kafkaSecuritySettings,
  loadConfig,
  opsServerSettings,
  urlSetting,
} from '@podmortem/contract/runtime';
import { checkStoreSettings, storeSettings } from '@podmortem/contract/store';

// The query API's configuration: one schema, every key with its default and meaning, read from
// PODMORTEM_API_* variables and validated before anything is served.

export const CONFIG_PREFIX = 'PODMORTEM_API_';

const str = (def: string, description: string) => Type.String({ default: def, description });
const int = (def: number, min: number, max: number, description: string) =>
  Type.Integer({ default: def, minimum: min, maximum: max, description });

export const ConfigSchema = Type.Object({
  host: str('0.0.0.0', 'Address the HTTP server listens on'),
  port: int(8080, 0, 65535, 'Port of the HTTP server (0 picks a free one)'),
  storageRoot: Type.String({
    default: '/var/lib/podmortem/storage',
    minLength: 1,
    description: 'The storage root (NFS volume) the collector stores dumps under',
  }),
  ...storeSettings(),
  elasticsearchUrl: urlSetting('http://elasticsearch:9200', 'Elasticsearch URL'),
  ...elasticsearchSettings(),
  crashIndex: Type.String({
    default: CRASH_ALIAS,
    minLength: 1,
    pattern: '^[a-z0-9][a-z0-9._*-]*$',
    description:
      'The alias the indexer writes under: searches go through it, a crash by id is read from <alias>-YYYY.MM of its id’s month',
  }),
  prometheusUrl: urlSetting('http://prometheus:9090', 'Prometheus URL (query_range API)'),
  kubeconfig: str(
    '',
    'Kubeconfig file for TokenReview/SubjectAccessReview; empty = in-cluster or the default kubeconfig',
  ),
  authCacheTtlMs: int(
    10_000,
    0,
    600_000,
    'How long a TokenReview or SubjectAccessReview answer (a refused token too) is reused',
  ),
  kubeTimeoutMs: int(
    5000,
    100,
    120_000,
    'How long one TokenReview or SubjectAccessReview may take; then the request gets a 503',
  ),
  authFailureMax: int(
    20,
    1,
    1_000_000,
    'TokenReviews a client address may cause per window (in flight or refused); then 429 before any review',
  ),
  authFailureWindowMs: int(60_000, 1000, 3_600_000, 'The window of that limit'),
  trustProxy: Type.Array(Type.String({ minLength: 1 }), {
    default: [],
    description:
      'Proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For names the client: the address the login limit and the audit use; empty = the peer address',
  }),
  elasticsearchTimeoutMs: int(15_000, 100, 300_000, 'Timeout of one Elasticsearch request'),
  prometheusTimeoutMs: int(10_000, 100, 300_000, 'Timeout of one Prometheus query'),
  namespaceCacheTtlMs: int(30_000, 0, 600_000, 'How long the namespaces present in the index are reused'),
  rateLimitMax: int(600, 1, 1_000_000, 'Requests per caller per rate-limit window'),
  rateLimitWindowMs: int(60_000, 1000, 3_600_000, 'The rate-limit window'),
  bodyLimitBytes: int(16_384, 1024, 1_048_576, 'Largest request body accepted'),
  maxPageSize: int(500, 1, 10_000, 'Largest `limit` of a search page'),
  contextBeforeS: int(1800, 60, 7 * 86_400, 'Default context window before the crash, seconds'),
  contextAfterS: int(300, 0, 86_400, 'Default context window after the crash, seconds'),
  contextLogLines: int(100, 1, 1000, 'Default number of log lines in a crash context'),
  promqlMemory: str(
    POD_METRIC_QUERIES.memory,
    'PromQL for the memory working set ({namespace}, {pod}, {container} are filled in, escaped)',
  ),
  promqlCpu: str(POD_METRIC_QUERIES.cpu, 'PromQL for CPU use'),
  promqlRestarts: str(POD_METRIC_QUERIES.restarts, 'PromQL for container restarts'),
  promqlOomKills: str(POD_METRIC_QUERIES.oomKills, 'PromQL for OOM kills'),
  logsIndex: Type.String({
    default: 'logs-*',
    minLength: 1,
    description: 'Elasticsearch index pattern of the pods’ logs',
  }),
  logsFields: Type.Union([Type.Literal('ecs'), Type.Literal('otel')], {
    default: 'ecs',
    description:
      'Field-name preset of the logs index: ecs (kubernetes.*) or otel (resource.attributes.k8s.*)',
  }),
  logsNamespaceField: str('', 'Overrides the preset’s namespace field'),
  logsPodField: str('', 'Overrides the preset’s pod name field'),
  logsContainerField: str('', 'Overrides the preset’s container name field'),
  logsMessageField: str('', 'Overrides the preset’s message field'),
  logsTimestampField: str('', 'Overrides the preset’s timestamp field'),
  grafanaUrl: urlSetting('', 'Grafana base URL for context links; empty = no link'),
  grafanaDashboardUid: str('podmortem-pod', 'UID of the Grafana pod dashboard'),
  kibanaUrl: urlSetting('', 'Kibana base URL for Discover links; empty = no link'),
  kibanaDataView: str('', 'Kibana data view id for the logs; empty = Kibana’s default'),
  groupsNewWithin: Type.String({
    default: '24h',
    pattern: '^[1-9][0-9]{0,3}[mhd]$',
    description:
      'Default `new_within` of GET /v1/groups: a group is new when its first crash is more recent (30m, 24h, 7d)',
  }),
  kafkaBrokers: Type.Array(Type.String({ minLength: 1 }), {
    minItems: 1,
    default: ['kafka:9092'],
    description: 'Kafka bootstrap brokers for re-analysis requests, comma-separated host:port',
  }),
  kafkaClientId: str('podmortem-query-api', 'Kafka client id'),
  kafkaTimeoutMs: int(
    5000,
    100,
    120_000,
    'Kafka connection and request timeout of a re-analysis request (then 503)',
  ),
  ...kafkaSecuritySettings(),
  requestTopic: Type.String({
    minLength: 1,
    default: ANALYSIS_REQUEST_TOPIC,
    description: 'Topic the re-analysis requests are published to (the analyzer consumes it)',
  }),
  dumpDeletionTopic: Type.String({
    minLength: 1,
    default: DUMP_DELETION_TOPIC,
    description:
      "Topic a user's dump deletion request is published to (the retention service performs it); same brokers and timeout as re-analysis",
  }),
  otlpTracesEndpoint: urlSetting('', 'OTLP/HTTP traces endpoint (…/v1/traces); empty = no traces exported'),
  docs: Type.Boolean({ default: true, description: 'Serve the OpenAPI UI at /docs' }),
  shutdownGraceMs: int(10_000, 0, 300_000, 'How long in-flight requests get on SIGTERM'),
  // /metrics lists namespaces and download counts: on a port of its own, like every service's.
  ...opsServerSettings(9467),
});

export type Config = Static<typeof ConfigSchema>;

export function readConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<Config> = {},
): Config {
  const config = loadConfig(ConfigSchema, CONFIG_PREFIX, env, overrides);
  checkStoreSettings(config, CONFIG_PREFIX);
  // Read here for their errors only (exit 2 naming the variable); main reads them for its clients.
  kafkaSecurity(config, CONFIG_PREFIX);
  elasticsearchConnection(config, CONFIG_PREFIX);
  const must = configRule(CONFIG_PREFIX);
  for (const proxy of config.trustProxy)
    must(isAddressOrCidr(proxy), 'trustProxy', `${JSON.stringify(proxy)} is not an IP address or CIDR`);
  return config;
}

/** 10.0.0.1, fd00::1, 10.0.0.0/8 or fd00::/8: what Fastify's trustProxy takes. */
function isAddressOrCidr(value: string): boolean {
  const [address = '', bits, ...rest] = value.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (bits === undefined) return true;
  return /^[0-9]{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

export interface LogsFields {
  namespace: string;
  pod: string;
  container: string;
  message: string;
  timestamp: string;
}

const logsPresets: Record<Config['logsFields'], LogsFields> = {
  ecs: {
    namespace: 'kubernetes.namespace',
    pod: 'kubernetes.pod.name',
    container: 'kubernetes.container.name',
    message: 'message',
    timestamp: '@timestamp',
  },
  otel: {
    namespace: 'resource.attributes.k8s.namespace.name',
    pod: 'resource.attributes.k8s.pod.name',
    container: 'resource.attributes.k8s.container.name',
    message: 'body.text',
    timestamp: '@timestamp',
  },
};

export function logsFieldsOf(config: Config): LogsFields {
  const preset = logsPresets[config.logsFields];
  return {
    namespace: config.logsNamespaceField || preset.namespace,
    pod: config.logsPodField || preset.pod,
    container: config.logsContainerField || preset.container,
    message: config.logsMessageField || preset.message,
    timestamp: config.logsTimestampField || preset.timestamp,
  };
}
