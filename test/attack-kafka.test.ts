import { randomBytes, randomUUID } from 'node:crypto';
import t from 'tap';
import {
  crashIndexFor,
  crashKey,
  DLQ_HEADERS,
  encodeCrashMessage,
  toCloudEvent,
  type CrashEvent,
} from '@podmortem/contract';
import { Partitioners } from 'kafkajs';
import { AttackCounter } from './support/attack-count.ts';
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
} from './support/indexer-harness.ts';
import { createTopicsWithLeaders } from './support/kafka-topics.ts';
import { until } from './support/poll.ts';

// Bad records on the crash topic, against the real Kafka, Elasticsearch and indexer process:
// garbage, an empty value, a tombstone, JSON that is no CloudEvent, a CloudEvent of another type,
// invalid data, an unknown schema_version, 1 MiB and 5 MiB records, the same crash id twice with
// different content (and again in another month and namespace), null keys, events naming a namespace, pod, container or node a real cluster
// could not have named ('..', '../team-b', a '/', a NUL) — each bad one between valid ones, in one partition so that a bad
// record that stalled the partition would hold back every valid one behind it. Nothing lost:
// every valid record indexed (a crash id once), every bad one in the DLQ (by its source offset),
// nothing of a bad one in the index, the partition consumed to its end and the indexer ready.

const kafka = testKafka();
const es = testElasticsearch();
const MiB = 1024 * 1024;
const names = uniqueNames('pm-attack-kafka');
const admin = kafka.admin();
await admin.connect();
// The crash topic takes records up to 6 MiB, so the 5 MiB one reaches the indexer; the DLQ keeps
// Kafka's default limit (1 MiB), smaller than the letters of the big records.
await createTopicsWithLeaders(admin, [
  {
    topic: names.topic,
    numPartitions: 1,
    configEntries: [{ name: 'max.message.bytes', value: String(6 * MiB) }],
  },
  { topic: names.analyses, numPartitions: 1 },
  { topic: names.removals, numPartitions: 1 },
  { topic: names.dlq, numPartitions: 1 },
]);
const indexer = await startIndexer({ names });
t.teardown(async () => {
  await stopIndexer(indexer);
  await admin
    .deleteTopics({ topics: [names.topic, names.analyses, names.removals, names.dlq] })
    .catch(() => undefined);
  await admin.disconnect();
  await removeIndexSet(es, names.alias);
  await es.close();
});
await until('the indexer to be ready', () => indexer.ready());

const c = new AttackCounter('kafka records');
const podUid = randomUUID();
let serial = 0;
const valid = (): CrashEvent => crashEvent(serial++, monthsAgo(0), [podUid]);
const ce = (e: CrashEvent) => toCloudEvent(e) as unknown as Record<string, unknown>;
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

interface Sent {
  what: string;
  key: string | null;
  value: Buffer | null;
  /** The event Elasticsearch must hold for it; undefined: the record must be dead-lettered. */
  event?: CrashEvent;
  offset?: string;
}

function bad(what: string, value: Buffer | null, key: string | null = `bad/${what}`): Sent {
  return { what, key, value };
}

/** Valid events but for one name a real cluster could not have given: each path-climbing. */
function poisonedNames(): Sent[] {
  const climbs: [string, (e: CrashEvent, v: string) => void][] = [
    ['namespace', (e, v) => e.kubernetes && (e.kubernetes.namespace = v)],
    ['pod-uid', (e, v) => e.kubernetes && (e.kubernetes.pod.uid = v)],
    ['pod-name', (e, v) => e.kubernetes && (e.kubernetes.pod.name = v)],
    ['container', (e, v) => e.kubernetes && (e.kubernetes.container.name = v)],
    ['node', (e, v) => e.kubernetes && (e.kubernetes.node.name = v)],
    ['collector-node', (e, v) => (e.collector.node = v)],
  ];
  const out: Sent[] = [];
  for (const [field, set] of climbs) {
    for (const [how, value] of [
      ['dotdot', '..'],
      ['traversal', '../team-b'],
      ['slash', 'team-a/x'],
      ['nul', 'team-a\u0000'],
    ] as const) {
      // A crash of a pod (the examples include a host process's, which names no pod).
      let e = valid();
      while (!e.kubernetes) e = valid();
      set(e, value);
      out.push(bad(`${field}-${how}`, json(ce(e))));
    }
  }
  return out;
}

