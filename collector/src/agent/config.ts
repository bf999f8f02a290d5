import { Type, type Static } from '@sinclair/typebox';
import { CRASH_TOPIC, DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN } from '@podmortem/contract';
import {
  checkTopicSetupSettings,
  kafkaSecurity,
  kafkaSecuritySettings,
  loadConfig,
  topicSetupSettings,
  urlSetting,
} from '@podmortem/contract/runtime';
import { checkStoreSettings, storeSettings } from '@podmortem/contract/store';
import { HANDLER_CONFIG_KEYS } from '../handler-config.ts';

// The agent's whole configuration: one schema, every key documented, read from
// PODMORTEM_COLLECTOR_* variables and validated before anything starts.

export const ENV_PREFIX = 'PODMORTEM_COLLECTOR_';

const Path = (def: string, description: string) => Type.String({ minLength: 1, default: def, description });
const HandlerInt = (
  key:
    | 'maxCoreBytes'
    | 'rateLimitDumps'
    | 'rateLimitWindowSeconds'
    | 'minFreeBytes'
    | 'deadlineSeconds'
    | 'coreHeadMaxBytes'
    | 'moduleCacheMaxBytes'
    | 'moduleMaxBytes'
    | 'moduleCopyBytes'
    | 'moduleCopyMs',
  minimum: number,
) =>
  Type.Integer({
    minimum,
    default: HANDLER_CONFIG_KEYS[key].default as number,
    description: `Handler: ${HANDLER_CONFIG_KEYS[key].description}`,
  });
const Ms = (def: number, description: string) => Type.Integer({ minimum: 1, default: def, description });

