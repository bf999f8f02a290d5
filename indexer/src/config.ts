import { Type, type Static } from '@sinclair/typebox';
import {
  ANALYSIS_REQUEST_TOPIC,
  ANALYSIS_TOPIC,
  CRASH_ALIAS,
  CRASH_DLQ_TOPIC,
  CRASH_TOPIC,
  DUMP_DELETION_TOPIC,
  DUMP_REMOVAL_TOPIC,
} from '@podmortem/contract';
import {
  checkConsumerGroupTimings,
  checkTopicSetupSettings,
  configRule,
  elasticsearchConnection,
  elasticsearchSettings,
  opsServerSettings,
  envName,
  kafkaSecurity,
  kafkaSecuritySettings,
  loadConfig,
  topicSetupSettings,
  urlSetting,
} from '@podmortem/contract/runtime';

// The indexer's one configuration schema: environment variables PODMORTEM_INDEXER_<KEY>, each with
// a documented default, validated before anything connects (a bad value exits naming the variable).

export const CONFIG_PREFIX = 'PODMORTEM_INDEXER_';

const Ms = (def: number, description: string, minimum = 1) =>
  Type.Integer({ minimum, default: def, description });

export const IndexerConfigSchema = Type.Object({
  kafkaBrokers: Type.Array(Type.String({ minLength: 1 }), {
    minItems: 1,
    default: ['kafka:9092'],
    description: 'Kafka bootstrap brokers, comma-separated host:port',
  }),
  kafkaClientId: Type.String({ minLength: 1, default: 'podmortem-indexer', description: 'Kafka client id' }),
  kafkaTimeoutMs: Type.Integer({
    minimum: 100,
    maximum: 300_000,
    default: 30_000,
    description: 'Timeout of one Kafka request (metadata and admin calls too); then it is retried',
  }),
  ...kafkaSecuritySettings(),
  groupId: Type.String({
    minLength: 1,
    default: 'podmortem-indexer',
    description: 'Consumer group; instances with the same group share the partitions',
  }),
  topic: Type.String({ minLength: 1, default: CRASH_TOPIC, description: 'Topic of crash events' }),
  analysisTopic: Type.String({
    minLength: 1,
    default: ANALYSIS_TOPIC,
    description: "Topic of analysis records, merged into their crash's document",
  }),
  dumpRemovalTopic: Type.String({
    minLength: 1,
    default: DUMP_REMOVAL_TOPIC,
    description: "Topic of dump removals (expired or deleted cores), merged into their crash's document",
  }),
  dlqTopic: Type.String({
    minLength: 1,
    default: CRASH_DLQ_TOPIC,
    description: 'Dead-letter topic for records that are invalid or that Elasticsearch rejects',
  }),
  analysisRequestTopic: Type.String({
    minLength: 1,
    default: ANALYSIS_REQUEST_TOPIC,
    description:
      'Topic of re-analysis requests (the query API produces, the analyzer consumes); the indexer only creates it (createTopics)',
  }),
  dumpDeletionTopic: Type.String({
    minLength: 1,
    default: DUMP_DELETION_TOPIC,
    description:
      "Topic of users' dump deletion requests (the query API produces, retention consumes); the indexer only creates it (createTopics)",
  }),
  ...topicSetupSettings({
    default: true,
    description:
      "Create the pipeline's topics that are missing at start-up (crash, analysis, dump removal, dead-letter, re-analysis request and dump deletion topics); a topic not created is a warning with the command that creates it",
  }),
  fromBeginning: Type.Boolean({
    default: true,
    description: 'Where a new group starts: the oldest record (true) or new records only (false)',
  }),
  partitionsConsumedConcurrently: Type.Integer({
    minimum: 1,
    maximum: 64,
    default: 2,
    description: 'Partitions whose batches are indexed at the same time',
  }),
  fetchMinBytes: Type.Integer({
    minimum: 1,
    default: 1,
    description: 'Bytes a fetch waits for (up to fetchMaxWaitMs): more makes bigger bulks under load',
  }),
  fetchMaxWaitMs: Ms(500, 'Longest wait of a fetch for fetchMinBytes'),
  sessionTimeoutMs: Ms(30_000, 'Kafka group session timeout: a member silent this long is removed', 6000),
  heartbeatIntervalMs: Ms(3000, 'Kafka group heartbeat interval, also while a batch waits for Elasticsearch'),
  elasticsearchUrl: urlSetting('http://elasticsearch:9200', 'Elasticsearch URL'),
  ...elasticsearchSettings(),
  elasticsearchRequestTimeoutMs: Ms(60_000, 'Timeout of one request to Elasticsearch'),
  indexAlias: Type.String({
    pattern: '^[a-z0-9][a-z0-9._-]*$',
    maxLength: 200,
    default: CRASH_ALIAS,
    description:
      'Read alias of the crash indices; indices are `<alias>-YYYY.MM`, templates are named after it',
  }),
  indexShards: Type.Integer({
    minimum: 1,
    maximum: 64,
    default: 1,
    description: 'Primary shards per monthly index',
  }),
  indexReplicas: Type.Integer({
    minimum: 0,
    maximum: 16,
    default: 0,
    description: 'Replicas per monthly index',
  }),
  bulkMaxRecords: Type.Integer({
    minimum: 1,
    maximum: 10_000,
    default: 1000,
    description: 'Records per bulk request; offsets are committed after each acknowledged bulk',
  }),
  bulkMaxBytes: Type.Integer({
    minimum: 1024,
    default: 8 * 1024 * 1024,
    description: 'Bytes of record values per bulk request (a bigger single record goes alone)',
  }),
  bulkShardWaitMs: Ms(
    30_000,
    'How long Elasticsearch waits for an unavailable shard before answering 503 for the items of a bulk',
  ),
  retryInitialMs: Ms(
    200,
    'First backoff delay when Elasticsearch or Kafka fails (then doubled, with jitter)',
  ),
  retryMaxMs: Ms(10_000, 'Longest backoff delay between two attempts'),
  retentionDays: Type.Integer({
    minimum: 0,
    default: 395,
    description:
      'Monthly indices whose whole month is older than this many days are deleted; 0 keeps everything',
  }),
  retentionIntervalMs: Ms(3_600_000, 'How often the retention job runs', 1000),
  ...opsServerSettings(9465),
  shutdownGraceMs: Ms(25_000, 'On SIGTERM: time to finish the batch in flight and leave the group'),
});

