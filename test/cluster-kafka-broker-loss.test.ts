import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { decodeCrashMessage, type CrashEvent } from '@podmortem/contract';
import kafkajs, { type PartitionMetadata } from 'kafkajs';
import { collectorSetup, runHandler } from './support/collector-agent.ts';
import { testKafka } from './support/indexer-harness.ts';
import { until } from './support/poll.ts';
import { uniqueName } from './support/stack.ts';
import { privateCluster } from './support/private-stack.ts';
import { elfHead, note, prpsinfo, prstatus, syntheticCore } from './support/synthetic-core.ts';

// A real three-broker KRaft Kafka (every broker also a controller, topics replicated three times,
// min.insync.replicas 2) of this test's own, losing a broker to SIGKILL while the collector agent
// delivers a crash storm (acks=all). The broker stays down until every crash is through, then
// comes back and catches up. Nothing lost, nothing written twice.

// kafkajs is CommonJS, and Node finds only some of its exports by name.
const { ConfigResourceTypes } = kafkajs;

const BROKERS = 3;
const MIN_INSYNC = 2;
const CRASHES = 160;
/** Not running processes: the handler finds no /proc, so the crashes are the host's. */
const FIRST_PID = 3_950_001;

const cluster = await privateCluster('kafka', { members: BROKERS, minInsyncReplicas: MIN_INSYNC });
t.teardown(() => cluster.destroy());
const kafka = testKafka(cluster.addresses);
const admin = kafka.admin();
await admin.connect();
t.teardown(() => admin.disconnect());
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;

/** The partitions of `topic` as the metadata says now; undefined while a broker cannot answer. */
async function partitionsOf(topic: string): Promise<PartitionMetadata[] | undefined> {
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    return topics[0]?.partitions;
  } catch {
    return undefined;
  }
}

/** Every partition led and on every broker in sync. */
async function fullyReplicated(topics: string[]): Promise<boolean> {
  for (const topic of topics) {
    const partitions = await partitionsOf(topic);
    if (!partitions?.every((p) => p.leader >= 0 && p.isr.length === BROKERS)) return false;
  }
  return true;
}

