import t from 'tap';
import {
  groupProgress,
  issueStream,
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

// Two indexers in one consumer group share the partitions; one is stopped (SIGTERM) in the
// middle of the stream: it finishes its chunk, commits, leaves the group, and the other takes
// over its partitions from the committed offsets.

const names = uniqueNames('pm-idx-rebal');
const kafka = testKafka();
const es = testElasticsearch();
const stream = issueStream(11);

t.test('two indexers in one group, one stopped mid-stream: the same final counts', async (t) => {
  const admin = await topicsForTest(t, kafka, es, names, 6);
  const env = { PODMORTEM_INDEXER_BULK_MAX_RECORDS: '100' };

  const a = await startIndexer({ names, env });
  t.teardown(() => stopIndexer(a));
  await until('indexer A ready', () => a.ready());
  const b = await startIndexer({ names, env });
  t.teardown(() => stopIndexer(b));
  t.teardown(() => {
    if (!t.passing()) t.comment(['A:', ...a.logs.slice(-20), 'B:', ...b.logs.slice(-30)].join('\n'));
  });
  await until('both in the group', async () => {
    const [group] = (await admin.describeGroups([names.group])).groups;
    return group?.state === 'Stable' && group.members.length === 2 && (await a.ready()) && (await b.ready());
  });

  const producing = produce(kafka, names.topic, stream.records, 200);
  await until('some crashes indexed', async () => (await searchableCount(es, names.alias)) >= 2500);
  const consumedByA = metricValue(await a.metrics(), 'podmortem_indexer_records_consumed_total');
  t.ok(consumedByA > 0, 'A took part before it was stopped');
  const atStop = await searchableCount(es, names.alias);
  t.ok(atStop < 9000, `stopped mid-stream: ${atStop} of 9,000 crashes indexed`);
  a.child.kill('SIGTERM');
  t.same(await a.exited, { code: 0, signal: null }, 'A stops cleanly');
  await producing;

  await until('B alone in the group', async () => {
    const [group] = (await admin.describeGroups([names.group])).groups;
    return group?.state === 'Stable' && group.members.length === 1;
  });
  await until(
    'B to commit to the end',
    async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
    180_000,
  );
  await verifyIndexed(t, es, names.alias, stream);
  verifyDeadLetters(t, await readDlq(kafka, names.dlq), stream, names.topic);
  const bMetrics = await b.metrics();
  t.equal(
    metricValue(bMetrics, 'podmortem_indexer_records_consumed_total') + consumedByA <= 10_100 + 2 * 100,
    true,
    'B re-read at most the chunks A had in flight',
  );
  t.ok(b.alive(), 'B kept running');
});
