import t from 'tap';
import { Type } from '@sinclair/typebox';
import { loadConfig } from './config.ts';
import { ConfigError } from './errors.ts';
import { checkTopicSetupSettings, createTopicCommand, topicSetupSettings } from './topics-setup.ts';

// The settings and the command of a topic setup, without Kafka (test/topics-setup.test.ts runs it
// against the real one).

t.test("the command creates the topic as the service would: the broker's replication when -1", async (t) => {
  const spec = {
    topic: 'podmortem.crashes',
    partitions: 6,
    replicationFactor: -1,
    configs: { 'max.message.bytes': '1048588' },
  };
  t.equal(
    createTopicCommand(spec, ['k1:9092', 'k2:9092']),
    'kafka-topics.sh --bootstrap-server k1:9092,k2:9092 --create --topic podmortem.crashes --partitions 6 --config max.message.bytes=1048588',
  );
  t.equal(
    createTopicCommand({ ...spec, replicationFactor: 3, configs: {} }, ['k1:9092']),
    'kafka-topics.sh --bootstrap-server k1:9092 --create --topic podmortem.crashes --partitions 6 --replication-factor 3',
  );
});

t.test('an argument the shell would split or expand is quoted', async (t) => {
  const spec = { topic: 'a b', partitions: 1, replicationFactor: -1, configs: { x: "it's $HOME" } };
  t.equal(
    createTopicCommand(spec, ['k:1']),
    `kafka-topics.sh --bootstrap-server k:1 --create --topic 'a b' --partitions 1 --config 'x=it'\\''s $HOME'`,
  );
});

t.test('the settings: a replication factor of 0 is refused naming the variable', async (t) => {
  const schema = Type.Object(topicSetupSettings({ default: true, description: 'create' }));
  const ok = loadConfig(schema, 'P_', { P_TOPIC_REPLICATION_FACTOR: '3' });
  t.doesNotThrow(() => checkTopicSetupSettings(ok, 'P_'));
  t.doesNotThrow(() => checkTopicSetupSettings(loadConfig(schema, 'P_', {}), 'P_'), '-1 by default');
  const zero = loadConfig(schema, 'P_', { P_TOPIC_REPLICATION_FACTOR: '0' });
  const err = t.throws(() => checkTopicSetupSettings(zero, 'P_'), ConfigError) as unknown;
  t.ok(err instanceof ConfigError && err.key === 'P_TOPIC_REPLICATION_FACTOR', 'names the variable');
  t.match((err as Error).message, /at least 1, or -1/);
});
