import t from 'tap';
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
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';

// The indexer as it runs in production (`node indexer/src/main.ts`), against the real Kafka and
// Elasticsearch of the local stack: a stream of 9,000 unique crashes, 1,000 re-deliveries of
// some of them and 100 invalid records of four kinds, over 6 partitions and two months.

const names = uniqueNames('pm-idx-stream');
const kafka = testKafka();
const es = testElasticsearch();
const stream = crashStream({
  unique: 9000,
  duplicates: 1000,
  invalid: 100,
  months: [monthsAgo(0), monthsAgo(1)],
});

t.test('every unique valid crash indexed once, every invalid record dead-lettered once', async (t) => {
  const admin = await topicsForTest(t, kafka, es, names, 6);
  t.equal(stream.records.length, 10_100, '10,000 events (1,000 of them duplicates) + 100 invalid records');

  const indexer = await startIndexer({ names });
  t.teardown(() => stopIndexer(indexer));
  t.teardown(() => {
    if (!t.passing()) t.comment(indexer.logs.slice(-40).join('\n'));
  });
  await until('the indexer ready', () => indexer.ready());

  await produce(kafka, names.topic, stream.records);
  await until(
    'the group to commit to the end',
    async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
  );

  await verifyIndexed(t, es, names.alias, stream);
  verifyDeadLetters(t, await readDlq(kafka, names.dlq), stream, names.topic);

  const metrics = await indexer.metrics();
  t.equal(
    metricValue(metrics, 'podmortem_indexer_records_consumed_total'),
    10_100,
    'metrics: records consumed',
  );
  t.equal(
    metricValue(metrics, 'podmortem_indexer_records_indexed_total'),
    10_000,
    'metrics: records indexed',
  );
  t.equal(
    metricValue(metrics, 'podmortem_indexer_records_indexed_total', { result: 'created' }),
    9000,
    'metrics: 9,000 created, the re-deliveries updated in place',
  );
  t.equal(
    metricValue(metrics, 'podmortem_indexer_records_dead_lettered_total'),
    100,
    'metrics: dead-lettered',
  );
  t.equal(
    metricValue(metrics, 'podmortem_indexer_records_dead_lettered_total', { code: 'PM_ERR_RECORD_NOT_JSON' }),
    25,
  );
  t.equal(
    metricValue(metrics, 'podmortem_indexer_offsets_committed_total'),
    10_100,
    'metrics: offsets committed',
  );
  t.equal(metricValue(metrics, 'podmortem_indexer_consumer_lag'), 0, 'metrics: no lag left');
  t.ok(metricValue(metrics, 'podmortem_indexer_bulk_duration_seconds_count') > 0, 'metrics: bulk latency');
  t.match(metrics, /podmortem_indexer_consumer_lag\{topic="[^"]+",partition="\d"\} 0/, 'lag per partition');
  t.equal(await (await fetch(`${indexer.opsUrl}/healthz`)).text(), '{"status":"ok"}', '/healthz');

  // Re-delivery of the whole stream (a reset group, a replay) changes nothing in Elasticsearch.
  await produce(kafka, names.topic, stream.records.filter((r) => r.id !== undefined).slice(0, 2000));
  await until(
    'the replay committed',
    async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
  );
  t.equal(await searchableCount(es, names.alias), 9000, 'replayed events overwrite themselves');

  // SIGTERM: leaves the group cleanly and exits 0.
  indexer.child.kill('SIGTERM');
  const exit = await indexer.exited;
  t.same(exit, { code: 0, signal: null }, 'exits 0 on SIGTERM');
  const [group] = (await admin.describeGroups([names.group])).groups;
  t.equal(group?.members.length, 0, 'left the consumer group');
  t.ok(
    indexer.logs.some((l) => l.includes('"msg":"stopped"')),
    'logged its shutdown',
  );
  const notJson = indexer.logs.filter((l) => {
    try {
      return typeof JSON.parse(l) !== 'object';
    } catch {
      return true;
    }
  });
  t.same(notJson, [], 'every line it wrote is a JSON log record');
});
