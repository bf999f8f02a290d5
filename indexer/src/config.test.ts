import t from 'tap';
import {
  ANALYSIS_REQUEST_TOPIC,
  CRASH_ALIAS,
  CRASH_DLQ_TOPIC,
  CRASH_TOPIC,
  DUMP_DELETION_TOPIC,
  DUMP_REMOVAL_TOPIC,
} from '@podmortem/contract';
import { ConfigError, configTable } from '@podmortem/contract/runtime';
import { CONFIG_PREFIX, IndexerConfigSchema, loadIndexerConfig } from './config.ts';

t.test('defaults are the contract names and a local stack', async (t) => {
  const c = loadIndexerConfig({});
  t.equal(c.topic, CRASH_TOPIC);
  t.equal(c.dlqTopic, CRASH_DLQ_TOPIC);
  t.equal(c.dumpRemovalTopic, DUMP_REMOVAL_TOPIC);
  t.equal(c.indexAlias, CRASH_ALIAS);
  t.same(c.kafkaBrokers, ['kafka:9092']);
  t.equal(c.elasticsearchUrl, 'http://elasticsearch:9200');
  t.equal(c.fromBeginning, true);
  t.equal(c.analysisRequestTopic, ANALYSIS_REQUEST_TOPIC);
  t.equal(c.dumpDeletionTopic, DUMP_DELETION_TOPIC);
});

t.test("the indexer sets the pipeline's topics up by default", async (t) => {
  const c = loadIndexerConfig({});
  t.equal(c.createTopics, true, 'creates missing topics');
  t.equal(c.topicPartitions, 6);
  t.equal(c.topicReplicationFactor, -1, "the broker's default.replication.factor");
  t.equal(c.topicMaxMessageBytes, 1_048_588, "Kafka's default max.message.bytes");
  const set = loadIndexerConfig({
    PODMORTEM_INDEXER_CREATE_TOPICS: 'false',
    PODMORTEM_INDEXER_TOPIC_PARTITIONS: '12',
    PODMORTEM_INDEXER_TOPIC_REPLICATION_FACTOR: '3',
    PODMORTEM_INDEXER_TOPIC_MAX_MESSAGE_BYTES: '2097152',
  });
  t.same(
    [set.createTopics, set.topicPartitions, set.topicReplicationFactor, set.topicMaxMessageBytes],
    [false, 12, 3, 2_097_152],
  );
});

t.test('environment variables override defaults, typed', async (t) => {
  const c = loadIndexerConfig({
    PODMORTEM_INDEXER_KAFKA_BROKERS: 'a:1, b:2',
    PODMORTEM_INDEXER_BULK_MAX_RECORDS: '250',
    PODMORTEM_INDEXER_FROM_BEGINNING: 'false',
    PODMORTEM_INDEXER_INDEX_ALIAS: 'crashes-test',
    PODMORTEM_INDEXER_RETENTION_DAYS: '0',
  });
  t.same(c.kafkaBrokers, ['a:1', 'b:2']);
  t.equal(c.bulkMaxRecords, 250);
  t.equal(c.fromBeginning, false);
  t.equal(c.indexAlias, 'crashes-test');
  t.equal(c.retentionDays, 0);
});

