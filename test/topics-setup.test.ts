import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import kafkajs, { type Admin, type Kafka } from 'kafkajs';
import { crashKey, encodeCrashMessage, type CrashEvent } from '@podmortem/contract';
import {
  ConfigError,
  createKafka,
  createLogger,
  createTopicCommand,
  ensureTopics,
  type Logger,
  type TopicSpec,
} from '@podmortem/contract/runtime';
import { loadCollectorConfig } from '../collector/src/agent/config.ts';
import { collectorSetup, runHandler } from './support/collector-agent.ts';
import {
  crashEvent,
  monthsAgo,
  produce,
  removeIndexSet,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  uniqueNames,
  type Names,
} from './support/indexer-harness.ts';
import { createTopicsWithLeaders } from './support/kafka-topics.ts';
import { until } from './support/poll.ts';
import { stack, uniqueName } from './support/stack.ts';
import { elfHead, note, prpsinfo, prstatus, syntheticCore } from './support/synthetic-core.ts';

// Services that set their Kafka topics up themselves (contract/src/runtime/topics-setup.ts), on
// the real Kafka of the local stack with topic names no one else uses: the indexer creates the
// pipeline's topics, the collector agent its crash topic when told to, and a crash then goes
// through to Elasticsearch. With creating off, the indexer explains each topic with the command
// that creates it and waits, not ready, until someone runs them. Two instances creating at once,
// and a creation the broker refuses, at the level of ensureTopics.

// kafkajs is CommonJS and spreads its errors into its exports, which hides the names after them
// from Node's named-export detection: ConfigResourceTypes is read from the default export.
const { ConfigResourceTypes } = kafkajs;

const kafka = testKafka();
const es = testElasticsearch();
/** What Kafka's default max.message.bytes grows by on the dead-letter topic (DLQ_HEADROOM_BYTES). */
const DLQ_HEADROOM = 8192;

interface LogLine {
  msg?: string;
  [key: string]: unknown;
}

const parsed = (lines: string[]): LogLine[] =>
  lines.flatMap((l) => {
    try {
      return [JSON.parse(l) as LogLine];
    } catch {
      return [];
    }
  });

const allTopics = (n: Names) => [n.topic, n.analyses, n.removals, n.dlq, n.requests, n.deletions];

async function existing(admin: Admin, topics: string[]): Promise<string[]> {
  const listed = new Set(await admin.listTopics());
  return topics.filter((topic) => listed.has(topic));
}

/** Partitions, replicas per partition and max.message.bytes of a topic, as the broker has them. */
async function facts(admin: Admin, topic: string) {
  const [meta] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
  const configs = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['max.message.bytes'] }],
    includeSynonyms: false,
  });
  const max = configs.resources[0]?.configEntries.find((e) => e.configName === 'max.message.bytes');
  return {
    partitions: meta?.partitions.length,
    replicas: [...new Set(meta?.partitions.map((p) => p.replicas.length))],
    maxMessageBytes: Number(max?.configValue),
  };
}

/** An admin for the test, and every topic and index of `names` removed in its teardown. */
async function cleanAdmin(t: Test, names: Names): Promise<Admin> {
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(async () => {
    await admin.deleteTopics({ topics: allTopics(names) }).catch(() => undefined);
    await admin.disconnect();
    await removeIndexSet(es, names.alias);
  });
  return admin;
}

const createdLines = (logs: LogLine[], topic: string) =>
  logs.filter((l) => l.msg === 'Kafka topic created' && l.topic === topic);

async function crashIdsIn(alias: string): Promise<string[]> {
  const res = await es.search<CrashEvent>({ index: alias, size: 10 });
  return res.hits.hits.map((h) => h._source?.crash.id ?? '');
}

