import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import {
  crashIndexFor,
  crashKey,
  dumpRelPath,
  dumpRemovalOf,
  encodeCrashMessage,
  encodeDumpRemovalMessage,
  eventRelPath,
  toDumpRemovalCloudEvent,
  validExamples,
  type CrashEvent,
  type DumpChange,
} from '@podmortem/contract';
import { createIdempotentProducer } from '@podmortem/contract/runtime';
import { FsStore, isStoreError, removeDump } from '@podmortem/contract/store';
import {
  crashEvent,
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
  type StreamRecord,
} from './support/indexer-harness.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';

// Dump removals (a core expired by retention or deleted by a user) merged into their crashes'
// documents by the indexer as it runs in production, against the real Kafka, Elasticsearch and
// filesystem: removeDump's three steps, a removal ahead of its crash, a crash re-delivered after
// its removal, a second removal, and records that are no removal.

const names = uniqueNames('pm-idx-removal');
const kafka = testKafka();
const es = testElasticsearch();
const podUids = ['6a1d9b63-9e8f-4d22-8a81-4a3c7d8e9f12'];

function podCrash(i: number): CrashEvent {
  const pod = validExamples().find((e) => e.name === 'segv-stored')?.event;
  if (!pod) throw new Error('examples missing');
  const event = crashEvent(i, monthsAgo(0), podUids);
  const merged: CrashEvent = { ...event, kubernetes: structuredClone(pod.kubernetes), dump: { ...pod.dump } };
  return { ...merged, dump: { ...merged.dump, status: 'stored', path: dumpRelPath(merged) } };
}

const deletedBy = (who: string, at: string): DumpChange => ({
  status: 'deleted',
  reason: `deleted by ${who}`,
  removed_at: new Date(at),
  removed_by: who,
});
const expired: DumpChange = {
  status: 'expired',
  reason: 'age: older than 30 days',
  removed_at: new Date('2026-12-01T00:00:00.000Z'),
  removed_by: 'retention',
};

const crashRecord = (e: CrashEvent): StreamRecord => ({ key: crashKey(e), value: encodeCrashMessage(e) });
const removalRecord = (e: CrashEvent, change: DumpChange): StreamRecord => {
  const record = dumpRemovalOf(e, change);
  return { key: crashKey(record), value: encodeDumpRemovalMessage(record) };
};

async function documentOf(crash: CrashEvent): Promise<Record<string, unknown> | undefined> {
  const doc = await es.get<Record<string, unknown>>({
    index: crashIndexFor(crash['@timestamp'], names.alias),
    id: crash.crash.id,
  });
  return doc._source;
}

