import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import type { CrashEvent } from '@podmortem/contract';
import {
  crashStream,
  groupProgress,
  monthsAgo,
  NAMESPACES,
  produce,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  topicsForTest,
  uniqueNames,
  verifyIndexed,
} from './support/indexer-harness.ts';
import { until } from './support/poll.ts';
import { privateCluster } from './support/private-stack.ts';
import { addUser, bearer, harness } from './support/query-api.ts';

// A real two-node Elasticsearch of this test's own (pm-es-1 master and data, pm-es-2 data; crash
// indices with two primary shards and one replica, so each node holds a copy of every crash),
// losing pm-es-2 to SIGKILL: once while the indexer indexes, once while the query API answers
// searches. The indexer and the API talk to pm-es-1, as they would to a service in front of the
// nodes that leaves a lost node out. Nothing lost, nothing twice, every search answered.

const cluster = await privateCluster('elasticsearch', { members: 2 });
t.teardown(() => cluster.destroy());
const survivor = cluster.member(1);
const lost = cluster.member(2);
const es = testElasticsearch(survivor.address);
t.teardown(() => es.close());
const kafka = testKafka();
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;

/** The cluster's health as pm-es-1 sees it; undefined while it cannot say. */
async function health(): Promise<{ status: string; nodes: number } | undefined> {
  try {
    const h = await es.cluster.health({ timeout: '1s' });
    return { status: h.status, nodes: h.number_of_nodes };
  } catch {
    return undefined;
  }
}

async function green(): Promise<boolean> {
  const h = await health();
  return h?.status === 'green' && h.nodes === 2;
}

/** Crashes held by the shard copies on one node. */
async function countOn(alias: string, node: string): Promise<number> {
  return (await es.count({ index: alias, preference: `_only_nodes:${node}` })).count;
}

const names = uniqueNames('pm-cluster-es');
const stream = crashStream({
  unique: 4000,
  duplicates: 400,
  invalid: 0,
  months: [monthsAgo(0), monthsAgo(1)],
  seed: 71,
});
const crashIds = [...stream.events.keys()].sort();
// Topics and indices for the whole file: the searches read what the indexing test indexed.
const admin = await topicsForTest(t, kafka, es, names, 4);

t.test('a data node killed while the indexer indexes: every crash indexed once', async (t) => {
  const half = Math.floor(stream.records.length / 2);
  await produce(kafka, names.topic, stream.records.slice(0, half), 200);
  const indexer = await startIndexer({
    names,
    elasticsearchUrl: survivor.address,
    env: {
      PODMORTEM_INDEXER_INDEX_SHARDS: '2',
      PODMORTEM_INDEXER_INDEX_REPLICAS: '1',
      PODMORTEM_INDEXER_BULK_MAX_RECORDS: '200',
    },
  });
  t.teardown(() => stopIndexer(indexer));
  t.teardown(() => {
    if (!t.passing()) t.comment(indexer.logs.slice(-60).join('\n'));
  });
  t.comment(`${elapsed()}: indexer started`);
  await until('some crashes indexed', async () => (await searchableCount(es, names.alias)) >= 500);
  await until('every shard copy started on both nodes', green);
  const shards = await es.cat.shards({ index: `${names.alias}-*`, format: 'json', h: ['prirep', 'node'] });
  t.ok(
    shards.some((s) => s.prirep === 'p' && s.node === lost.name),
    `${lost.name} holds primary shards`,
  );
  t.ok(shards.filter((s) => s.prirep === 'r').length > 0, 'the crash indices have their replicas');

  await lost.kill();
  t.comment(`${lost.name} killed at ${await searchableCount(es, names.alias)} indexed`);
  await until(`${lost.name} to leave the cluster`, async () => (await health())?.nodes === 1);
  t.comment(`${elapsed()}: ${lost.name} left the cluster`);
  await produce(kafka, names.topic, stream.records.slice(half), 200);
  await until(
    `the indexer to commit to the end with ${lost.name} down`,
    async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
    180_000,
  );
  t.comment(`${elapsed()}: everything indexed`);
  t.notOk(lost.running(), `${lost.name} was still down`);
  t.equal((await health())?.status, 'yellow', 'degraded: yellow, the replicas of one node missing');
  await verifyIndexed(t, es, names.alias, stream);

  await lost.up();
  t.comment(`${elapsed()}: ${lost.name} restarted`);
  await until(`${lost.name} back, every replica recovered`, green, 180_000);
  t.comment(`${elapsed()}: green`);
  t.equal(
    await countOn(names.alias, lost.name),
    crashIds.length,
    `${lost.name} holds a copy of every crash again`,
  );
  t.equal(
    await countOn(names.alias, survivor.name),
    crashIds.length,
    `${survivor.name} holds a copy of every crash`,
  );
  t.ok(indexer.alive(), 'the indexer never exited');
});

