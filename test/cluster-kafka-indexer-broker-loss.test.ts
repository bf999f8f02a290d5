import t from 'tap';
import type { PartitionMetadata } from 'kafkajs';
import {
  crashStream,
  groupProgress,
  monthsAgo,
  produce,
  readDlq,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  topicsForTest,
  uniqueNames,
  verifyDeadLetters,
  verifyIndexed,
} from './support/indexer-harness.ts';
import { until } from './support/poll.ts';
import { privateCluster } from './support/private-stack.ts';

// A real three-broker KRaft Kafka of this test's own (topics replicated three times,
// min.insync.replicas 2) losing, to SIGKILL, the broker that coordinates the indexer's consumer
// group while the indexer indexes a stream. The group moves to another coordinator, the indexer
// commits to the end with the broker still down, and every unique crash is indexed exactly once.

const BROKERS = 3;
const MIN_INSYNC = 2;

const cluster = await privateCluster('kafka', { members: BROKERS, minInsyncReplicas: MIN_INSYNC });
t.teardown(() => cluster.destroy());
const kafka = testKafka(cluster.addresses);
const es = testElasticsearch();
t.teardown(() => es.close());
const names = uniqueNames('pm-cluster-indexer');
const admin = await topicsForTest(t, kafka, es, names, 6);
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;

async function partitionsOf(topic: string): Promise<PartitionMetadata[] | undefined> {
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    return topics[0]?.partitions;
  } catch {
    return undefined;
  }
}

/** Java's String.hashCode, which Kafka uses to place a group on a partition of __consumer_offsets. */
function javaHash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

/** The coordinator of `group`: the leader of its __consumer_offsets partition. */
async function coordinatorOf(group: string): Promise<number> {
  const partitions = await until('the __consumer_offsets partitions', async () =>
    partitionsOf('__consumer_offsets'),
  );
  // Kafka's Utils.abs: Integer.MIN_VALUE maps to 0, not to itself.
  const hash = javaHash(group);
  const index = (hash === -2147483648 ? 0 : Math.abs(hash)) % partitions.length;
  const leader = partitions.find((p) => p.partitionId === index)?.leader;
  if (leader === undefined || leader < 0) throw new Error(`no leader for __consumer_offsets-${index}`);
  return leader;
}

async function ledWithout(topic: string, broker: number): Promise<boolean> {
  const partitions = await partitionsOf(topic);
  return partitions !== undefined && partitions.every((p) => p.leader >= 0 && p.leader !== broker);
}

async function fullyReplicated(topics: string[]): Promise<boolean> {
  for (const topic of topics) {
    const partitions = await partitionsOf(topic);
    if (!partitions?.every((p) => p.leader >= 0 && p.isr.length === BROKERS)) return false;
  }
  return true;
}

async function recordsIn(topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
}

t.test('the topics are on every broker', async (t) => {
  for (const topic of [names.topic, names.dlq]) {
    const partitions = await until(`the partitions of ${topic}`, async () => {
      const found = await partitionsOf(topic);
      return found && found.length > 0 ? found : undefined;
    });
    t.ok(
      partitions.every((p) => p.replicas.length === BROKERS),
      `${topic}: every partition on ${BROKERS} brokers`,
    );
  }
});

t.test(
  'the indexer keeps indexing when the broker coordinating its group is killed, and catches up',
  async (t) => {
    const stream = crashStream({
      unique: 4000,
      duplicates: 400,
      invalid: 40,
      months: [monthsAgo(0), monthsAgo(1)],
      seed: 61,
    });
    const half = Math.floor(stream.records.length / 2);
    await produce(kafka, names.topic, stream.records.slice(0, half), 200);

    const indexer = await startIndexer({
      names,
      brokers: cluster.addresses,
      env: { PODMORTEM_INDEXER_BULK_MAX_RECORDS: '200' },
    });
    t.teardown(() => stopIndexer(indexer));
    t.teardown(() => {
      if (!t.passing()) t.comment(indexer.logs.slice(-80).join('\n'));
    });
    await until('some crashes indexed', async () => (await searchableCount(es, names.alias)) >= 500);
    const victim = await coordinatorOf(names.group);
    await cluster.member(victim).kill();
    t.comment(
      `${elapsed()}: broker ${victim} (the group coordinator) killed at ${await searchableCount(es, names.alias)} indexed`,
    );

    await until(`partitions led without broker ${victim}`, () => ledWithout(names.topic, victim));
    await produce(kafka, names.topic, stream.records.slice(half), 200);
    const behind = async () => {
      try {
        return (await groupProgress(admin, names.group, names.topic)).behind;
      } catch {
        return -1;
      }
    };
    await until(
      'the indexer to commit to the end with the broker down',
      async () => (await behind()) === 0,
      180_000,
    );
    t.comment(`${elapsed()}: the group committed to the end`);
    t.notOk(cluster.member(victim).running(), `broker ${victim} was still down`);
    t.equal(await recordsIn(names.topic), stream.records.length, 'every record produced, once');
    await verifyIndexed(t, es, names.alias, stream);
    verifyDeadLetters(t, await readDlq(kafka, names.dlq), stream, names.topic, false);

    await cluster.member(victim).up();
    await until(`broker ${victim} back in every in-sync set`, () =>
      fullyReplicated([names.topic, names.dlq, '__consumer_offsets']),
    );
    t.comment(`${elapsed()}: broker ${victim} back in sync`);
    t.equal(await behind(), 0, 'no lag after the broker is back');
    t.equal(await searchableCount(es, names.alias), stream.events.size, 'still exactly the unique crashes');
    t.ok(indexer.alive(), 'the indexer never exited');
  },
);