t.test('a bad value throws a ConfigError naming the variable', async (t) => {
  const cases: [Record<string, string>, string][] = [
    [{ PODMORTEM_INDEXER_BULK_MAX_RECORDS: 'many' }, 'PODMORTEM_INDEXER_BULK_MAX_RECORDS'],
    [{ PODMORTEM_INDEXER_BULK_MAX_RECORDS: '0' }, 'PODMORTEM_INDEXER_BULK_MAX_RECORDS'],
    [{ PODMORTEM_INDEXER_ELASTICSEARCH_URL: 'es:9200' }, 'PODMORTEM_INDEXER_ELASTICSEARCH_URL'],
    [{ PODMORTEM_INDEXER_INDEX_ALIAS: 'Upper-Case' }, 'PODMORTEM_INDEXER_INDEX_ALIAS'],
    [{ PODMORTEM_INDEXER_KAFKA_BROKERS: ' , ' }, 'PODMORTEM_INDEXER_KAFKA_BROKERS'],
    [{ PODMORTEM_INDEXER_FROM_BEGINNING: 'yes' }, 'PODMORTEM_INDEXER_FROM_BEGINNING'],
    [{ PODMORTEM_INDEXER_OPS_PORT: '70000' }, 'PODMORTEM_INDEXER_OPS_PORT'],
    [
      { PODMORTEM_INDEXER_HEARTBEAT_INTERVAL_MS: '20000', PODMORTEM_INDEXER_SESSION_TIMEOUT_MS: '30000' },
      'PODMORTEM_INDEXER_HEARTBEAT_INTERVAL_MS',
    ],
    [{ PODMORTEM_INDEXER_BULK_SHARD_WAIT_MS: '60000' }, 'PODMORTEM_INDEXER_BULK_SHARD_WAIT_MS'],
    [{ PODMORTEM_INDEXER_RETRY_INITIAL_MS: '20000' }, 'PODMORTEM_INDEXER_RETRY_INITIAL_MS'],
    [{ PODMORTEM_INDEXER_DLQ_TOPIC: CRASH_TOPIC }, 'PODMORTEM_INDEXER_DLQ_TOPIC'],
    [{ PODMORTEM_INDEXER_DUMP_REMOVAL_TOPIC: CRASH_DLQ_TOPIC }, 'PODMORTEM_INDEXER_DUMP_REMOVAL_TOPIC'],
    [{ PODMORTEM_INDEXER_DUMP_REMOVAL_TOPIC: '' }, 'PODMORTEM_INDEXER_DUMP_REMOVAL_TOPIC'],
    [{ PODMORTEM_INDEXER_ANALYSIS_REQUEST_TOPIC: CRASH_TOPIC }, 'PODMORTEM_INDEXER_ANALYSIS_REQUEST_TOPIC'],
    [
      { PODMORTEM_INDEXER_DUMP_DELETION_TOPIC: ANALYSIS_REQUEST_TOPIC },
      'PODMORTEM_INDEXER_DUMP_DELETION_TOPIC',
    ],
    [{ PODMORTEM_INDEXER_CREATE_TOPICS: 'maybe' }, 'PODMORTEM_INDEXER_CREATE_TOPICS'],
    [{ PODMORTEM_INDEXER_TOPIC_PARTITIONS: '0' }, 'PODMORTEM_INDEXER_TOPIC_PARTITIONS'],
    [{ PODMORTEM_INDEXER_TOPIC_PARTITIONS: '-1' }, 'PODMORTEM_INDEXER_TOPIC_PARTITIONS'],
    [{ PODMORTEM_INDEXER_TOPIC_REPLICATION_FACTOR: '0' }, 'PODMORTEM_INDEXER_TOPIC_REPLICATION_FACTOR'],
    [{ PODMORTEM_INDEXER_TOPIC_REPLICATION_FACTOR: '-2' }, 'PODMORTEM_INDEXER_TOPIC_REPLICATION_FACTOR'],
    [{ PODMORTEM_INDEXER_TOPIC_MAX_MESSAGE_BYTES: '100' }, 'PODMORTEM_INDEXER_TOPIC_MAX_MESSAGE_BYTES'],
  ];
  for (const [env, variable] of cases) {
    const err = t.throws(() => loadIndexerConfig(env), ConfigError, variable) as unknown;
    t.ok(err instanceof ConfigError && err.key === variable && err.message.startsWith(variable), variable);
  }
});

t.test('every key is documented for the README table', async (t) => {
  for (const [key, prop] of Object.entries(IndexerConfigSchema.properties)) {
    t.ok(prop.description, `${key} has a description`);
    t.not(prop.default, undefined, `${key} has a default`);
  }
  const table = configTable(IndexerConfigSchema, CONFIG_PREFIX);
  t.match(table, /\| `PODMORTEM_INDEXER_ELASTICSEARCH_URL` \| `http:\/\/elasticsearch:9200` \|/);
});
