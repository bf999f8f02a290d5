import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  crashIndexFor,
  crashKey,
  decodeDumpRemovalMessage,
  dumpRelPath,
  encodeDumpDeletionMessage,
  encodeCrashMessage,
  eventRelPath,
  newCrashId,
  validExamples,
  type CrashEvent,
} from '@podmortem/contract';
import { envName } from '@podmortem/contract/runtime';
import { readBytes, type Store } from '@podmortem/contract/store';
import { CONFIG_PREFIX } from '../retention/src/config.ts';
import { BACKENDS, openBackend, type Backend } from './support/backends.ts';
import { FakeKubeApi } from './support/fake-kube-api.ts';
import {
  groupProgress,
  produce,
  readDlq,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  topicsForTest,
  uniqueNames,
  type Names,
} from './support/indexer-harness.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';
import { startService, stopService, type ServiceProcess } from './support/service-process.ts';
import { stack, uniqueName } from './support/stack.ts';

// Retention as it runs in production: two `node retention/src/main.ts` processes (the Deployment's
// two replicas) over one store and one lease, the real indexer merging their removals into
// Elasticsearch, the namespaces from the Kubernetes API stand-in. Old cores and the cores of
// namespaces that went away (one while retention ran, one before) are removed exactly once, with
// the reason on the document; young ones stay.

const DAY = 86_400_000;
const NOW = new Date();
const kafka = testKafka();
const es = testElasticsearch();

function crashOf(namespace: string, daysAgo: number): CrashEvent {
  const base = validExamples().find((e) => e.name === 'segv-stored')?.event;
  if (!base?.kubernetes) throw new Error('examples missing');
  const event = structuredClone(base);
  const at = new Date(NOW.getTime() - daysAgo * DAY);
  event['@timestamp'] = at.toISOString();
  event.crash.id = newCrashId(at.getTime());
  if (event.kubernetes) {
    event.kubernetes.namespace = namespace;
    event.kubernetes.pod.uid = crypto.randomUUID();
  }
  event.analysis = { modules: [] };
  event.dump = { ...event.dump, status: 'stored', path: dumpRelPath(event) };
  return event;
}

interface Seeded {
  event: CrashEvent;
  bytes: number;
}

async function seed(store: Store, crashes: Seeded[]): Promise<void> {
  for (const { event, bytes } of crashes) {
    await store.putBytes(dumpRelPath(event), Buffer.alloc(bytes, 7));
    await store.putBytes(eventRelPath(event), Buffer.from(JSON.stringify(event) + '\n'));
  }
}

async function hasCore(store: Store, event: CrashEvent): Promise<boolean> {
  return store.stat(dumpRelPath(event)).then(
    () => true,
    (err: unknown) => {
      if ((err as { code?: string }).code === 'PM_ERR_STORE_NOT_FOUND') return false;
      throw err;
    },
  );
}

async function documentOf(names: Names, event: CrashEvent): Promise<CrashEvent | undefined> {
  return (
    await es.get<CrashEvent>({ index: crashIndexFor(event['@timestamp'], names.alias), id: event.crash.id })
  )._source;
}

function retentionEnv(
  backend: Backend,
  names: Names,
  lease: string,
  kubeconfig: string,
): (opsPort: number) => Record<string, string> {
  const env = (key: string, value: string | number): [string, string] => [
    envName(CONFIG_PREFIX, key),
    String(value),
  ];
  return (opsPort) => ({
    ...backend.env(CONFIG_PREFIX),
    ...Object.fromEntries([
      env('maxAgeDays', 30),
      // A namespace gone for a second is gone: the grace itself is proven by the planner's tests.
      env('namespaceGraceS', 1),
      env('intervalS', 1),
      env('kubeconfig', kubeconfig),
      env('kafkaBrokers', stack.kafkaBrokers.join(',')),
      env('removalTopic', names.removals),
      env('deletionTopic', names.deletions),
      env('deletionGroupId', `${lease}-deletions`),
      env('leaseTopic', lease),
      env('leaseGroupId', lease),
      env('sessionTimeoutMs', 6000),
      env('heartbeatIntervalMs', 1000),
      env('retryMaxMs', 2000),
      env('opsHost', '127.0.0.1'),
      env('opsPort', opsPort),
    ]),
  });
}