t.test('a data node killed while the query API answers searches: every search answered', async (t) => {
  const h = await harness({
    elasticsearchUrl: survivor.address,
    crashIndex: names.alias,
    rateLimitMax: 1_000_000,
  });
  t.teardown(() => h.close());
  const token = addUser(h.kube, 'sre', [''], { list: true, get: true });
  const urls = [
    '/v1/crashes?limit=100',
    `/v1/crashes?namespace=${NAMESPACES[0] ?? 'payments'}&limit=50`,
    ...crashIds.filter((_, i) => i % 400 === 0).map((id) => `/v1/crashes/${id}`),
  ];

  type Phase = 'before' | 'down' | 'rejoining' | 'back';
  let phase: Phase = 'before';
  const answered: Record<Phase, Map<number, number>> = {
    before: new Map(),
    down: new Map(),
    rejoining: new Map(),
    back: new Map(),
  };
  const answeredIn = (p: Phase) => [...answered[p].values()].reduce((a, b) => a + b, 0);
  const control = { stop: false };
  const searching = (async () => {
    for (let i = 0; !control.stop; i++) {
      const url = urls[i % urls.length] ?? '/v1/crashes';
      const at = phase;
      const res = await h.app.inject({ method: 'GET', url, headers: bearer(token) });
      answered[at].set(res.statusCode, (answered[at].get(res.statusCode) ?? 0) + 1);
      // A caller's pace, not a busy loop on two shared cores.
      await sleep(20);
    }
  })();
  t.teardown(() => {
    control.stop = true;
    return searching;
  });

  await until('searches answered before the loss', () => answeredIn('before') >= 30);
  await lost.kill();
  phase = 'down';
  await until(`${lost.name} to leave the cluster`, async () => (await health())?.nodes === 1);
  await until('searches answered with the node gone', () => answeredIn('down') >= 100);
  phase = 'rejoining';
  await lost.up();
  await until(`${lost.name} back, every replica recovered`, green, 180_000);
  phase = 'back';
  await until('searches answered after the recovery', () => answeredIn('back') >= 30);
  control.stop = true;
  await searching;

  for (const p of ['before', 'down', 'rejoining', 'back'] as const) {
    t.comment(`${p}: ${JSON.stringify(Object.fromEntries(answered[p]))}`);
    t.same([...answered[p].keys()], [200], `every search answered 200 (${p}: ${answeredIn(p)})`);
  }

  // Every crash through the API, page by page: all there, each once.
  const seen: string[] = [];
  let cursor: string | null = null;
  for (;;) {
    const after: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
    const res = await h.app.inject({
      method: 'GET',
      url: `/v1/crashes?limit=500&fields=crash.id${after}`,
      headers: bearer(token),
    });
    t.equal(res.statusCode, 200, 'a page of the listing');
    if (res.statusCode !== 200) break;
    const page: { items: CrashEvent[]; next_cursor: string | null } = res.json();
    seen.push(...page.items.map((e) => e.crash.id));
    cursor = page.next_cursor;
    if (cursor === null) break;
  }
  t.equal(new Set(seen).size, seen.length, 'no crash listed twice');
  t.same([...seen].sort(), crashIds, `all ${crashIds.length} crashes searchable through the API`);
});
