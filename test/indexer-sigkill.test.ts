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
import { until } from './support/poll.ts';

// The indexer killed with SIGKILL in the middle of the stream (no shutdown at all), then started
// again: offsets were committed only for what Elasticsearch had acknowledged, so the restarted
// process indexes the rest, and re-indexing what was done but not committed doubles nothing.

const names = uniqueNames('pm-idx-kill');
const kafka = testKafka();
const es = testElasticsearch();
const stream = issueStream(7);

t.test('SIGKILL mid-stream and a restart: the same final counts', async (t) => {
  const admin = await topicsForTest(t, kafka, es, names, 6);
  // Small bulks: many commits, so the kill lands between some of them.
  const env = { PODMORTEM_INDEXER_BULK_MAX_RECORDS: '100' };

  const first = await startIndexer({ names, env });
  t.teardown(() => stopIndexer(first));
  await until('the first indexer ready', () => first.ready());
  const producing = produce(kafka, names.topic, stream.records, 200);
  await until('some crashes indexed', async () => (await searchableCount(es, names.alias)) >= 2500);
  first.child.kill('SIGKILL');
  const killed = await first.exited;
  t.equal(killed.signal, 'SIGKILL', 'killed without any shutdown');
  await producing;

  const atKill = await searchableCount(es, names.alias);
  const progress = await groupProgress(admin, names.group, names.topic);
  t.ok(progress.behind > 0, `killed mid-stream: ${progress.behind} records not committed`);
  t.ok(atKill < 9000, `${atKill} of 9,000 crashes indexed when killed`);

  const second = await startIndexer({ names, env });
  t.teardown(() => stopIndexer(second));
  t.teardown(() => {
    if (!t.passing()) t.comment(second.logs.slice(-40).join('\n'));
  });
  await until(
    'the restarted indexer to commit to the end',
    async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
    180_000,
  );

  await verifyIndexed(t, es, names.alias, stream);
  const letters = await readDlq(kafka, names.dlq);
  // A record written to the DLQ but not yet committed when the process died is written again on
  // re-delivery, with the same source partition and offset; every invalid record is there.
  verifyDeadLetters(t, letters, stream, names.topic, false);
  t.comment(`dead-letter records: ${letters.length} for ${stream.invalid.length} invalid records`);
  await stopIndexer(second);
  t.same(await second.exited, { code: 0, signal: null }, 'the restarted indexer stops cleanly');
});
