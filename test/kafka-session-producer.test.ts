import t from 'tap';
import { Kafka, logLevel } from 'kafkajs';
import { SessionProducer } from '@podmortem/contract/runtime';
import { createTopicsWithLeaders } from './support/kafka-topics.ts';
import { stack, uniqueName } from './support/stack.ts';

// The runtime's SessionProducer on the real broker: sends made at once are written one after the
// other, in the order they were made, and a refused send leaves the producer able to send.

const kafka = new Kafka({
  clientId: 'podmortem-test',
  brokers: stack.kafkaBrokers,
  logLevel: logLevel.NOTHING,
});
const admin = kafka.admin();
await admin.connect();
const topic = uniqueName('pm-session-producer');
await createTopicsWithLeaders(admin, [
  { topic, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '2048' }] },
]);
t.teardown(async () => {
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
});

async function readValues(count: number): Promise<string[]> {
  const consumer = kafka.consumer({ groupId: uniqueName('pm-session-reader') });
  await consumer.connect();
  const values: string[] = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachMessage: async ({ message }) => {
            values.push(message.value?.toString() ?? '');
            if (values.length === count) resolve();
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return values;
}

t.test('sends made at once are written in the order they were made, each once', async (t) => {
  const producer = new SessionProducer(kafka);
  t.teardown(() => producer.disconnect());
  const values = Array.from({ length: 40 }, (_, i) => `record-${i}`);
  await Promise.all(values.map((value) => producer.send({ topic, messages: [{ key: 'k', value }] })));
  t.same(await readValues(values.length), values);
});

t.test('a refused send rejects, and the next send is written', async (t) => {
  const producer = new SessionProducer(kafka);
  t.teardown(() => producer.disconnect());
  const before = Number((await admin.fetchTopicOffsets(topic))[0]?.high);
  const refused = await producer.send({ topic, messages: [{ value: Buffer.alloc(4096, 'x') }] }).then(
    () => undefined,
    (err: unknown) => (err as { type?: string }).type,
  );
  t.equal(refused, 'MESSAGE_TOO_LARGE', 'over the topic max.message.bytes: refused');
  await producer.send({ topic, messages: [{ value: 'after the refusal' }] });
  const after = Number((await admin.fetchTopicOffsets(topic))[0]?.high);
  t.equal(after - before, 1, 'one record more: the one after the refusal');
});

t.test('disconnect is safe twice and before any send; a send after it connects again', async (t) => {
  const producer = new SessionProducer(kafka);
  await producer.disconnect();
  await producer.disconnect();
  const before = Number((await admin.fetchTopicOffsets(topic))[0]?.high);
  await producer.send({ topic, messages: [{ value: 'after disconnect' }] });
  await producer.disconnect();
  t.equal(Number((await admin.fetchTopicOffsets(topic))[0]?.high) - before, 1);
});