/** The lease state each process last logged: true holding it, false standby. */
function leaseHeld(p: ServiceProcess): boolean | undefined {
  let held: boolean | undefined;
  for (const line of p.logs) {
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    const active = (entry as { active?: unknown }).active;
    if (typeof active === 'boolean' && line.includes('retention lease')) held = active;
  }
  return held;
}

const sum = async (ps: ServiceProcess[], name: string, labels: Record<string, string> = {}) =>
  (await Promise.all(ps.map(async (p) => metricValue(await p.metrics(), name, labels)))).reduce(
    (a, b) => a + b,
    0,
  );

for (const name of BACKENDS) {
  t.test(`${name}: two retention processes remove old cores and gone namespaces' once each`, async (t) => {
    const backend = await openBackend(t, name);
    const names = uniqueNames(`pm-ret-e2e-${name}`);
    const lease = uniqueName(`pm-ret-e2e-${name}-lease`);
    const admin = await topicsForTest(t, kafka, es, names, 1);
    t.teardown(() => admin.deleteTopics({ topics: [lease] }).catch(() => undefined));
    const work = await mkdtemp(join(tmpdir(), 'pm-ret-e2e-'));
    t.teardown(() => rm(work, { recursive: true, force: true }));
    const kube = await FakeKubeApi.start();
    t.teardown(() => kube.close());
    for (const ns of ['team-a', 'team-b', 'gone-ns']) kube.addNamespace(ns);
    const kubeconfig = kube.writeKubeconfig(join(work, 'kubeconfig'));

    // Distinct sizes, so the bytes freed say which cores went.
    const old: Seeded[] = [
      { event: crashOf('team-a', 40), bytes: 1000 },
      { event: crashOf('team-a', 35), bytes: 2000 },
      { event: crashOf('team-b', 31), bytes: 4000 },
    ];
    const young: Seeded[] = [
      { event: crashOf('team-a', 3), bytes: 8000 },
      { event: crashOf('team-b', 1), bytes: 16_000 },
    ];
    // gone-ns is listed at first and deleted while retention runs; unlisted never was listed.
    const gone: Seeded[] = [
      { event: crashOf('gone-ns', 1), bytes: 32_000 },
      { event: crashOf('unlisted', 1), bytes: 64_000 },
    ];
    const all = [...old, ...young, ...gone];
    await seed(backend.store, all);

    const indexer = await startIndexer({ names });
    t.teardown(() => stopIndexer(indexer));
    await produce(
      kafka,
      names.topic,
      all.map(({ event }) => ({ key: crashKey(event), value: encodeCrashMessage(event) })),
    );
    await until('the crashes indexed', async () => (await searchableCount(es, names.alias)) === all.length);

    const env = retentionEnv(backend, names, lease, kubeconfig);
    const retentions = await Promise.all([
      startService('retention/src/main.ts', env),
      startService('retention/src/main.ts', env),
    ]);
    for (const p of retentions) t.teardown(() => stopService(p));
    t.teardown(() => {
      if (t.passing()) return;
      for (const [i, p] of retentions.entries())
        t.comment(`retention ${i}:\n${p.logs.slice(-30).join('\n')}`);
      t.comment(`indexer:\n${indexer.logs.slice(-20).join('\n')}`);
    });
    const DUMPS = 'podmortem_retention_dumps_removed_total';

    await until('the old cores removed', async () => (await sum(retentions, DUMPS, { rule: 'age' })) === 3);
    // Once both are in the group no rebalance moves the lease; the holder's next listing (only
    // the holder lists) still has gone-ns, so it goes away while the holder is running.
    await until('both processes in the lease group', async () => {
      const ready = await Promise.all(retentions.map((p) => p.ready()));
      return ready.every(Boolean);
    });
    const listed = kube.requests.get('GET /api/v1/namespaces') ?? 0;
    await until(
      'the holder listing the namespaces again',
      () => (kube.requests.get('GET /api/v1/namespaces') ?? 0) > listed,
    );
    kube.removeNamespace('gone-ns');
    await until(
      "the gone namespaces' cores removed",
      async () => (await sum(retentions, DUMPS, { rule: 'namespace-deleted' })) === 2,
    );
    // Two passes more over the same store: any second removal would have happened by then.
    const passes = await sum(retentions, 'podmortem_retention_passes_total', { result: 'done' });
    await until(
      'two passes more',
      async () =>
        (await sum(retentions, 'podmortem_retention_passes_total', { result: 'done' })) >= passes + 2,
    );

    for (const { event } of [...old, ...gone])
      t.equal(
        await hasCore(backend.store, event),
        false,
        `${event['@timestamp']} ${event.kubernetes?.namespace}: core gone`,
      );
    for (const { event, bytes } of young)
      t.equal(
        (await backend.store.stat(dumpRelPath(event))).size,
        bytes,
        `${event['@timestamp']}: core kept`,
      );
    for (const { event } of all)
      t.ok(await readBytes(backend.store, eventRelPath(event)), 'every event stays in the store');

    t.equal(await sum(retentions, DUMPS, { rule: 'age' }), 3, 'three removed by age');
    t.equal(await sum(retentions, DUMPS, { rule: 'namespace-deleted' }), 2, 'two with their namespace');
    t.equal(await sum(retentions, DUMPS), 5, 'by no other rule');
    t.equal(
      await sum(retentions, 'podmortem_retention_bytes_freed_total', { rule: 'age' }),
      7000,
      'the bytes of the three old cores',
    );
    t.equal(
      await sum(retentions, 'podmortem_retention_bytes_freed_total', { rule: 'namespace-deleted' }),
      96_000,
      'the bytes of the two in namespaces gone',
    );
    t.equal(await sum(retentions, 'podmortem_retention_errors_total'), 0, 'no operation failed');
    t.equal(await sum(retentions, 'podmortem_retention_events_deleted_total'), 0, 'no event past a year');

    const held = retentions.map(leaseHeld);
    t.same([...held].sort(), [false, true], 'one process holds the lease, the other stands by');
    t.same(
      await Promise.all(retentions.map((p) => p.ready())),
      [true, true],
      '/readyz: both joined the lease group, the holder and the standby',
    );

    const records = await readDlq(kafka, names.removals);
    const removed = records.map((r) => {
      const decoded = decodeDumpRemovalMessage(r.value);
      return decoded.ok ? decoded.value.crash.id : `invalid ${String(r.key)}`;
    });
    t.same(
      [...removed].sort(),
      [...old, ...gone].map((s) => s.event.crash.id).sort(),
      'exactly one DumpRemoval per removed core, from the two processes together',
    );

    await until(
      'the indexer through the removals',
      async () => (await groupProgress(admin, names.group, names.removals)).behind === 0,
    );
    for (const { event } of old)
      t.match((await documentOf(names, event))?.dump, {
        status: 'expired',
        reason: 'age: older than 30 days',
        removed_by: 'retention',
        removed_at: /^\d{4}-\d\d-\d\dT/,
      });
    for (const { event } of gone)
      t.match((await documentOf(names, event))?.dump, {
        status: 'expired',
        reason: /^namespace deleted: gone since \d{4}-\d\d-\d\dT/,
        removed_by: 'retention',
      });
    for (const { event } of young)
      t.same((await documentOf(names, event))?.dump, event.dump, 'a young crash keeps its dump stored');
    await es.indices.refresh({ index: names.alias });
    const expired = await es.count({ index: names.alias, query: { term: { 'dump.status': 'expired' } } });
    t.equal(expired.count, 5, 'exactly five documents say expired');
    t.equal(await searchableCount(es, names.alias), all.length, 'no document made or lost');

    // A user's deletion (as the query API publishes it) is done by one of the two, either one.
    const doomed = young[0]?.event;
    if (!doomed) throw new Error('no young crash');
    const requestedAt = new Date();
    await produce(kafka, names.deletions, [
      {
        key: crashKey(doomed),
        value: encodeDumpDeletionMessage({ event: doomed, requestedBy: 'erin', requestedAt }),
      },
    ]);
    const DELETIONS = 'podmortem_retention_deletion_requests_total';
    await until(
      'the deletion done',
      async () => (await sum(retentions, DELETIONS, { result: 'deleted' })) === 1,
    );
    t.equal(await hasCore(backend.store, doomed), false, 'the core the user deleted is gone');
    await until(
      'the indexer through the removal',
      async () => (await groupProgress(admin, names.group, names.removals)).behind === 0,
    );
    t.same(
      (await documentOf(names, doomed))?.dump,
      {
        ...doomed.dump,
        status: 'deleted',
        reason: 'deleted by erin',
        removed_at: requestedAt.toISOString(),
        removed_by: 'erin',
      },
      'the document says who deleted it and when',
    );
    t.equal(await sum(retentions, DELETIONS), 1, 'done once, by one process');
  });
}
