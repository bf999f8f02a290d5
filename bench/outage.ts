// bench:outage — how often the indexer tries Elasticsearch while it is down. An Elasticsearch of
// this bench's own (the local stack's is never stopped) is stopped mid-stream, and the indexer's
// bulk retries (podmortem_indexer_retries_total{operation="bulk"}) are counted over WINDOW_S
// seconds. The baseline is the rate its backoff implies, worked out for the same settings: each of
// the partitions indexed at once waits, once the delay is capped, RETRY_MAX_MS with full jitter,
// i.e. RETRY_MAX_MS / 2 on average. Then Elasticsearch comes back and the backlog is indexed.
//
// Needs the local stack (npm run stack up).
//
//   npm run bench:outage           (WINDOW_S=30 RETRY_MAX_MS=2000 to change)
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createTopics,
  crashStream,
  groupProgress,
  monthsAgo,
  produce,
  removeIndexSet,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  uniqueNames,
} from '../test/support/indexer-harness.ts';
import { metricValue } from '../test/support/metrics.ts';
import { until } from '../test/support/poll.ts';
import { privateServer } from '../test/support/private-stack.ts';

const WINDOW_S = Number(process.env.WINDOW_S ?? 30);
const RETRY_MAX_MS = Number(process.env.RETRY_MAX_MS ?? 2000);
// The indexer's default partitionsConsumedConcurrently.
const PARTITIONS_AT_ONCE = 2;

const server = await privateServer('elasticsearch');
const es = testElasticsearch(server.address);
const kafka = testKafka();
const admin = kafka.admin();
await admin.connect();
const names = uniqueNames('pm-bench-outage');
await createTopics(admin, names, 6);
await server.up();
const indexer = await startIndexer({
  names,
  elasticsearchUrl: server.address,
  env: { LOG_LEVEL: 'warn', PODMORTEM_INDEXER_RETRY_MAX_MS: String(RETRY_MAX_MS) },
});
const bulkRetries = async () =>
  metricValue(await indexer.metrics(), 'podmortem_indexer_retries_total', { operation: 'bulk' });

let perSecond: number;
try {
  await until('the indexer ready', () => indexer.ready());
  const stream = crashStream({ unique: 6000, duplicates: 0, invalid: 0, months: [monthsAgo(0)] });
  const producing = produce(kafka, names.topic, stream.records, 200);
  await until('some crashes indexed', async () => (await searchableCount(es, names.alias)) >= 1000);
  await server.down();
  await producing;
  await until('the indexer to notice', async () => !(await indexer.ready()));
  // Past the first doublings, so that the window sees the capped delay only.
  await sleep(2 * RETRY_MAX_MS);
  const before = await bulkRetries();
  const started = performance.now();
  // A rate over a fixed window: here, unlike in a test, the wait is the measurement.
  await sleep(WINDOW_S * 1000);
  perSecond = ((await bulkRetries()) - before) / ((performance.now() - started) / 1000);
  await server.up();
  await until(
    'the backlog indexed',
    async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
    300_000,
  );
} finally {
  await stopIndexer(indexer);
  await admin.deleteTopics({ topics: [names.topic, names.dlq] }).catch(() => undefined);
  await admin.disconnect();
  await removeIndexSet(es, names.alias).catch(() => undefined);
  await es.close();
  await server.destroy();
}

const expected = PARTITIONS_AT_ONCE / (RETRY_MAX_MS / 2 / 1000);
console.log(`\nbench:outage — the indexer's bulk retries while Elasticsearch is down, over ${WINDOW_S} s`);
console.log(`  measured  ${perSecond.toFixed(2)} attempts/s`);
console.log(
  `  backoff   ${expected.toFixed(2)} attempts/s (${PARTITIONS_AT_ONCE} partitions at once, capped at ${RETRY_MAX_MS} ms, full jitter)`,
);
console.log(`  ratio     ${(perSecond / expected).toFixed(2)}x (1.00x: exactly as the backoff spaces them)`);