t.test(
  'a fresh stack: the indexer creates every topic of the pipeline, and a crash goes through',
  async (t) => {
    const names = uniqueNames('pm-topics-idx');
    const admin = await cleanAdmin(t, names);
    t.same(await existing(admin, allTopics(names)), [], 'none of the topics exists to begin with');

    const indexer = await startIndexer({
      names,
      env: { PODMORTEM_INDEXER_TOPIC_PARTITIONS: '3', PODMORTEM_INDEXER_TOPIC_MAX_MESSAGE_BYTES: '2000000' },
    });
    t.teardown(() => stopIndexer(indexer));
    await until('the indexer to be ready', () => indexer.ready(), 120_000);

    const logs = parsed(indexer.logs);
    for (const topic of allTopics(names)) {
      const max = topic === names.dlq ? 2_000_000 + DLQ_HEADROOM : 2_000_000;
      t.same(
        await facts(admin, topic),
        // The local stack's one broker: its default.replication.factor is 1.
        { partitions: 3, replicas: [1], maxMessageBytes: max },
        `${topic}: 3 partitions, the broker's replication, max.message.bytes ${max}`,
      );
      const lines = createdLines(logs, topic);
      t.equal(lines.length, 1, `${topic}: one line says the indexer created it`);
      t.match(
        lines[0],
        { level: 30, partitions: 3, replicationFactor: 1, configs: { 'max.message.bytes': String(max) } },
        'with its partitions, replication and configs',
      );
    }
    t.equal(logs.filter((l) => l.msg === 'every Kafka topic exists').length, 1, 'then one line: all exist');
    t.ok(
      logs.some((l) => l.msg === 'topic settings: every record fits the dead-letter topic whole'),
      "the DLQ it made leaves room for a letter's headers",
    );
    t.notOk(
      logs.some((l) => l.msg === 'Kafka not ready, retrying'),
      'no "Kafka not ready" on the way',
    );

    const event = crashEvent(1, monthsAgo(0), [randomUUID()]);
    await produce(kafka, names.topic, [{ key: crashKey(event), value: encodeCrashMessage(event) }]);
    await until('the crash to be searchable', async () => (await searchableCount(es, names.alias)) === 1);
    t.same(await crashIdsIn(names.alias), [event.crash.id], 'the crash is searchable through the alias');
  },
);

t.test(
  'the collector agent creates its crash topic when told to; with the indexer started after it, a crash goes through',
  async (t) => {
    const names = uniqueNames('pm-topics-col');
    const admin = await cleanAdmin(t, names);
    const setup = await collectorSetup(stack.kafkaBrokers, { liveConsumer: false });
    t.teardown(() => setup.close());
    const topicSettings = { TOPIC_PARTITIONS: '3', TOPIC_MAX_MESSAGE_BYTES: '2000000' };
    const agent = await setup.start({
      PODMORTEM_COLLECTOR_KAFKA_TOPIC: names.topic,
      PODMORTEM_COLLECTOR_CREATE_TOPICS: 'true',
      ...Object.fromEntries(Object.entries(topicSettings).map(([k, v]) => [`PODMORTEM_COLLECTOR_${k}`, v])),
    });
    await until(
      'the agent to create its crash topic',
      () => createdLines(agent.logs, names.topic).length > 0,
    );
    t.match(
      createdLines(agent.logs, names.topic),
      [{ partitions: 3, replicationFactor: 1, configs: { 'max.message.bytes': '2000000' } }],
      'the agent logged creating it, with its settings',
    );
    t.same(
      await facts(admin, names.topic),
      { partitions: 3, replicas: [1], maxMessageBytes: 2_000_000 },
      'the crash topic has them',
    );
    t.same(await existing(admin, allTopics(names)), [names.topic], 'the agent made its own topic only');

    const indexer = await startIndexer({
      names,
      env: Object.fromEntries(Object.entries(topicSettings).map(([k, v]) => [`PODMORTEM_INDEXER_${k}`, v])),
    });
    t.teardown(() => stopIndexer(indexer));
    await until('the indexer to be ready', () => indexer.ready(), 120_000);
    const logs = parsed(indexer.logs);
    t.same(createdLines(logs, names.topic), [], 'the indexer found the crash topic there');
    for (const topic of allTopics(names).filter((x) => x !== names.topic)) {
      t.equal(createdLines(logs, topic).length, 1, `the indexer created ${topic}`);
    }

    // A crash as the kernel hands it over: the installed handler spools it, the agent stores and
    // announces it, the indexer indexes it.
    const pid = 3_950_001;
    const core = syntheticCore({
      notes: [
        note('CORE', 1, prstatus({ signal: 11, pid })),
        note('CORE', 3, prpsinfo({ pid, uid: 0, gid: 0, comm: 'crasher', args: 'crasher' })),
      ],
      loads: [{ vaddr: 0x400000n, data: elfHead('ab'.repeat(20)) }],
    });
    const run = await runHandler(
      setup.installDir,
      { pid, signal: 11, comm: 'crasher', exe: '/bin/crasher' },
      core,
    );
    t.equal(run.code, 0, 'the handler took the crash');
    await until('the crash to be searchable', async () => (await searchableCount(es, names.alias)) === 1);
    const res = await es.search<CrashEvent>({ index: names.alias, size: 1 });
    t.equal(res.hits.hits[0]?._source?.process.pid, pid, 'the crash is searchable, from the collector');
  },
);

