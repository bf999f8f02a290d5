import { createHash, randomBytes, randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import { crashKey, DLQ_HEADERS, encodeCrashMessage, type CrashEvent } from '@podmortem/contract';
import kafkajs, { Partitioners, type Admin, type Kafka } from 'kafkajs';
import {
  crashEvent,
  groupProgress,
  monthsAgo,
  readDlq,
  removeIndexSet,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  uniqueNames,
  type DlqRecord,
  type IndexerProcess,
  type Names,
} from './support/indexer-harness.ts';
import { createTopicsWithLeaders } from './support/kafka-topics.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';

// Issue 12, finding 3: one record the crash topic accepts but whose dead letter (the record plus
// the DLQ headers) the dead-letter topic cannot take must not stop its partition. Against the real
// Kafka, Elasticsearch and indexer process: letters over the DLQ's max.message.bytes are cut to
// fit (value head, reason, sha256 and size of the original), letters the topic refuses are sent
// again cut, then bare, and a letter refused even bare is counted and logged as lost; in every
// case the valid records behind are indexed, the offsets committed and the indexer ready again.

const kafka = testKafka();
const es = testElasticsearch();
const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Setup {
  names: Names;
  admin: Admin;
  indexer: IndexerProcess;
}

/** A test's own crash topic (one partition, so order is kept), analysis and DLQ topics and indexer. */
async function setup(t: Test, prefix: string, limits: { source?: number; dlq?: number }): Promise<Setup> {
  const names = uniqueNames(prefix);
  const admin = kafka.admin();
  await admin.connect();
  const maxBytes = (n: number | undefined) =>
    n === undefined ? {} : { configEntries: [{ name: 'max.message.bytes', value: String(n) }] };
  await createTopicsWithLeaders(admin, [
    { topic: names.topic, numPartitions: 1, ...maxBytes(limits.source) },
    { topic: names.analyses, numPartitions: 1 },
    { topic: names.removals, numPartitions: 1 },
    { topic: names.dlq, numPartitions: 1, ...maxBytes(limits.dlq) },
  ]);
  const indexer = await startIndexer({ names });
  t.teardown(async () => {
    await stopIndexer(indexer);
    await admin
      .deleteTopics({ topics: [names.topic, names.analyses, names.removals, names.dlq] })
      .catch(() => undefined);
    await admin.disconnect();
    await removeIndexSet(es, names.alias);
  });
  await until('the indexer to be ready', () => indexer.ready());
  return { names, admin, indexer };
}

const podUid = randomUUID();
let serial = 0;
function valid(): { key: string; value: Buffer; event: CrashEvent } {
  const event = crashEvent(serial++, monthsAgo(0), [podUid]);
  return { key: crashKey(event), value: encodeCrashMessage(event), event };
}

/** Sends each record alone (one record batch each), in order, to one partition. */
async function send(k: Kafka, topic: string, records: { key: string; value: Buffer }[]): Promise<void> {
  const producer = k.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    for (const r of records) {
      await producer.send({
        topic,
        acks: -1,
        messages: [{ key: r.key, value: r.value, partition: 0, headers: { 'test-origin': r.key } }],
      });
    }
  } finally {
    await producer.disconnect();
  }
}

async function indexedCount(s: Setup, n: number): Promise<void> {
  await until(`${n} crashes indexed`, async () => (await searchableCount(es, s.names.alias)) === n, 90_000);
}

/** Offsets are committed after Elasticsearch and the DLQ acknowledged: waited for. */
async function committed(s: Setup): Promise<void> {
  await until(
    'every offset committed',
    async () => (await groupProgress(s.admin, s.names.group, s.names.topic)).behind === 0,
  );
}

async function dlqOf(s: Setup, n: number): Promise<DlqRecord[]> {
  return until(`${n} dead letters`, async () => {
    const letters = await readDlq(kafka, s.names.dlq);
    return letters.filter((l) => l.headers['test-origin'] !== 'probe').length >= n && letters;
  });
}

/** Lowers the DLQ's limit and waits until the broker refuses a record over it. */
async function lowerDlqLimit(s: Setup, bytes: number): Promise<void> {
  await s.admin.alterConfigs({
    validateOnly: false,
    resources: [
      {
        type: kafkajs.ConfigResourceTypes.TOPIC,
        name: s.names.dlq,
        configEntries: [{ name: 'max.message.bytes', value: String(bytes) }],
      },
    ],
  });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    await until(`the DLQ to refuse records over ${bytes} bytes`, async () => {
      try {
        await producer.send({
          topic: s.names.dlq,
          acks: -1,
          messages: [{ key: 'probe', value: Buffer.alloc(bytes + 200), headers: { 'test-origin': 'probe' } }],
        });
        return false;
      } catch (err) {
        return (err as { type?: string }).type === 'MESSAGE_TOO_LARGE';
      }
    });
  } finally {
    await producer.disconnect();
  }
}

function checkCut(t: Test, letter: DlqRecord | undefined, original: Buffer, reason: RegExp) {
  if (!letter) {
    t.fail('the letter is in the DLQ');
    return;
  }
  const value = letter.value ?? Buffer.alloc(0);
  t.equal(letter.headers[DLQ_HEADERS.errorCode], 'PM_ERR_RECORD_NOT_JSON', 'the error code');
  t.match(letter.headers[DLQ_HEADERS.truncated], reason, 'the reason it was cut');
  t.equal(letter.headers[DLQ_HEADERS.originalSha256], sha256(original), 'the sha256 of the original value');
  t.equal(letter.headers[DLQ_HEADERS.originalBytes], String(original.length), 'its size');
  t.ok(value.length < original.length, `the value cut (${value.length} of ${original.length} bytes)`);
  t.ok(original.subarray(0, value.length).equals(value), 'to a head of the original');
}

