import { Type, type Static } from '@sinclair/typebox';
import { DUMP_DELETION_TOPIC, DUMP_REMOVAL_TOPIC } from '@podmortem/contract';
import {
  checkConsumerGroupTimings,
  configRule,
  envName,
  kafkaSecurity,
  kafkaSecuritySettings,
  loadConfig,
  opsServerSettings,
} from '@podmortem/contract/runtime';
import { checkStoreSettings, storeSettings } from '@podmortem/contract/store';

// Retention's one configuration schema: environment variables PODMORTEM_RETENTION_<KEY>, each
// with a documented default, validated before anything connects (a bad value exits naming it).
// Every rule that deletes is either on by default with a long limit (age) or off (budgets):
// an operator who sets nothing loses no dump younger than a month.

export const CONFIG_PREFIX = 'PODMORTEM_RETENTION_';

const Int = (def: number, minimum: number, description: string) =>
  Type.Integer({ minimum, default: def, description });

export const RetentionConfigSchema = Type.Object({
  maxAgeDays: Int(30, 0, 'Cores older than this many days are removed (the event stays, expired); 0: off'),
  eventMaxAgeDays: Int(
    365,
    0,
    'Crash events older than this many days are deleted from the store, with any core left; 0: off. At least MAX_AGE_DAYS',
  ),
  totalBudgetBytes: Int(
    0,
    0,
    'Bytes of cores the whole store may hold; the oldest go until it is under; 0: off',
  ),
  namespaceBudgetBytes: Int(
    0,
    0,
    'Bytes of cores one namespace may hold; its oldest go until it is under; 0: off',
  ),
  namespaceGraceS: Int(
    7 * 86_400,
    0,
    'Cores of a namespace the Kubernetes API has not listed for this many seconds are removed; 0: off',
  ),
  moduleGraceS: Int(
    3600,
    0,
    'A captured module no remaining core references is deleted once it is this many seconds old (its crash may still be on its way)',
  ),
  intervalS: Int(3600, 1, 'Seconds between two passes of the active instance'),
  dryRun: Type.Boolean({
    default: false,
    description:
      "Log what the rules would delete, with the reason, and delete nothing by rule (users' deletions are still performed)",
  }),
  kubeconfig: Type.String({
    default: '',
    description:
      'Kubeconfig file for listing namespaces (which namespace folders of the store still exist); empty = in-cluster or the default kubeconfig',
  }),
  kafkaBrokers: Type.Array(Type.String({ minLength: 1 }), {
    minItems: 1,
    default: ['kafka:9092'],
    description: 'Kafka bootstrap brokers, comma-separated host:port',
  }),
  kafkaClientId: Type.String({
    minLength: 1,
    default: 'podmortem-retention',
    description: 'Kafka client id',
  }),
  kafkaTimeoutMs: Type.Integer({
    minimum: 100,
    maximum: 300_000,
    default: 30_000,
    description: 'Timeout of one Kafka request; then it is retried',
  }),
  ...kafkaSecuritySettings(),
  removalTopic: Type.String({
    minLength: 1,
    default: DUMP_REMOVAL_TOPIC,
    description: 'Topic the dump removals are published to, for the indexer',
  }),
  deletionTopic: Type.String({
    minLength: 1,
    default: DUMP_DELETION_TOPIC,
    description:
      "Topic of users' dump deletion requests (the query API publishes them); consumed by every replica",
  }),
  deletionGroupId: Type.String({
    minLength: 1,
    default: 'podmortem-retention-deletions',
    description: 'Consumer group of the deletion requests (each request is done by one replica)',
  }),
  leaseTopic: Type.String({
    minLength: 1,
    default: 'podmortem.retention-lease',
    description:
      'One-partition topic whose consumer group elects the one active instance (created at start-up)',
  }),
  leaseGroupId: Type.String({
    minLength: 1,
    default: 'podmortem-retention',
    description: 'Consumer group of the lease: the member assigned partition 0 is the active one',
  }),
  sessionTimeoutMs: Int(
    30_000,
    6000,
    'Session timeout of the lease group (an active member silent this long loses the lease) and of the deletion group',
  ),
  heartbeatIntervalMs: Int(3000, 1, 'Heartbeat interval of the lease and deletion groups'),
  storageRoot: Type.String({
    minLength: 1,
    default: '/var/lib/podmortem/storage',
    description: 'Storage root (the NFS volume) of the dumps, events and modules',
  }),
  ...storeSettings(),
  retryInitialMs: Int(
    200,
    1,
    'First backoff delay when Kafka or the store fails (then doubled, with jitter)',
  ),
  retryMaxMs: Int(10_000, 1, 'Longest backoff delay between two attempts'),
  ...opsServerSettings(9468),
  shutdownGraceMs: Int(
    25_000,
    1,
    'On SIGTERM: time to finish the deletion in flight and leave the lease group',
  ),
});

export type RetentionConfig = Static<typeof RetentionConfigSchema>;

export function loadRetentionConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<RetentionConfig> = {},
): RetentionConfig {
  const config = loadConfig(RetentionConfigSchema, CONFIG_PREFIX, env, overrides);
  checkConsumerGroupTimings(config, CONFIG_PREFIX);
  checkStoreSettings(config, CONFIG_PREFIX);
  // Read here for its errors only (exit 2 naming the variable); main reads it for its client.
  kafkaSecurity(config, CONFIG_PREFIX);
  const must = configRule(CONFIG_PREFIX);
  must(
    config.eventMaxAgeDays === 0 || config.eventMaxAgeDays >= config.maxAgeDays,
    'eventMaxAgeDays',
    `must be 0 or at least ${envName(CONFIG_PREFIX, 'maxAgeDays')} (${config.maxAgeDays}): the event outlives its core`,
  );
  must(config.leaseTopic !== config.removalTopic, 'leaseTopic', 'must differ from the removal topic');
  must(
    ![config.removalTopic, config.leaseTopic].includes(config.deletionTopic),
    'deletionTopic',
    'must differ from the removal and lease topics',
  );
  must(config.deletionGroupId !== config.leaseGroupId, 'deletionGroupId', 'must differ from the lease group');
  return config;
}
