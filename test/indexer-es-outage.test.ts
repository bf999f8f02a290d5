import t from 'tap';
import { crashIndexFor, crashKey, toCloudEvent } from '@podmortem/contract';
import { privateServer } from './support/private-stack.ts';
import {
  crashEvent,
  createTopics,
  crashStream,
  groupProgress,
  monthsAgo,
  produce,
  readDlq,
  removeIndexSet,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  uniqueNames,
  verifyDeadLetters,
  verifyIndexed,
} from './support/indexer-harness.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';

// Elasticsearch down: an Elasticsearch of this test's own (the shared one is never stopped). The
// indexer waits for it at start, and when it goes away mid-stream the consumer pauses: no offset
// moves, attempts are spaced by backoff, the group keeps the member through heartbeats, and
// everything is indexed once Elasticsearch is back, without the process ever exiting.

const kafka = testKafka();
// As the harness configures the indexer (PODMORTEM_INDEXER_SESSION_TIMEOUT_MS) and its default
// partitionsConsumedConcurrently.
const SESSION_TIMEOUT_MS = 10_000;
const PARTITIONS_AT_ONCE = 2;

interface BulkRetry {
  time: number;
  attempt: number;
  delayMs: number;
}

/** The indexer's "bulk index failed, retrying" log lines. */
function bulkRetries(logs: string[]): BulkRetry[] {
  return logs
    .filter((l) => l.includes('"bulk index failed, retrying"'))
    .map((l) => JSON.parse(l) as BulkRetry);
}

