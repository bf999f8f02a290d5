import t from 'tap';
import { Kafka, logLevel, type Consumer, type EachMessagePayload } from 'kafkajs';
import { stack, uniqueName } from './support/stack.ts';
import { createTopicsWithLeaders } from './support/kafka-topics.ts';

// The real broker of the local stack, through kafkajs: a consumer group reads, commits, and a
// restarted consumer of the same group resumes after the committed offsets.

const kafka = new Kafka({
  clientId: 'podmortem-test',
  brokers: stack.kafkaBrokers,
  logLevel: logLevel.NOTHING,
});

async function consumeUntil(
  consumer: Consumer,
  topic: string,
  count: number,
  onMessage: (p: EachMessagePayload) => void,
) {
  let seen = 0;
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    consumer
      .run({
        autoCommit: false,
        eachMessage: async (payload) => {
          if (seen >= count) return;
          onMessage(payload);
          seen++;
          await consumer.commitOffsets([
            { topic, partition: payload.partition, offset: String(Number(payload.message.offset) + 1) },
          ]);
          if (seen === count) resolve();
        },
      })
      .catch(reject);
  });
}

t.test('a consumer group commits offsets and resumes after them when restarted', async (t) => {
  const topic = uniqueName('pm-test-kafka');
  const groupId = uniqueName('pm-test-group');
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });
  t.ok(await createTopicsWithLeaders(admin, [{ topic, numPartitions: 3 }]), 'topic created');

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const sent = Array.from({ length: 30 }, (_, i) => ({ key: `pod-${i % 5}`, value: `crash-${i}` }));
  await producer.send({ topic, acks: -1, messages: sent });
  await producer.disconnect();

  const first = kafka.consumer({ groupId });
  await first.connect();
  const firstSeen: string[] = [];
  await consumeUntil(first, topic, 12, ({ message }) => firstSeen.push(String(message.value)));
  await first.disconnect();

  const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
  const committedTotal = committed[0]?.partitions.reduce(
    (n, p) => n + Number(p.offset === '-1' ? 0 : p.offset),
    0,
  );
  t.equal(committedTotal, 12, 'the group committed exactly what it processed');

  const second = kafka.consumer({ groupId });
  await second.connect();
  const secondSeen: string[] = [];
  await consumeUntil(second, topic, 18, ({ message }) => secondSeen.push(String(message.value)));
  await second.disconnect();

  t.same(
    [...firstSeen, ...secondSeen].sort(),
    sent.map((m) => m.value).sort(),
    'every message read exactly once across the restart',
  );
  const finalOffsets = await admin.fetchOffsets({ groupId, topics: [topic] });
  const topicOffsets = await admin.fetchTopicOffsets(topic);
  t.same(
    finalOffsets[0]?.partitions.map((p) => [p.partition, p.offset === '-1' ? '0' : p.offset]).sort(),
    topicOffsets.map((p) => [p.partition, p.high]).sort(),
    'committed offsets reach the end of every partition',
  );
});

t.test('messages with one key stay in order in one partition', async (t) => {
  const topic = uniqueName('pm-test-order');
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });
  await createTopicsWithLeaders(admin, [{ topic, numPartitions: 4 }]);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.send({
    topic,
    acks: -1,
    messages: Array.from({ length: 20 }, (_, i) => ({ key: 'ns/pod-uid', value: String(i) })),
  });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: uniqueName('pm-test-group') });
  await consumer.connect();
  const got: { partition: number; value: string }[] = [];
  await consumeUntil(consumer, topic, 20, ({ partition, message }) =>
    got.push({ partition, value: String(message.value) }),
  );
  await consumer.disconnect();
  t.equal(new Set(got.map((g) => g.partition)).size, 1, 'one partition');
  t.same(
    got.map((g) => g.value),
    Array.from({ length: 20 }, (_, i) => String(i)),
    'in the order produced',
  );
});
