import t from 'tap';
import { crashKey, DLQ_HEADERS, toCloudEvent, type CrashEvent } from '@podmortem/contract';
import { privateServer } from './support/private-stack.ts';
import {
  crashEvent,
  createTopics,
  groupProgress,
  monthsAgo,
  produce,
  readDlq,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  uniqueNames,
} from './support/indexer-harness.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';

// A bulk request larger than Elasticsearch takes (HTTP 413): an Elasticsearch of this test's own
// with a small http.max_content_length. The indexer splits the chunk in halves until each part
// fits; a single document that is too large on its own goes to the dead-letter topic, and nothing
// else is lost.

const MAX_CONTENT = 64 * 1024;
const kafka = testKafka();

t.test('a bulk over the size limit is split; a document too large alone is dead-lettered', async (t) => {
  const server = await privateServer('elasticsearch', {
    settings: { 'http.max_content_length': `${MAX_CONTENT}b` },
  });
  t.teardown(() => server.destroy());
  await server.up();
  const es = testElasticsearch(server.address);
  t.teardown(() => es.close());
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  const names = uniqueNames('pm-idx-413');
  t.teardown(() => admin.deleteTopics({ topics: [names.topic, names.dlq] }).catch(() => undefined));
  await createTopics(admin, names, 1);

  const uids = ['5d1f8a52-8d7e-4c11-9f70-3f2b6c7d8e02', '5d1f8a52-8d7e-4c11-9f70-3f2b6c7d8e03'];
  const events: CrashEvent[] = Array.from({ length: 300 }, (_, i) => crashEvent(i, monthsAgo(0), uids));
  // Valid by the contract, but larger than a request may be: 100 mapped files with long paths.
  const huge = crashEvent(1000, monthsAgo(0), uids);
  huge.analysis = {
    modules: Array.from({ length: 100 }, (_, i) => ({ path: `/opt/app/${'deep/'.repeat(200)}lib${i}.so` })),
  };
  const records = [...events.slice(0, 150), huge, ...events.slice(150)].map((e) => ({
    key: crashKey(e),
    value: Buffer.from(JSON.stringify(toCloudEvent(e))),
  }));
  const hugeRecord = records[150];
  if (!hugeRecord) throw new Error('the huge record is in the stream');
  t.ok(
    hugeRecord.value.length > MAX_CONTENT,
    `one record alone is over the limit (${hugeRecord.value.length} bytes)`,
  );
  const all = records.reduce((n, r) => n + r.value.length, 0);
  t.ok(all > 4 * MAX_CONTENT, `the stream is several limits long (${all} bytes)`);

  const indexer = await startIndexer({ names, elasticsearchUrl: server.address });
  t.teardown(() => stopIndexer(indexer));
  t.teardown(() => {
    if (!t.passing()) t.comment(indexer.logs.slice(-40).join('\n'));
  });
  await until('the indexer ready', () => indexer.ready());
  // One partition, one send: the indexer's first chunk holds the whole stream.
  await produce(kafka, names.topic, records, records.length);
  await until(
    'the indexer to commit to the end',
    async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
  );

  t.equal(await searchableCount(es, names.alias), events.length, 'every document that fits is indexed');
  const found = await es.search<CrashEvent>({
    index: names.alias,
    size: events.length,
    _source: ['crash.id'],
    query: { ids: { values: events.map((e) => e.crash.id) } },
  });
  t.equal(found.hits.hits.length, events.length, 'by their crash ids');
  t.equal((await es.exists({ index: names.alias, id: huge.crash.id })).valueOf(), false, 'not the huge one');

  const dlq = await readDlq(kafka, names.dlq);
  t.equal(dlq.length, 1, 'exactly one record dead-lettered');
  const [letter] = dlq;
  t.equal(letter?.key?.toString(), hugeRecord.key);
  t.ok(letter?.value?.equals(hugeRecord.value), 'with its original bytes');
  t.match(letter?.headers[DLQ_HEADERS.error], /request_entity_too_large/);
  t.equal(letter?.headers[DLQ_HEADERS.sourceOffset], '150');
  const splits = metricValue(await indexer.metrics(), 'podmortem_indexer_bulk_splits_total');
  t.ok(splits >= 4, `the chunk was split again and again (${splits} splits counted)`);
  t.ok(indexer.alive(), 'the indexer never exited');
});
