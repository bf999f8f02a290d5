import t from 'tap';
import {
  createTopics,
  monthsAgo,
  removeIndexSet,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  uniqueNames,
} from './support/indexer-harness.ts';
import { crashIndexFor } from '@podmortem/contract';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';

// The retention job of a running indexer deletes whole monthly indices once all of their month is
// older than the configured age, and touches nothing that is not named like its own indices.

const names = uniqueNames('pm-idx-ret');
const kafka = testKafka();
const es = testElasticsearch();

t.test('expired monthly indices are deleted, nothing else', async (t) => {
  const admin = kafka.admin();
  await admin.connect();
  const other = `${names.alias}x-2001.01`;
  t.teardown(async () => {
    await admin.deleteTopics({ topics: [names.topic, names.analyses, names.dlq] }).catch(() => undefined);
    await admin.disconnect();
    await removeIndexSet(es, names.alias);
    await es.indices.delete({ index: other }).catch(() => undefined);
  });
  await createTopics(admin, names, 1);

  const expired = [crashIndexFor(monthsAgo(30), names.alias), crashIndexFor(monthsAgo(14), names.alias)];
  const kept = [
    crashIndexFor(monthsAgo(2), names.alias),
    `${names.alias}-2001.01-restored`,
    `${names.alias}-archive`,
    other,
  ];
  for (const index of [...expired, ...kept]) await es.indices.create({ index });

  // 300 days: everything 14 and 30 months ago has expired, 2 months ago has not.
  const indexer = await startIndexer({
    names,
    env: { PODMORTEM_INDEXER_RETENTION_DAYS: '300', PODMORTEM_INDEXER_RETENTION_INTERVAL_MS: '1000' },
  });
  t.teardown(() => stopIndexer(indexer));
  await until('the retention job ran', async () => {
    return (
      metricValue(await indexer.metrics(), 'podmortem_indexer_retention_runs_total', { status: 'ok' }) >= 2
    );
  });

  for (const index of expired) t.notOk(await es.indices.exists({ index }), `${index} deleted`);
  for (const index of kept) t.ok(await es.indices.exists({ index }), `${index} kept`);
  t.equal(metricValue(await indexer.metrics(), 'podmortem_indexer_retention_indices_deleted_total'), 2);
  t.equal(
    indexer.logs.filter((l) => l.includes('retention: deleted index')).length,
    2,
    'each deletion logged once, though the job ran again',
  );
});