t.test('Elasticsearch down at start and mid-stream', async (t) => {
  const server = await privateServer('elasticsearch');
  t.teardown(() => server.destroy());
  const es = testElasticsearch(server.address);
  t.teardown(() => es.close());
  const admin = kafka.admin();
  await admin.connect();

  t.test('the same final counts, and the indexer never exits', async (t) => {
    const names = uniqueNames('pm-idx-esdown');
    t.teardown(() => admin.deleteTopics({ topics: [names.topic, names.dlq] }).catch(() => undefined));
    await createTopics(admin, names, 6);
    const stream = crashStream({
      unique: 9000,
      duplicates: 1000,
      invalid: 100,
      months: [monthsAgo(0), monthsAgo(1)],
      seed: 23,
    });

    // Started before its Elasticsearch: alive, not ready, waiting with backoff.
    const indexer = await startIndexer({ names, elasticsearchUrl: server.address });
    t.teardown(() => stopIndexer(indexer));
    t.teardown(() => {
      if (!t.passing()) t.comment(indexer.logs.slice(-40).join('\n'));
    });
    await until('the indexer to wait for Elasticsearch', () =>
      indexer.logs.some((l) => l.includes('waiting for Elasticsearch')),
    );
    t.equal((await fetch(`${indexer.opsUrl}/healthz`)).status, 200, 'alive while Elasticsearch is missing');
    t.notOk(await indexer.ready(), 'not ready while Elasticsearch is missing');
    await server.up();
    await until('the indexer ready once Elasticsearch is up', () => indexer.ready());

    const producing = produce(kafka, names.topic, stream.records, 200);
    await until('some crashes indexed', async () => (await searchableCount(es, names.alias)) >= 2500);
    const [before] = (await admin.describeGroups([names.group])).groups;
    await server.down();
    await producing;

    // Down for longer than the group's session timeout: until the indexer logs a bulk retry more
    // than one session timeout after the outage was noticed; the group must then have kept the
    // member by heartbeats alone.
    await until('the indexer to notice', async () => !(await indexer.ready()), 60_000);
    const committedAtStart = (await groupProgress(admin, names.group, names.topic)).committed;
    const retriesAtStart = metricValue(await indexer.metrics(), 'podmortem_indexer_retries_total', {
      operation: 'bulk',
    });
    // After the counter was read: every retry logged from now on is counted beyond retriesAtStart.
    const noticed = Date.now();
    const retries = await until('a bulk retried a session timeout into the outage', () => {
      const since = bulkRetries(indexer.logs).filter((r) => r.time >= noticed);
      return since.some((r) => r.time > noticed + SESSION_TIMEOUT_MS) ? since : undefined;
    });
    const metrics = await indexer.metrics();
    t.ok(
      metricValue(metrics, 'podmortem_indexer_retries_total', { operation: 'bulk' }) - retriesAtStart >=
        retries.length,
      `bulk retries counted while Elasticsearch was down (${retries.length} logged)`,
    );
    // No busy loop: each of the partitions indexed at once retries in one loop whose delays are
    // the backoff's (200 ms doubled per attempt, at most 2 s, as configured for these tests).
    t.same(
      retries.filter((r) => r.delayMs < 0 || r.delayMs > Math.min(2000, 200 * 2 ** (r.attempt - 1))),
      [],
      'every retry waits its backoff delay',
    );
    const attempts = Map.groupBy(retries, (r) => r.attempt);
    t.same(
      [...attempts].filter(([, same]) => same.length > PARTITIONS_AT_ONCE).map(([attempt]) => attempt),
      [],
      `no attempt number logged more than ${PARTITIONS_AT_ONCE} times: the retry loops are never restarted`,
    );
    t.ok(
      metricValue(metrics, 'podmortem_indexer_waiting', { operation: 'elasticsearch' }) > 0,
      'metrics: paused',
    );
    t.same(
      (await groupProgress(admin, names.group, names.topic)).committed,
      committedAtStart,
      'no offset moved while Elasticsearch was down',
    );
    t.notOk(await indexer.ready(), '/readyz says not ready');
    const [during] = (await admin.describeGroups([names.group])).groups;
    t.equal(during?.state, 'Stable', 'the group stays stable');
    t.same(
      during?.members.map((m) => m.memberId),
      before?.members.map((m) => m.memberId),
      'the member kept its place in the group (heartbeats went on)',
    );

    await server.up();
    await until(
      'the indexer to commit to the end by itself',
      async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
      180_000,
    );
    t.ok(indexer.alive(), 'the indexer never exited');
    t.notOk(
      indexer.logs.some((l) => l.includes('"level":60')),
      'no fatal log line',
    );
    await until('ready again', () => indexer.ready());
    await verifyIndexed(t, es, names.alias, stream);
    verifyDeadLetters(t, await readDlq(kafka, names.dlq), stream, names.topic);
  });

  t.test(
    'an item Elasticsearch cannot take now (shard unavailable) is retried, not dead-lettered; SIGTERM meanwhile commits nothing',
    async (t) => {
      const names = uniqueNames('pm-idx-shard');
      t.teardown(async () => {
        await admin.deleteTopics({ topics: [names.topic, names.dlq] }).catch(() => undefined);
        await removeIndexSet(es, names.alias);
      });
      await createTopics(admin, names, 1);
      const indexer = await startIndexer({
        names,
        elasticsearchUrl: server.address,
        env: { PODMORTEM_INDEXER_BULK_SHARD_WAIT_MS: '1000' },
      });
      t.teardown(() => stopIndexer(indexer));
      t.teardown(() => {
        if (!t.passing()) t.comment(indexer.logs.slice(-40).join('\n'));
      });
      await until('the indexer ready', () => indexer.ready());

      // The month's index exists, but its only shard may live on no node: items for it get 503.
      const stuckMonth = monthsAgo(1);
      const stuckIndex = crashIndexFor(stuckMonth, names.alias);
      await es.indices.create({
        index: stuckIndex,
        wait_for_active_shards: 0,
        settings: { 'index.routing.allocation.require._name': 'no-such-node' },
      });
      const uids = ['1e0c8a52-8d7e-4c11-9f70-3f2b6c7d8e01'];
      const events = [
        ...Array.from({ length: 20 }, (_, i) => crashEvent(i, monthsAgo(0), uids)),
        ...Array.from({ length: 20 }, (_, i) => crashEvent(100 + i, stuckMonth, uids)),
      ];
      await produce(
        kafka,
        names.topic,
        events.map((e) => ({ key: crashKey(e), value: Buffer.from(JSON.stringify(toCloudEvent(e))) })),
      );
      await until('items retried', async () => {
        return (
          metricValue(await indexer.metrics(), 'podmortem_indexer_retries_total', { operation: 'bulk' }) >= 3
        );
      });
      t.equal(
        (await groupProgress(admin, names.group, names.topic)).behind,
        40,
        'nothing committed meanwhile',
      );
      t.equal((await readDlq(kafka, names.dlq)).length, 0, 'nothing dead-lettered');
      t.notOk(await indexer.ready(), 'not ready while waiting');
      t.match(
        indexer.logs.find((l) => l.includes('bulk index failed, retrying')),
        /unavailable_shards_exception/,
        'the log says why',
      );

      // SIGTERM while the chunk waits: abandoned uncommitted, the group left, the process gone at once.
      const stopAsked = Date.now();
      indexer.child.kill('SIGTERM');
      t.same(await indexer.exited, { code: 0, signal: null }, 'exits 0 on SIGTERM while waiting');
      t.ok(Date.now() - stopAsked < 25_000, 'within the shutdown grace period');
      t.equal((await groupProgress(admin, names.group, names.topic)).behind, 40, 'still nothing committed');
      const [group] = (await admin.describeGroups([names.group])).groups;
      t.equal(group?.members.length, 0, 'left the group');
      t.ok(
        indexer.logs.some((l) => l.includes('chunk abandoned uncommitted')),
        'the abandoned chunk is logged',
      );

      await es.indices.putSettings({
        index: stuckIndex,
        settings: { 'index.routing.allocation.require._name': null },
      });
      const restarted = await startIndexer({ names, elasticsearchUrl: server.address });
      t.teardown(() => stopIndexer(restarted));
      await until(
        'the restarted indexer to commit to the end',
        async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
      );
      t.equal(await searchableCount(es, names.alias), 40, 'all 40 indexed once the shard is there');
      t.equal((await readDlq(kafka, names.dlq)).length, 0, 'still nothing dead-lettered');
    },
  );

  t.teardown(() => admin.disconnect());
});