t.test(
  'the agent creating its topic with Kafka away starts anyway, retries, and stops cleanly',
  async (t) => {
    const setup = await collectorSetup(stack.kafkaBrokers, { liveConsumer: false });
    t.teardown(() => setup.close());
    const agent = await setup.start({
      PODMORTEM_COLLECTOR_KAFKA_BROKERS: '127.0.0.1:1',
      PODMORTEM_COLLECTOR_KAFKA_TOPIC: uniqueName('pm-topics-away'),
      PODMORTEM_COLLECTOR_CREATE_TOPICS: 'true',
    });
    t.pass('running: the setup does not hold the start up');
    await until('the setup to retry twice', () => agent.logged('Kafka not ready, retrying').length >= 2);
    t.same(await agent.stop(), [0, null], 'SIGTERM ends it with status 0 while the setup waits');
    t.same(agent.logged('Kafka topic created'), [], 'nothing created');
  },
);

/** Runs a kafka-topics.sh command with the local stack's Kafka jars (no kafka-topics.sh is installed). */
async function runKafkaTopics(command: string): Promise<{ code: number | null; output: string }> {
  const [script, ...args] = command.split(' ');
  if (script !== 'kafka-topics.sh') throw new Error(`not a kafka-topics.sh command: ${command}`);
  const lib = join(stack.stackDir, 'kafka');
  const child = spawn(
    'java',
    [
      '-cp',
      join(lib, 'lib', '*'),
      `-Dlog4j2.configurationFile=${join(lib, 'log4j2-tools.properties')}`,
      'org.apache.kafka.tools.TopicCommand',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output };
}

t.test(
  'creating off: a warning with the command for each topic, and not ready until they exist',
  async (t) => {
    const names = uniqueNames('pm-topics-off');
    const admin = await cleanAdmin(t, names);
    const indexer = await startIndexer({
      names,
      env: { PODMORTEM_INDEXER_CREATE_TOPICS: 'false', PODMORTEM_INDEXER_TOPIC_PARTITIONS: '2' },
    });
    t.teardown(() => stopIndexer(indexer));
    const warnings = () =>
      parsed(indexer.logs).filter((l) => l.level === 40 && typeof l.command === 'string');
    await until('a warning for each topic', () => warnings().length >= allTopics(names).length);
    const brokers = stack.kafkaBrokers.join(',');
    for (const topic of allTopics(names)) {
      const max = topic === names.dlq ? 1_048_588 + DLQ_HEADROOM : 1_048_588;
      const command = `kafka-topics.sh --bootstrap-server ${brokers} --create --topic ${topic} --partitions 2 --config max.message.bytes=${max}`;
      const w = warnings().filter((l) => l.topic === topic);
      t.equal(w.length, 1, `${topic}: one warning`);
      t.equal(w[0]?.command, command, `${topic}: the command that creates it`);
      t.ok(String(w[0]?.msg).endsWith(command), 'in the message itself too');
      t.match(w[0]?.reason, /PODMORTEM_INDEXER_CREATE_TOPICS=false/, 'saying why it was not created');
    }

    const own = [names.topic, names.analyses, names.removals, names.dlq].sort();
    const waits = () =>
      parsed(indexer.logs).filter((l) => l.msg === 'waiting for Kafka topics to be created');
    await until('the indexer to wait for the topics twice', () => waits().length >= 2);
    t.same(
      (waits().at(-1)?.missing as string[]).sort(),
      own,
      'it waits for its own four topics (the others are for other services)',
    );
    t.notOk(await indexer.ready(), 'not ready while they are missing');
    t.same(await existing(admin, allTopics(names)), [], 'and it created none of them');

    // Someone runs two of the commands as the warnings give them, and creates the other two.
    for (const topic of [names.topic, names.dlq]) {
      const command = String(warnings().find((l) => l.topic === topic)?.command);
      const run = await runKafkaTopics(command);
      t.equal(run.code, 0, `the command for ${topic} ran: ${run.output.trim()}`);
    }
    await createTopicsWithLeaders(admin, [
      { topic: names.analyses, numPartitions: 2 },
      { topic: names.removals, numPartitions: 2 },
    ]);
    await until('the indexer to be ready', () => indexer.ready(), 120_000);
    t.pass('ready once its topics exist');
    t.same(
      await facts(admin, names.dlq),
      { partitions: 2, replicas: [1], maxMessageBytes: 1_048_588 + DLQ_HEADROOM },
      'the DLQ made by the command is the one the indexer would have made',
    );
    t.ok(
      parsed(indexer.logs).some((l) => l.msg === 'Kafka topics created: every topic exists'),
      'it logged that they now exist',
    );
    t.same(
      await existing(admin, [names.requests, names.deletions]),
      [],
      'the topics of other services did not hold it up',
    );
  },
);

/** A logger whose lines a test can read. */
function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger(
    'test',
    { level: 'info' },
    { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) },
  );
  return { logger, lines };
}

