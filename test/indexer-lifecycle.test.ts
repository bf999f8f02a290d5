import t from 'tap';
import { startIndexer, uniqueNames } from './support/indexer-harness.ts';
import { until } from './support/poll.ts';

// An indexer whose Elasticsearch is not there yet: alive (/healthz), not ready (/readyz), waiting
// with backoff; SIGTERM then ends it at once with status 0.

t.test('SIGTERM while waiting for Elasticsearch at start-up exits 0 promptly', async (t) => {
  const indexer = await startIndexer({
    names: uniqueNames('pm-idx-life'),
    elasticsearchUrl: 'http://127.0.0.1:1',
  });
  t.teardown(() => {
    if (indexer.alive()) indexer.child.kill('SIGKILL');
  });
  await until(
    'the indexer to wait for Elasticsearch',
    () => indexer.logs.filter((l) => l.includes('waiting for Elasticsearch')).length >= 2,
  );
  t.equal((await fetch(`${indexer.opsUrl}/healthz`)).status, 200, '/healthz: alive');
  const readyz = await fetch(`${indexer.opsUrl}/readyz`);
  t.equal(readyz.status, 503, '/readyz: not ready');
  t.same(await readyz.json(), { ready: false });
  const retry = JSON.parse(indexer.logs.find((l) => l.includes('waiting for Elasticsearch')) ?? '{}') as {
    attempt?: number;
    delayMs?: number;
  };
  t.equal(retry.attempt, 1, 'each attempt logged as JSON with its number');
  t.ok(typeof retry.delayMs === 'number', 'and the backoff delay');

  const asked = Date.now();
  indexer.child.kill('SIGTERM');
  t.same(await indexer.exited, { code: 0, signal: null }, 'exit status 0');
  t.ok(Date.now() - asked < 10_000, 'without waiting for Elasticsearch');
  t.notOk(
    indexer.logs.some((l) => l.includes('"level":60')),
    'a shutdown, not a failure',
  );
});