t.test('default topic settings: a record of 1 MiB less 150 bytes is dead-lettered cut', async (t) => {
  const s = await setup(t, 'pm-idx-dlq-1m', {});
  const before = valid();
  const bad = randomBytes(MiB - 150);
  const behind = [valid(), valid()];
  await send(kafka, s.names.topic, [before, { key: 'bad/1mib', value: bad }, ...behind]);
  await indexedCount(s, 3);
  const [letter] = await dlqOf(s, 1);
  checkCut(t, letter, bad, /over the dead-letter topic's max\.message\.bytes \(1048588\)/);
  t.equal(letter?.headers['test-origin'], 'bad/1mib', 'the original headers kept');
  t.ok((letter?.value?.length ?? 0) > MiB - 8192, 'most of the value kept');
  t.equal(letter?.headers[DLQ_HEADERS.sourceOffset], '1', 'its source offset');
  await until('the indexer ready again', () => s.indexer.ready());
  await committed(s);
  let metrics = await s.indexer.metrics();
  t.equal(
    metricValue(metrics, 'podmortem_indexer_dead_letters_truncated_total', { reason: 'over-limit' }),
    1,
  );
  t.equal(
    metricValue(metrics, 'podmortem_indexer_records_dead_lettered_total', { code: 'PM_ERR_RECORD_NOT_JSON' }),
    1,
  );
  t.equal(metricValue(metrics, 'podmortem_indexer_topic_max_message_bytes', { topic: s.names.dlq }), 1048588);
  t.ok(
    s.indexer.logs.some(
      (l) => l.includes('"level":40') && l.includes('topic settings: the dead-letter topic'),
    ),
    'the start-up warned that the DLQ leaves no room for the headers',
  );

  // The DLQ's limit lowered behind the indexer's back: whole and cut refused, bare accepted.
  await lowerDlqLimit(s, 1000);
  const refused = randomBytes(5000);
  await send(kafka, s.names.topic, [{ key: 'bad/refused', value: refused }, valid()]);
  await indexedCount(s, 4);
  const bare = (await dlqOf(s, 2)).find((l) => l.headers['test-origin'] === undefined);
  checkCut(t, bare, refused, /refused by the dead-letter topic \(MESSAGE_TOO_LARGE\)/);
  t.equal(bare?.value?.length ?? 0, 0, 'bare: no value');
  t.equal(bare?.headers[DLQ_HEADERS.sourceOffset], '4', 'its source offset');

  // Lower still: not even the bare letter fits. Counted and logged as lost; the partition moves on.
  await lowerDlqLimit(s, 100);
  const lost = randomBytes(3000);
  await send(kafka, s.names.topic, [{ key: 'bad/lost', value: lost }, valid()]);
  await indexedCount(s, 5);
  await until('the indexer ready again', () => s.indexer.ready());
  metrics = await s.indexer.metrics();
  t.equal(
    metricValue(metrics, 'podmortem_indexer_dead_letters_truncated_total', { reason: 'MESSAGE_TOO_LARGE' }),
    1,
  );
  t.equal(
    metricValue(metrics, 'podmortem_indexer_dead_letters_lost_total', { reason: 'MESSAGE_TOO_LARGE' }),
    1,
  );
  const line = s.indexer.logs.find((l) => l.includes('dead letter lost'));
  const logged = JSON.parse(line ?? '{}') as Record<string, unknown>;
  t.match(
    logged,
    { topic: s.names.topic, partition: 0, offset: '6', code: 'PM_ERR_RECORD_NOT_JSON' },
    'logged with its partition and offset',
  );
  await committed(s);
});

t.test('a 5 MiB record (source topic 6 MiB) and a 10 KiB one, DLQ 4 KiB: both cut to fit', async (t) => {
  const s = await setup(t, 'pm-idx-dlq-5m', { source: 6 * MiB, dlq: 4096 });
  const five = randomBytes(5 * MiB);
  const ten = randomBytes(10 * 1024);
  await send(kafka, s.names.topic, [
    valid(),
    { key: 'bad/5mib', value: five },
    valid(),
    { key: 'bad/10kib', value: ten },
    valid(),
  ]);
  await indexedCount(s, 3);
  const letters = await dlqOf(s, 2);
  const byKey = (k: string) => letters.find((l) => l.key?.toString() === k);
  checkCut(t, byKey('bad/5mib'), five, /over the dead-letter topic's max\.message\.bytes \(4096\)/);
  checkCut(t, byKey('bad/10kib'), ten, /over the dead-letter topic's max\.message\.bytes \(4096\)/);
  for (const l of letters) t.ok((l.value?.length ?? 0) > 0, 'a head of the value kept');
  await until('the indexer ready again', () => s.indexer.ready());
  await committed(s);
  const metrics = await s.indexer.metrics();
  t.equal(
    metricValue(metrics, 'podmortem_indexer_dead_letters_truncated_total', { reason: 'over-limit' }),
    2,
  );
  t.equal(
    metricValue(metrics, 'podmortem_indexer_topic_max_message_bytes', { topic: s.names.topic }),
    6 * MiB,
  );
  t.equal(metricValue(metrics, 'podmortem_indexer_topic_max_message_bytes', { topic: s.names.dlq }), 4096);
});