t.test(
  'removals merge into their crash in either order, the first one stands, bad ones are dead-lettered',
  async (t) => {
    const admin = await topicsForTest(t, kafka, es, names, 2);
    const root = await mkdtemp(join(tmpdir(), 'pm-removal-'));
    t.teardown(() => rm(root, { recursive: true, force: true }));
    const store = new FsStore({ root });
    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    t.teardown(() => producer.disconnect());
    const indexer = await startIndexer({ names });
    t.teardown(() => stopIndexer(indexer));
    t.teardown(() => {
      if (!t.passing()) t.comment(indexer.logs.slice(-40).join('\n'));
    });
    await until('the indexer ready', () => indexer.ready());
    const send = async (topic: string, records: StreamRecord[]) => {
      await produce(kafka, topic, records);
      await settled(topic);
    };
    const settled = (topic: string) =>
      until(
        `${topic} committed to the end`,
        async () => (await groupProgress(admin, names.group, topic)).behind === 0,
      );

    const first = podCrash(1); // indexed and stored, then deleted through removeDump
    const second = podCrash(2); // its removal comes before its crash
    const alice = deletedBy('alice', '2026-12-02T10:11:12.013Z');

    // The stored crash, as the collector leaves it.
    await store.put(dumpRelPath(first), Readable.from([Buffer.from('core bytes')]));
    await store.putBytes(eventRelPath(first), Buffer.from(JSON.stringify(first) + '\n'));
    await send(names.topic, [crashRecord(first)]);
    t.same(await documentOf(first), first, 'the crash indexed as sent');

    const removed = await removeDump({ store, producer, event: first, change: alice, topic: names.removals });
    t.equal(removed.changed, true, 'the first removal changes the dump');
    const gone = await store.stat(dumpRelPath(first)).then(
      () => 'still there',
      (err: unknown) => (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND') ? 'gone' : String(err)),
    );
    t.equal(gone, 'gone', 'the core is gone from the store');
    const storedEvent = JSON.parse(await readFile(join(root, eventRelPath(first)), 'utf8')) as CrashEvent;
    t.same(
      storedEvent.dump,
      {
        ...first.dump,
        status: 'deleted',
        reason: 'deleted by alice',
        removed_at: '2026-12-02T10:11:12.013Z',
        removed_by: 'alice',
      },
      'the stored event says deleted, by whom and when',
    );
    await settled(names.removals);
    t.same(await documentOf(first), { ...first, dump: storedEvent.dump }, 'the document says deleted too');

    const again = await removeDump({ store, producer, event: first, change: expired, topic: names.removals });
    t.equal(again.changed, false, 'removing again changes nothing');
    t.same(
      again.removal,
      removed.removal,
      "and publishes the first removal's record again, not the new change",
    );
    await settled(names.removals);

    await send(names.topic, [crashRecord(first)]);
    t.same(
      await documentOf(first),
      { ...first, dump: storedEvent.dump },
      'a crash re-delivered after its removal stays deleted',
    );

    await send(names.removals, [removalRecord(second, expired)]);
    t.same(
      await documentOf(second),
      {
        '@timestamp': second['@timestamp'],
        crash: second.crash,
        kubernetes: { namespace: second.kubernetes?.namespace, pod: { uid: second.kubernetes?.pod.uid } },
        dump: dumpRemovalOf(second, expired).dump,
      },
      "a removal ahead of its crash makes a placeholder with the crash's id, time, namespace and the removal",
    );
    await send(names.topic, [crashRecord(second)]);
    t.same(
      await documentOf(second),
      { ...second, dump: { ...second.dump, ...dumpRemovalOf(second, expired).dump } },
      'the crash arriving later completes the document and keeps its dump expired',
    );
    await send(names.removals, [removalRecord(second, deletedBy('bob', '2026-12-03T00:00:00.000Z'))]);
    t.same(
      (await documentOf(second))?.dump,
      { ...second.dump, ...dumpRemovalOf(second, expired).dump },
      'a later removal of a removed dump changes nothing: the first one stands',
    );

    const good = toDumpRemovalCloudEvent(dumpRemovalOf(first, expired));
    const bad: StreamRecord[] = [
      { key: 'bad/garbage', value: Buffer.from([0xde, 0xad, 0xbe, 0xef]) },
      { key: 'bad/crash', value: encodeCrashMessage(first) },
      {
        key: 'bad/status',
        value: Buffer.from(
          JSON.stringify({ ...good, data: { ...good.data, dump: { ...good.data.dump, status: 'stored' } } }),
        ),
      },
      {
        key: 'bad/id',
        value: Buffer.from(
          JSON.stringify({ ...good, data: { ...good.data, crash: { id: '../../etc/passwd' } } }),
        ),
      },
      {
        key: 'bad/missing',
        value: Buffer.from(JSON.stringify({ ...good, data: { ...good.data, dump: { status: 'expired' } } })),
      },
    ];
    await send(names.removals, bad);
    t.equal(await searchableCount(es, names.alias), 2, 'no bad record made or changed a document');
    const letters = await readDlq(kafka, names.dlq);
    t.equal(letters.length, bad.length, 'each bad record dead-lettered once');
    const expected: [string, string, string][] = [
      ['bad/garbage', 'PM_ERR_RECORD_NOT_JSON', '(record): not JSON'],
      ['bad/crash', 'PM_ERR_RECORD_INVALID', 'type: must be "io.podmortem.dump-removal.v1"'],
      ['bad/status', 'PM_ERR_RECORD_INVALID', 'data.dump.status: must be one of expired, deleted'],
      ['bad/id', 'PM_ERR_RECORD_INVALID', 'data.crash.id'],
      ['bad/missing', 'PM_ERR_RECORD_INVALID', 'data.dump.reason: is required'],
    ];
    for (const [key, code, error] of expected) {
      const letter = letters.find((l) => l.key?.toString() === key);
      const sent = bad.find((b) => b.key === key);
      t.ok(letter && sent && letter.value?.equals(sent.value), `${key}: its very bytes`);
      t.match(
        letter?.headers,
        { 'podmortem-error-code': code, 'podmortem-source-topic': names.removals },
        key,
      );
      t.match(letter?.headers['podmortem-error'], error, `${key}: ${error}`);
    }

    const metrics = await indexer.metrics();
    t.equal(metricValue(metrics, 'podmortem_indexer_dump_removals_merged_total', { result: 'created' }), 1);
    t.equal(metricValue(metrics, 'podmortem_indexer_dump_removals_merged_total', { result: 'updated' }), 1);
    t.ok(
      metricValue(metrics, 'podmortem_indexer_dump_removals_merged_total', { result: 'noop' }) >= 2,
      'the second removals counted as noop',
    );
  },
);