export type IndexerConfig = Static<typeof IndexerConfigSchema>;

export function loadIndexerConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<IndexerConfig> = {},
): IndexerConfig {
  const config = loadConfig(IndexerConfigSchema, CONFIG_PREFIX, env, overrides);
  checkConsumerGroupTimings(config, CONFIG_PREFIX);
  checkTopicSetupSettings(config, CONFIG_PREFIX);
  // Read here for their errors only (exit 2 naming the variable); main reads them for its clients.
  kafkaSecurity(config, CONFIG_PREFIX);
  elasticsearchConnection(config, CONFIG_PREFIX);
  const must = configRule(CONFIG_PREFIX);
  must(
    config.bulkShardWaitMs < config.elasticsearchRequestTimeoutMs,
    'bulkShardWaitMs',
    `must be shorter than ${envName(CONFIG_PREFIX, 'elasticsearchRequestTimeoutMs')} (${config.elasticsearchRequestTimeoutMs})`,
  );
  must(config.dlqTopic !== config.topic, 'dlqTopic', 'must differ from the topic it collects rejects of');
  must(
    config.analysisTopic !== config.topic && config.analysisTopic !== config.dlqTopic,
    'analysisTopic',
    'must differ from the crash topic and the dead-letter topic',
  );
  must(
    ![config.topic, config.analysisTopic, config.dlqTopic].includes(config.dumpRemovalTopic),
    'dumpRemovalTopic',
    'must differ from the crash, analysis and dead-letter topics',
  );
  const consumed = [config.topic, config.analysisTopic, config.dumpRemovalTopic, config.dlqTopic];
  must(
    !consumed.includes(config.analysisRequestTopic),
    'analysisRequestTopic',
    'must differ from the crash, analysis, dump removal and dead-letter topics',
  );
  must(
    ![...consumed, config.analysisRequestTopic].includes(config.dumpDeletionTopic),
    'dumpDeletionTopic',
    'must differ from the crash, analysis, dump removal, dead-letter and re-analysis request topics',
  );
  return config;
}