export const CollectorConfigSchema = Type.Object(
  {
    nodeName: Type.String({
      minLength: 1,
      maxLength: DNS_SUBDOMAIN_MAX,
      pattern: DNS_SUBDOMAIN_PATTERN,
      description: 'Name of this node (the downward API spec.nodeName); pods are looked up on it only',
    }),
    spoolDir: Path('/var/lib/podmortem/spool', 'Node spool the handler writes crashes into'),
    storageRoot: Path(
      '/var/lib/podmortem/storage',
      'Storage root (the NFS volume) dumps and events are kept on',
    ),
    ...storeSettings(),
    storageMinFreeBytes: Type.Integer({
      minimum: 0,
      default: 256 * 1024 * 1024,
      description: 'Free space kept on the storage root; below it crashes wait in the spool',
    }),
    storageNamespaceQuotaBytes: Type.Integer({
      minimum: 0,
      default: 0,
      description:
        'Bytes of dumps one namespace may hold on the storage root (0 = no quota); over it a crash is recorded with dump.status skipped',
    }),
    captureDefault: Type.Boolean({
      default: true,
      description:
        'Keep the dumps of pods whose pod and namespace set no podmortem.io/capture label or annotation ("true"/"false"); a dump not kept is recorded with dump.status skipped',
    }),
    stateDir: Path(
      '/var/lib/podmortem/state',
      "What the agent keeps across restarts (a hostPath): the original kernel settings' backups and the pod cache (pods.json)",
    ),
    handlerInstallDir: Path(
      '/var/lib/podmortem/bin',
      'Host folder the handler wrapper and its configuration are installed in (short: core_pattern holds 127 bytes)',
    ),
    handlerMaxCoreBytes: HandlerInt('maxCoreBytes', 0),
    handlerCompression: Type.Union([Type.Literal('zstd'), Type.Literal('none')], {
      default: HANDLER_CONFIG_KEYS.compression.default,
      description: `Handler: ${HANDLER_CONFIG_KEYS.compression.description}`,
    }),
    handlerRateLimitDumps: HandlerInt('rateLimitDumps', 0),
    handlerRateLimitWindowSeconds: HandlerInt('rateLimitWindowSeconds', 1),
    handlerMinFreeBytes: HandlerInt('minFreeBytes', 0),
    handlerDeadlineSeconds: HandlerInt('deadlineSeconds', 1),
    handlerCoreHeadMaxBytes: HandlerInt('coreHeadMaxBytes', 0),
    handlerModuleCapture: Type.Union([Type.Literal('copy'), Type.Literal('off')], {
      default: HANDLER_CONFIG_KEYS.moduleCapture.default,
      description: `Handler: ${HANDLER_CONFIG_KEYS.moduleCapture.description}`,
    }),
    handlerModuleCacheMaxBytes: HandlerInt('moduleCacheMaxBytes', 0),
    handlerModuleMaxBytes: HandlerInt('moduleMaxBytes', 0),
    handlerModuleCopyBytes: HandlerInt('moduleCopyBytes', 0),
    handlerModuleCopyMs: HandlerInt('moduleCopyMs', 0),
    manageCorePattern: Type.Boolean({
      default: true,
      description: 'Set kernel.core_pattern and core_pipe_limit on start and restore them on shutdown',
    }),
    corePipeLimit: Type.Integer({
      minimum: 1,
      default: 64,
      description: 'kernel.core_pipe_limit: crashes handled at once (the kernel waits for each handler)',
    }),
    kafkaBrokers: Type.Array(Type.String({ minLength: 1 }), {
      minItems: 1,
      default: ['kafka:9092'],
      description: 'Kafka bootstrap brokers, comma-separated host:port',
    }),
    kafkaTopic: Type.String({
      minLength: 1,
      maxLength: 249,
      default: CRASH_TOPIC,
      description: 'Crash topic',
    }),
    kafkaClientId: Type.String({
      minLength: 1,
      default: 'podmortem-collector',
      description: 'Kafka client id',
    }),
    kafkaTimeoutMs: Ms(30_000, 'Kafka request timeout'),
    ...kafkaSecuritySettings(),
    // Off by default: every node runs an agent, and hundreds of them each asking the controller
    // to create one topic (each needing the right to) is the indexer's job done once.
    ...topicSetupSettings({
      default: false,
      description:
        'Create the crash topic at start-up when it is missing (in the background; crashes wait in the spool meanwhile); the indexer creates it by default, so this is for an agent running without one. Give the topic settings the indexer has',
    }),
    otlpEndpoint: urlSetting(
      'http://otel-collector:4318/v1/logs',
      'OTLP/HTTP logs endpoint (full URL, …/v1/logs)',
    ),
    otlpTimeoutMs: Ms(10_000, 'OTLP export timeout'),
    kubeconfig: Type.String({
      default: '',
      description:
        'kubeconfig file; empty uses the in-cluster service account (or KUBECONFIG / ~/.kube/config)',
    }),
    opsHost: Type.String({
      minLength: 1,
      default: '0.0.0.0',
      description: 'Address of /metrics /healthz /readyz',
    }),
    opsPort: Type.Integer({
      minimum: 0,
      maximum: 65535,
      default: 9402,
      description: 'Port of /metrics /healthz /readyz',
    }),
    concurrency: Type.Integer({
      minimum: 1,
      maximum: 64,
      default: 4,
      description: 'Spool entries delivered at once',
    }),
    maxQueued: Type.Integer({
      minimum: 1,
      default: 10_000,
      description: 'Spool entries held in memory; more wait on disk for a later sweep',
    }),
    sweepIntervalMs: Ms(30_000, 'Spool sweep period (file events can be missed)'),
    retryInitialMs: Ms(500, 'First retry delay of a failed delivery step'),
    retryMaxMs: Ms(30_000, 'Longest retry delay of a failed delivery step'),
    podWaitMs: Ms(
      60_000,
      "How long a crash waits for its container's pod to appear before it is delivered with the cgroup facts only",
    ),
    tombstoneMs: Ms(3_600_000, 'How long deleted pods are remembered, for crashes of pods already gone'),
    orphanAgeMs: Ms(3_600_000, 'Age after which half-written spool files (no meta) are removed'),
    handlerLogFile: Type.String({
      default: '',
      description:
        "The handler's JSON-lines log, followed into the agent's log; empty means <spoolDir>/handler.log",
    }),
    shutdownGraceMs: Ms(25_000, 'Time allowed for a clean shutdown on SIGTERM'),
  },
  { additionalProperties: false },
);

export type CollectorConfig = Static<typeof CollectorConfigSchema>;

export function loadCollectorConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<CollectorConfig> = {},
): CollectorConfig {
  const config = loadConfig(CollectorConfigSchema, ENV_PREFIX, env, overrides);
  checkStoreSettings(config, ENV_PREFIX);
  // Read here for its errors only (exit 2 naming the variable); the agent reads it for its client.
  kafkaSecurity(config, ENV_PREFIX);
  checkTopicSetupSettings(config, ENV_PREFIX);
  return config;
}
