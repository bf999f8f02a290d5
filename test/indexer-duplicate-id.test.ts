import { randomUUID } from 'node:crypto';
import t from 'tap';
import {
  analysisRecordOf,
  crashIndexForId,
  crashKey,
  DLQ_HEADERS,
  encodeCrashMessage,
  newCrashId,
  toAnalysisCloudEvent,
  type CrashEvent,
} from '@podmortem/contract';
import {
  crashEvent,
  groupProgress,
  monthsAgo,
  produce,
  readDlq,
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
import { addUser, bearer, harness } from './support/query-api.ts';

// Issue 12, finding 6: the same crash id in two monthly indices was two documents, and get-by-id
// returned whichever it found first (the owner got 404 while another namespace's copy was
// found). Now a crash lives in the one index its id's time names; a second crash of the same id
// (another namespace, another month) is never written, but dead-lettered as PM_ERR_DUPLICATE_ID
// and counted, and its analysis is not merged either; the query API reads exactly that index.
// Against the real Kafka, Elasticsearch, indexer process and query API.

const h = await harness();
t.teardown(() => h.close());
const alice = addUser(h.kube, 'alice', ['team-a']);
const bob = addUser(h.kube, 'bob', ['team-b']);

const names = { ...uniqueNames('pm-idx-dup'), alias: h.index.alias };
const kafka = testKafka();
const es = testElasticsearch();

/** A pod crash of `namespace` at `at`, with the given id. */
function podCrash(i: number, namespace: string, at: Date, id = newCrashId(at.getTime())): CrashEvent {
  for (let j = i; ; j++) {
    const event = crashEvent(j, at, [randomUUID()]);
    if (!event.kubernetes) continue;
    event['@timestamp'] = at.toISOString();
    event.crash.id = id;
    event.kubernetes.namespace = namespace;
    return event;
  }
}

const record = (event: CrashEvent, key = crashKey(event)): StreamRecord => ({
  key,
  value: encodeCrashMessage(event),
  id: event.crash.id,
});

t.test(
  'a crash id held by another crash is refused, counted and never shown to the other namespace',
  async (t) => {
    const admin = await topicsForTest(t, kafka, es, names, 1);
    const indexer = await startIndexer({ names });
    t.teardown(() => stopIndexer(indexer));

    // The owner's crash last month; a crash of team-b this month claiming the same id.
    const ownerAt = new Date(monthsAgo(1).getTime() + 9 * 86_400_000);
    const owner = podCrash(0, 'team-a', ownerAt);
    const forged = podCrash(1, 'team-b', new Date(monthsAgo(0).getTime() + 3_600_000), owner.crash.id);
    const marker = podCrash(2, 'team-a', new Date(monthsAgo(0).getTime() + 7_200_000));
    await produce(kafka, names.topic, [record(owner), record(forged), record(marker)], 1);

    const letters = await until('the duplicate dead-lettered', async () => {
      const l = await readDlq(kafka, names.dlq);
      return l.length > 0 && l;
    });
    t.equal(letters.length, 1, 'one letter');
    const [letter] = letters;
    t.equal(letter?.headers[DLQ_HEADERS.errorCode], 'PM_ERR_DUPLICATE_ID', 'a duplicate id');
    t.match(
      letter?.headers[DLQ_HEADERS.error],
      /namespace team-a stored, team-b sent/,
      'saying how they differ',
    );
    t.ok(letter?.value?.equals(encodeCrashMessage(forged)), 'the very record');
    await until('the marker behind it indexed', async () => {
      const res = await es.count({
        index: `${names.alias}-*`,
        query: { ids: { values: [marker.crash.id] } },
      });
      return res.count === 1;
    });

    await es.indices.refresh({ index: `${names.alias}-*` });
    const copies = await es.search<CrashEvent>({
      index: `${names.alias}-*`,
      query: { ids: { values: [owner.crash.id] } },
    });
    t.same(
      copies.hits.hits.map((hit) => [hit._index, hit._source?.kubernetes?.namespace]),
      [[crashIndexForId(owner.crash.id, names.alias), 'team-a']],
      "one document of the id, the owner's, in the index of its id's month",
    );

    const mine = await h.app.inject({ url: `/v1/crashes/${owner.crash.id}`, headers: bearer(alice) });
    t.equal(mine.statusCode, 200, 'the owner gets the crash');
    t.same(mine.json<CrashEvent>(), owner, 'as the owner sent it');
    const theirs = await h.app.inject({ url: `/v1/crashes/${owner.crash.id}`, headers: bearer(bob) });
    t.equal(theirs.statusCode, 404, 'the other namespace gets 404');
    const listed = await h.app.inject({ url: '/v1/crashes', headers: bearer(bob) });
    t.ok([200, 403].includes(listed.statusCode), `its list answers ${listed.statusCode}`);
    t.notOk(listed.body.includes(owner.crash.id), 'without the crash');

    // The owner's crash again (a re-delivery): merged, no duplicate. An analysis of the forged
    // crash: dead-lettered too, the owner's analysis untouched.
    const forgedAnalysis = analysisRecordOf(forged, {
      status: 'ok',
      analyzed_at: new Date().toISOString(),
      analyzer: 'test',
      title: 'forged',
    });
    await produce(kafka, names.topic, [record(owner)], 1);
    await produce(
      kafka,
      names.analyses,
      [{ key: crashKey(forged), value: Buffer.from(JSON.stringify(toAnalysisCloudEvent(forgedAnalysis))) }],
      1,
    );
    const all = await until('the forged analysis dead-lettered', async () => {
      const l = await readDlq(kafka, names.dlq);
      return l.length >= 2 && l;
    });
    t.equal(all.length, 2, 'no letter for the re-delivery');
    const analysisLetter = all.find((l) => l.headers[DLQ_HEADERS.sourceTopic] === names.analyses);
    t.equal(
      analysisLetter?.headers[DLQ_HEADERS.errorCode],
      'PM_ERR_DUPLICATE_ID',
      'the analysis: a duplicate',
    );
    await until(
      'every crash record committed',
      async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
    );
    const again = await h.app.inject({ url: `/v1/crashes/${owner.crash.id}`, headers: bearer(alice) });
    t.same(again.json<CrashEvent>(), owner, "the owner's crash unchanged");

    const metrics = await indexer.metrics();
    t.equal(
      metricValue(metrics, 'podmortem_indexer_duplicate_ids_total', { record: 'crash' }),
      1,
      'counted: crash',
    );
    t.equal(
      metricValue(metrics, 'podmortem_indexer_duplicate_ids_total', { record: 'analysis' }),
      1,
      'and analysis',
    );
    t.equal(
      metricValue(metrics, 'podmortem_indexer_records_dead_lettered_total', { code: 'PM_ERR_DUPLICATE_ID' }),
      2,
    );
  },
);
