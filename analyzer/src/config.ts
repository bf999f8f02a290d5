import { Type, type Static } from '@sinclair/typebox';
import { ANALYSIS_REQUEST_TOPIC, ANALYSIS_TOPIC, CRASH_TOPIC } from '@podmortem/contract';
import {
  checkConsumerGroupTimings,
  configRule,
  kafkaSecurity,
  kafkaSecuritySettings,
  opsServerSettings,
  loadConfig,
} from '@podmortem/contract/runtime';
import { checkStoreSettings, storeSettings } from '@podmortem/contract/store';
import { badDebuginfodUrls } from './debuginfod.ts';
import { UNWINDER_DEFAULTS } from './unwinder.ts';

// The analyzer's one configuration schema: environment variables PODMORTEM_ANALYZER_<KEY>, each
// with a documented default, validated before anything connects (a bad value exits naming it).

export const CONFIG_PREFIX = 'PODMORTEM_ANALYZER_';

const Ms = (def: number, description: string, minimum = 1) =>
  Type.Integer({ minimum, default: def, description });
const Bytes = (def: number, description: string, minimum = 1) =>
  Type.Integer({ minimum, default: def, description });

export const AnalyzerConfigSchema = Type.Object({
  kafkaBrokers: Type.Array(Type.String({ minLength: 1 }), {
    minItems: 1,
    default: ['kafka:9092'],
    description: 'Kafka bootstrap brokers, comma-separated host:port',
  }),
  kafkaClientId: Type.String({ minLength: 1, default: 'podmortem-analyzer', description: 'Kafka client id' }),
  kafkaTimeoutMs: Type.Integer({
    minimum: 100,
    maximum: 300_000,
    default: 30_000,
    description: 'Timeout of one Kafka request (metadata and admin calls too); then it is retried',
  }),
  ...kafkaSecuritySettings(),
  groupId: Type.String({
    minLength: 1,
    default: 'podmortem-analyzer',
    description:
      'Consumer group; instances with the same group share the partitions (scale out by adding some)',
  }),
  topic: Type.String({ minLength: 1, default: CRASH_TOPIC, description: 'Topic of crash events' }),
  analysisTopic: Type.String({
    minLength: 1,
    default: ANALYSIS_TOPIC,
    description: 'Topic the analysis records are published to, keyed like the crash',
  }),
  requestTopic: Type.String({
    minLength: 1,
    default: ANALYSIS_REQUEST_TOPIC,
    description: 'Topic of re-analysis requests (crash events sent again by the query API)',
  }),
  fromBeginning: Type.Boolean({
    default: true,
    description: 'Where a new group starts: the oldest record (true) or new records only (false)',
  }),
  concurrency: Type.Integer({
    minimum: 1,
    maximum: 64,
    default: 1,
    description: 'Partitions analysed at the same time by one instance (each runs one unwinder at a time)',
  }),
  sessionTimeoutMs: Ms(30_000, 'Kafka group session timeout: a member silent this long is removed', 6000),
  heartbeatIntervalMs: Ms(3000, 'Kafka group heartbeat interval, also while a crash is being unwound'),
  storageRoot: Type.String({
    minLength: 1,
    default: '/var/lib/podmortem/storage',
    description: 'Storage root (the NFS volume) the dumps and the captured modules are read from',
  }),
  ...storeSettings(),
  workDir: Type.String({
    minLength: 1,
    default: '/tmp',
    description: 'Folder of the per-crash temporary folders (the decompressed core, the modules)',
  }),
  maxTempBytes: Bytes(
    4 * 1024 ** 3,
    'Temporary disk one crash may take (decompressed core plus modules); a crash needing more is skipped with the reason',
    1024 * 1024,
  ),
  unwinderCommand: Type.String({
    minLength: 1,
    default: UNWINDER_DEFAULTS.command,
    description: 'The eu-stack executable (a path or a name on PATH)',
  }),
  prlimitCommand: Type.String({
    minLength: 1,
    default: UNWINDER_DEFAULTS.prlimitCommand,
    description: 'The prlimit executable that puts the unwinder under its limits',
  }),
  unwindDeadlineMs: Ms(
    UNWINDER_DEFAULTS.deadlineMs,
    "Wall-clock time after which the unwinder's process group is killed",
  ),
  unwindAddressSpaceBytes: Bytes(
    UNWINDER_DEFAULTS.addressSpaceBytes,
    'Address-space limit (RLIMIT_AS) of the unwinder',
    1024 * 1024,
  ),
  maxFramesPerThread: Type.Integer({
    minimum: 1,
    maximum: 256,
    default: UNWINDER_DEFAULTS.maxFramesPerThread,
    description: 'Frames kept per thread',
  }),
  maxOutputBytes: Bytes(
    UNWINDER_DEFAULTS.maxOutputBytes,
    "Bytes of the unwinder's output read before it is stopped",
    1024,
  ),
  debuginfodUrls: Type.String({
    default: '',
    description:
      'debuginfod servers the unwinder asks for separate debug info, space-separated (DEBUGINFOD_URLS); empty: none',
  }),
  retryInitialMs: Ms(200, 'First backoff delay when Kafka or the store fails (then doubled, with jitter)'),
  retryMaxMs: Ms(10_000, 'Longest backoff delay between two attempts'),
  ...opsServerSettings(9466),
  shutdownGraceMs: Ms(25_000, 'On SIGTERM: time to stop the unwind in flight and leave the group'),
});

export type AnalyzerConfig = Static<typeof AnalyzerConfigSchema>;

export function loadAnalyzerConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<AnalyzerConfig> = {},
): AnalyzerConfig {
  const config = loadConfig(AnalyzerConfigSchema, CONFIG_PREFIX, env, overrides);
  checkConsumerGroupTimings(config, CONFIG_PREFIX);
  checkStoreSettings(config, CONFIG_PREFIX);
  // Read here for its errors only (exit 2 naming the variable); main reads it for its client.
  kafkaSecurity(config, CONFIG_PREFIX);
  const must = configRule(CONFIG_PREFIX);
  must(
    config.analysisTopic !== config.topic,
    'analysisTopic',
    'must differ from the crash topic it is read from',
  );
  must(
    config.requestTopic !== config.analysisTopic && config.requestTopic !== config.topic,
    'requestTopic',
    'must differ from the analysis topic and the crash topic',
  );
  const badUrls = badDebuginfodUrls(config.debuginfodUrls);
  must(badUrls === undefined, 'debuginfodUrls', badUrls ?? '');
  return config;
}