function badRecords(): Sent[] {
  const e = valid();
  const wrongType = { ...ce(e), type: 'io.example.other.v1' };
  const noSpec = Object.fromEntries(Object.entries(ce(e)).filter(([k]) => k !== 'specversion'));
  const v2 = ce(e);
  v2.data = { ...(v2.data as Record<string, unknown>), schema_version: 2 };
  const noSignal = ce(e);
  noSignal.data = Object.fromEntries(
    Object.entries(noSignal.data as Record<string, unknown>).filter(([k]) => k !== 'signal'),
  );
  const wrongPid = ce(e);
  const data = structuredClone(e) as unknown as { process: Record<string, unknown> };
  data.process.pid = 'one';
  wrongPid.data = data;
  const big = (n: number) => Buffer.concat([Buffer.from('{"specversion":"1.0","data":"'), randomBytes(n)]);
  return [
    bad('garbage', randomBytes(300)),
    bad('empty', Buffer.alloc(0)),
    bad('tombstone', null),
    bad('json-array', json([1, 2, 3])),
    bad('json-string', json('a crash')),
    bad('json-null', Buffer.from('null')),
    bad('bare-event', json(e)),
    bad('not-a-cloudevent', json({ hello: 'world' })),
    bad('no-specversion', json(noSpec)),
    bad('other-type', json(wrongType)),
    bad('schema-version-2', json(v2)),
    bad('invalid-data-missing', json(noSignal)),
    bad('invalid-data-type', json(wrongPid)),
    bad('deep-nesting', Buffer.from('['.repeat(100_000) + ']'.repeat(100_000))),
    bad('utf8-garbage', Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1])),
    bad('garbage-null-key', randomBytes(100), null),
    ...poisonedNames(),
    bad('1mib', big(MiB)),
    bad('5mib', big(5 * MiB)),
  ];
}

function validRecords(): Sent[] {
  const out: Sent[] = [];
  for (let i = 0; i < 40; i++) {
    const event = valid();
    out.push({ what: `valid-${i}`, key: crashKey(event), value: encodeCrashMessage(event), event });
  }
  const nullKey = valid();
  out.push({ what: 'valid-null-key', key: null, value: encodeCrashMessage(nullKey), event: nullKey });
  // The same crash id twice, different content: one document, the later content.
  const first = valid();
  const second = structuredClone(first);
  second.process.pid = first.process.pid + 1;
  second.process.args = [...(first.process.args ?? []), '--again'];
  out.push({ what: 'same-id-first', key: crashKey(first), value: encodeCrashMessage(first) });
  out.push({
    what: 'same-id-second',
    key: crashKey(second),
    value: encodeCrashMessage(second),
    event: second,
  });
  // The same id again, but another month and another namespace: a crash id names one crash, so
  // this one is refused (dead-lettered) rather than made a second document in another index.
  for (const [what, shift, namespace] of [
    ['dup-month-before', -31 * 86_400_000, 'team-x'],
    ['dup-month-after', 31 * 86_400_000, 'team-y'],
  ] as const) {
    const dup = structuredClone(second);
    dup['@timestamp'] = new Date(Date.parse(second['@timestamp']) + shift).toISOString();
    if (dup.kubernetes) dup.kubernetes.namespace = namespace;
    out.push({ what, key: crashKey(dup), value: encodeCrashMessage(dup) });
  }
  return out;
}

const bads = badRecords();
const goods = validRecords();
// Interleaved: valid, bad, valid, bad… so that every bad record has valid ones behind it.
const records: Sent[] = [];
for (let i = 0; i < Math.max(bads.length, goods.length); i++) {
  const g = goods[i];
  const b = bads[i];
  if (g) records.push(g);
  if (b) records.push(b);
}
const tail = valid();
records.push({ what: 'valid-last', key: crashKey(tail), value: encodeCrashMessage(tail), event: tail });