const spec = (topic: string, replicationFactor = -1): TopicSpec => ({
  topic,
  partitions: 2,
  replicationFactor,
  configs: { 'max.message.bytes': '1048588' },
});

function serviceKafka(logger: Logger): Kafka {
  return createKafka({ brokers: stack.kafkaBrokers, clientId: uniqueName('pm-topics-setup'), logger });
}

t.test('two instances creating the same topics at once: each topic made once, no error', async (t) => {
  const topics = [uniqueName('pm-topics-race-a'), uniqueName('pm-topics-race-b')];
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(async () => {
    await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.disconnect();
  });
  const one = capturingLogger();
  const two = capturingLogger();
  const options = (logger: Logger) => ({
    create: true,
    logger,
    brokers: stack.kafkaBrokers,
    createVariable: 'X',
  });
  const results = await Promise.all([
    ensureTopics(
      serviceKafka(one.logger),
      topics.map((x) => spec(x)),
      options(one.logger),
    ),
    ensureTopics(
      serviceKafka(two.logger),
      topics.map((x) => spec(x)),
      options(two.logger),
    ),
  ]);
  for (const topic of topics) {
    t.equal(results.filter((r) => r.created.includes(topic)).length, 1, `${topic} created by one of them`);
    t.equal(results.filter((r) => r.existing.includes(topic)).length, 1, 'found existing by the other');
  }
  t.same(
    results.map((r) => r.missing),
    [[], []],
    'neither has a topic missing',
  );
  t.same(await existing(admin, topics), topics, 'both topics exist');
  for (const log of [one, two])
    t.equal(
      log.lines.filter((l) => l.msg === 'every Kafka topic exists').length,
      1,
      'each logs that all exist',
    );
});

t.test('a creation the broker refuses is a missing topic with its reason and command', async (t) => {
  const admin = kafka.admin();
  await admin.connect();
  const topic = uniqueName('pm-topics-refused');
  t.teardown(async () => {
    // Only if the test failed: kafkajs retries deleting a topic that is not there for a while.
    if ((await existing(admin, [topic])).length > 0) await admin.deleteTopics({ topics: [topic] });
    await admin.disconnect();
  });
  t.equal((await admin.describeCluster()).brokers.length, 1, 'the local stack has one broker');
  const { logger, lines } = capturingLogger();
  const result = await ensureTopics(serviceKafka(logger), [spec(topic, 3)], {
    create: true,
    logger,
    brokers: stack.kafkaBrokers,
    createVariable: 'X',
  });
  const command = createTopicCommand(spec(topic, 3), stack.kafkaBrokers);
  t.equal(
    command,
    `kafka-topics.sh --bootstrap-server ${stack.kafkaBrokers.join(',')} --create --topic ${topic} --partitions 2 --replication-factor 3 --config max.message.bytes=1048588`,
    'the command names the replication factor when it is not the broker default',
  );
  t.same(result.created, []);
  t.match(
    result.missing,
    [{ topic, reason: /^INVALID_REPLICATION_FACTOR: /, command }],
    'refused: three replicas on one broker',
  );
  t.match(
    lines.filter((l) => l.level === 40),
    [{ topic, command, reason: /^INVALID_REPLICATION_FACTOR/ }],
    'one warning with the command',
  );
  t.same(await existing(admin, [topic]), [], 'and the topic is not there');
});

t.test('bad topic settings of the collector are rejected naming the variable', async (t) => {
  const base = { PODMORTEM_COLLECTOR_NODE_NAME: 'node-a' };
  const c = loadCollectorConfig(base);
  t.same(
    [c.createTopics, c.topicPartitions, c.topicReplicationFactor, c.topicMaxMessageBytes],
    [false, 6, -1, 1_048_588],
    "defaults: not created by the agents, else as the indexer's",
  );
  const cases: [string, string, RegExp][] = [
    ['PODMORTEM_COLLECTOR_TOPIC_PARTITIONS', '0', /must be >= 1/],
    ['PODMORTEM_COLLECTOR_TOPIC_REPLICATION_FACTOR', '0', /must be at least 1, or -1/],
    ['PODMORTEM_COLLECTOR_TOPIC_REPLICATION_FACTOR', '-3', /must be >= -1/],
    ['PODMORTEM_COLLECTOR_TOPIC_MAX_MESSAGE_BYTES', '10', /must be >= 1024/],
    ['PODMORTEM_COLLECTOR_CREATE_TOPICS', 'yes', /must be true or false/],
  ];
  for (const [variable, value, why] of cases) {
    const err = t.throws(() => loadCollectorConfig({ ...base, [variable]: value }), ConfigError) as unknown;
    t.ok(err instanceof ConfigError && err.key === variable, `${variable}=${value} names ${variable}`);
    t.match((err as Error).message, why, 'and says why');
  }
});