async function checkReplication(t: Test, topics: string[]): Promise<void> {
  // A topic just created may be unknown yet to the broker this client asks, and kafkajs asks the
  // broker the metadata names as controller (in KRaft any live broker, perhaps one just restarted):
  // the metadata is refreshed before each try.
  let lastError = '';
  const configs = await until(
    `the settings of ${topics.join(', ')}`,
    async () => {
      try {
        await admin.fetchTopicMetadata({ topics });
        return await admin.describeConfigs({
          resources: topics.map((name) => ({
            type: ConfigResourceTypes.TOPIC,
            name,
            configNames: ['min.insync.replicas'],
          })),
          includeSynonyms: false,
        });
      } catch (err) {
        lastError = (err as Error).message;
        return undefined;
      }
    },
    60_000,
    500,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message} (last: ${lastError})`, { cause: err });
  });
  for (const topic of topics) {
    const partitions = await until(`the partitions of ${topic}`, async () => {
      const found = await partitionsOf(topic);
      return found && found.length > 0 ? found : undefined;
    });
    t.ok(
      partitions.every((p) => p.replicas.length === BROKERS),
      `${topic}: every partition on ${BROKERS} brokers`,
    );
    const entry = configs.resources
      .find((r) => r.resourceName === topic)
      ?.configEntries.find((c) => c.configName === 'min.insync.replicas');
    t.equal(entry?.configValue, String(MIN_INSYNC), `${topic}: min.insync.replicas ${MIN_INSYNC}`);
  }
}

/**
 * Every record of `topic` exactly once, by partition and offset (a consumer group may hand a
 * record over again after a rebalance), decoded (an invalid record would fail the test).
 */
async function readAll(topic: string): Promise<CrashEvent[]> {
  const total = await recordsIn(topic);
  const read = new Map<string, CrashEvent>();
  const consumer = kafka.consumer({ groupId: uniqueName('pm-cluster-reader') });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const decoded = decodeCrashMessage(message.value);
        if (!decoded.ok) throw new Error(`invalid record on ${topic}: ${decoded.errors.join('; ')}`);
        read.set(`${partition}/${message.offset}`, decoded.value);
      },
    });
    await until(`the ${total} records of ${topic}`, () => read.size >= total);
  } finally {
    await consumer.disconnect();
  }
  return [...read.values()];
}

async function recordsIn(topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
}

const countBy = (ids: string[]) => {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
};

t.test(
  `a crash storm of ${CRASHES} through the collector agent, a partition leader killed mid-way`,
  async (t) => {
    const setup = await collectorSetup(cluster.addresses, { liveConsumer: false });
    t.teardown(() => setup.close());
    await checkReplication(t, [setup.topic]);
    const agent = await setup.start();
    t.teardown(() => {
      if (!t.passing()) t.comment(agent.stderr.join('').slice(-4000));
    });
    const delivered = async () => agent.metric('podmortem_collector_crashes_total');
    const crash = async (pid: number) => {
      const core = syntheticCore({
        notes: [
          note('CORE', 1, prstatus({ signal: 11, pid })),
          note('CORE', 3, prpsinfo({ pid, uid: 0, gid: 0, comm: 'crasher', args: 'crasher' })),
        ],
        loads: [{ vaddr: 0x400000n, data: Buffer.concat([elfHead('ab'.repeat(20)), randomBytes(1024)]) }],
      });
      const run = await runHandler(
        setup.installDir,
        { pid, signal: 11, comm: 'crasher', exe: '/bin/crasher' },
        core,
      );
      if (run.code !== 0) throw new Error(`handler for pid ${pid} exited ${run.code}: ${run.stderr}`);
    };
    const pids = Array.from({ length: CRASHES }, (_, i) => FIRST_PID + i);
    const half = CRASHES / 2;

    for (const pid of pids.slice(0, half)) await crash(pid);
    await until('a quarter of the storm delivered', async () => (await delivered()) >= CRASHES / 4);
    const victim = (await partitionsOf(setup.topic))?.find((p) => p.partitionId === 0)?.leader ?? 1;
    await cluster.member(victim).kill();
    t.comment(`broker ${victim} (leader of partition 0) killed after ${await delivered()} deliveries`);
    for (const pid of pids.slice(half)) await crash(pid);

    await until(
      'every crash delivered (acks=all) while the broker is down',
      async () => (await delivered()) === CRASHES && setup.spoolLeft().length === 0,
      180_000,
    );
    t.comment(`${elapsed()}: every crash delivered`);
    t.notOk(cluster.member(victim).running(), `broker ${victim} was still down`);
    t.equal(await delivered(), CRASHES, `${CRASHES} crashes acknowledged by Kafka`);
    const failedSends = await agent.metric('podmortem_collector_delivery_failures_total', { step: 'kafka' });
    t.comment(`kafka sends failed and retried during the loss: ${failedSends}`);

    await cluster.member(victim).up();
    await until(`broker ${victim} back in every in-sync set`, () => fullyReplicated([setup.topic]));
    t.comment(`${elapsed()}: broker ${victim} back in sync`);
    const events = await readAll(setup.topic);
    const counts = countBy(events.map((e) => e.crash.id));
    t.equal(counts.size, CRASHES, `${CRASHES} distinct crash ids on the topic`);
    // A send that failed may have been written all the same (acks=all timed out, the leader lost
    // mid-request); its retry is a new producer session, so the record can be there twice. Never
    // more than once per failed send; the indexer makes them one document by crash id.
    const extra = events.length - CRASHES;
    t.comment(`${events.length} records on the topic, ${extra} of them a crash again`);
    t.ok(
      extra >= 0 && extra <= failedSends,
      `records beyond one per crash (${extra}) at most one per failed send (${failedSends})`,
    );
    t.same(
      events.map((e) => e.process.pid).sort((a, b) => a - b),
      pids,
      'one event for each crashed process',
    );
  },
);