t.test('bad records between valid ones, one partition: nothing lost, nothing stalled', async (t) => {
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  for (const r of records) {
    const [meta] = await producer.send({
      topic: names.topic,
      acks: -1,
      messages: [{ key: r.key, value: r.value, partition: 0, headers: { 'test-origin': r.what } }],
    });
    r.offset = meta?.baseOffset;
    c.requests++;
  }
  await producer.disconnect();
  const expected = new Map<string, CrashEvent>();
  for (const r of records) if (r.event) expected.set(r.event.crash.id, r.event);
  const deadExpected = records.filter((r) => r.event === undefined && !r.what.startsWith('same-id'));

  // The end of the partition: every offset consumed and committed. A stalled partition never gets
  // there: the wait's bound is the hang detector.
  const end = records.length;
  try {
    await until(
      `the indexer's group to commit all ${end} offsets`,
      async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
      180_000,
      500,
    );
  } catch (err) {
    c.hangs++;
    c.note(String(err));
  }
  // Offsets are committed only after the dead letters of their records were acknowledged: the DLQ
  // is complete now.
  const letters = await readDlq(kafka, names.dlq);
  const byOffset = new Map(letters.map((l) => [l.headers[DLQ_HEADERS.sourceOffset], l]));
  const lost = deadExpected.filter((r) => !byOffset.has(r.offset));
  t.same(
    lost.map((r) => r.what),
    [],
    'every bad record is in the DLQ, found by its source offset',
  );
  for (const r of deadExpected) {
    const l = byOffset.get(r.offset);
    if (!l) continue;
    t.equal(l.headers[DLQ_HEADERS.sourceTopic], names.topic, `${r.what}: source topic`);
    t.match(
      l.headers[DLQ_HEADERS.errorCode] ?? '',
      r.what.startsWith('dup-') ? /^PM_ERR_DUPLICATE_ID$/ : /^PM_ERR_RECORD_/,
      `${r.what}: ${l.headers[DLQ_HEADERS.errorCode] ?? 'no error code'}`,
    );
    const cut = l.headers[DLQ_HEADERS.truncated] !== undefined;
    if (!cut)
      t.ok((l.value ?? Buffer.alloc(0)).equals(r.value ?? Buffer.alloc(0)), `${r.what}: its very bytes`);
    else t.ok(r.value && r.value.length > MiB / 2, `${r.what}: only a big record is cut`);
  }
  t.equal(letters.length, deadExpected.length, 'no letter for a valid record, none twice');

  // Every valid record indexed, once, as sent last.
  await until(
    `${expected.size} crashes searchable`,
    async () => (await searchableCount(es, names.alias)) >= expected.size,
  );
  t.equal(await searchableCount(es, names.alias), expected.size, 'exactly the valid crashes, one per id');
  const docs = await es.mget<CrashEvent>({
    docs: [...expected.values()].map((e) => ({
      _index: crashIndexFor(e['@timestamp'], names.alias),
      _id: e.crash.id,
    })),
  });
  const missing = docs.docs.filter((d) => !('found' in d) || !d.found).map((d) => d._id);
  t.same(missing, [], 'every valid crash found by its id');
  for (const d of docs.docs) {
    if (!('found' in d) || !d.found) continue;
    const want = expected.get(d._id);
    t.same(
      d._source?.process,
      want?.process,
      `${d._id}: the content sent (the later, for the id sent twice)`,
    );
  }
  const lostValid = [...expected.keys()].filter((id) => missing.includes(id));
  // A bad record's bytes never reach the index: the alias holds only the expected ids.
  const all = await es.search<CrashEvent>({ index: names.alias, size: 100, _source: ['crash.id'] });
  const strays = all.hits.hits.filter((h) => !expected.has(h._id ?? '')).length;
  c.leaks += strays;
  t.ok(await indexer.ready(), 'the indexer is ready after it all');
  c.report(t, { lost: lost.length + lostValid.length });
});
