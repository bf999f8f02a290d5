import { Kafka, logLevel, type Consumer } from 'kafkajs';
import t from 'tap';
import {
  crashKey,
  decodeDumpRemovalMessage,
  encodeCrashMessage,
  dumpRelPath,
  eventRelPath,
  type CrashEvent,
  type DumpRemoval,
} from '@podmortem/contract';
import { isStoreError, readBytes, type Store } from '@podmortem/contract/store';
import { BACKENDS, openBackend } from './support/backends.ts';
import {
  groupProgress,
  produce,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  topicsForTest,
  uniqueNames,
} from './support/indexer-harness.ts';
import { until } from './support/poll.ts';
import { freePort } from './support/ports.ts';
import {
  addUser,
  bearer,
  harness,
  makeCrash,
  RBAC,
  requestTopicFor,
  writeThrough,
  type Harness,
} from './support/query-api.ts';
import { stack, uniqueName } from './support/stack.ts';

// DELETE /v1/crashes/{id}/dump on real Elasticsearch, Kafka and each store backend: allowed with
// `delete` on coredumps/dump (the core gone from the store, the stored event marked, the
// DumpRemoval on its topic, a later download 410 naming who), 403 with read rights alone, 404 for
// a crash the caller may not see and for none at all, idempotent, audited, and 503 naming Kafka
// when it is down. Then once through the real indexer, which merges the removal into the crash.

const hour = 3_600_000;

async function exists(store: Store, key: string): Promise<boolean> {
  try {
    await store.stat(key);
    return true;
  } catch (err) {
    if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) return false;
    throw err;
  }
}

async function storedEvent(store: Store, event: CrashEvent): Promise<CrashEvent> {
  const bytes = await readBytes(store, eventRelPath(event), 1 << 20);
  if (!bytes) throw new Error('no stored event');
  return JSON.parse(bytes.toString('utf8')) as CrashEvent;
}

/** Every removal on `topic` from its beginning, as they arrive (decoded strictly). */
async function readRemovals(topic: string): Promise<{ records: DumpRemoval[]; consumer: Consumer }> {
  const kafka = new Kafka({ brokers: stack.kafkaBrokers, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: uniqueName('pm-removal-reader') });
  const records: DumpRemoval[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: ({ message }) => {
      const decoded = decodeDumpRemovalMessage(message.value);
      if (!decoded.ok) throw new Error(`undecodable removal: ${decoded.errors.join('; ')}`);
      records.push(decoded.value);
      return Promise.resolve();
    },
  });
  return { records, consumer };
}

function grantDelete(h: Harness, user: string, namespace: string): void {
  h.kube.grant({ user, namespace, verbs: ['delete'], ...RBAC, subresource: 'dump' });
}

for (const name of BACKENDS)
  t.test(name, async (t) => {
    const backend = await openBackend(t, name);
    const { topic, published } = await requestTopicFor(t, 'pm-delete-removals');
    const h = await harness(
      { kafkaBrokers: stack.kafkaBrokers, dumpRemovalTopic: topic },
      { store: backend.store },
    );
    t.teardown(() => h.close());
    const removals = await readRemovals(topic);
    t.teardown(() => removals.consumer.disconnect());

    const alice = addUser(h.kube, 'alice', ['team-a']);
    grantDelete(h, 'alice', 'team-a');
    const reader = addUser(h.kube, 'reader', ['team-a']);
    const bob = addUser(h.kube, 'bob', ['team-b']);
    grantDelete(h, 'bob', 'team-b');

    const now = Date.now();
    const crash = makeCrash({ namespace: 'team-a', pod: 'api-0', at: now - 2 * hour });
    const kept = makeCrash({ namespace: 'team-a', pod: 'api-1', at: now - hour });
    const skipped = makeCrash({ namespace: 'team-a', pod: 'api-2', at: now - hour, status: 'skipped' });
    for (const c of [crash, kept, skipped]) await writeThrough(h.store, c);
    await h.index.add([crash.event, kept.event, skipped.event]);
    const id = crash.event.crash.id;
    const url = `/v1/crashes/${id}/dump`;

    await t.test('read rights without delete: 403, nothing removed', async (t) => {
      const res = await h.app.inject({ method: 'DELETE', url, headers: bearer(reader) });
      t.equal(res.statusCode, 403);
      t.equal(res.json<{ code: string }>().code, 'PM_ERR_FORBIDDEN');
      t.match(
        res.json<{ message: string }>().message,
        /reader may not delete coredumps\/dump in namespace team-a/,
      );
      t.ok(await exists(h.store, dumpRelPath(crash.event)), 'the core is still stored');
    });

    await t.test('another namespace and an unknown id: 404, alike', async (t) => {
      const other = await h.app.inject({ method: 'DELETE', url, headers: bearer(bob) });
      const unknown = await h.app.inject({
        method: 'DELETE',
        url: `/v1/crashes/${makeCrash({ at: now }).event.crash.id}/dump`,
        headers: bearer(bob),
      });
      t.equal(other.statusCode, 404);
      t.equal(unknown.statusCode, 404);
      t.equal(other.json<{ code: string }>().code, 'PM_ERR_CRASH_NOT_FOUND');
      t.equal(unknown.json<{ code: string }>().code, 'PM_ERR_CRASH_NOT_FOUND');
      t.ok(await exists(h.store, dumpRelPath(crash.event)), 'the core is still stored');
    });

    await t.test('a malformed id: 400; no token: 401', async (t) => {
      const bad = await h.app.inject({
        method: 'DELETE',
        url: '/v1/crashes/not-an-id/dump',
        headers: bearer(alice),
      });
      t.equal(bad.statusCode, 400);
      t.equal(bad.json<{ code: string }>().code, 'PM_ERR_VALIDATION');
      const anonymous = await h.app.inject({ method: 'DELETE', url });
      t.equal(anonymous.statusCode, 401);
    });

    await t.test('a crash with no stored core: 404 PM_ERR_NO_DUMP', async (t) => {
      const res = await h.app.inject({
        method: 'DELETE',
        url: `/v1/crashes/${skipped.event.crash.id}/dump`,
        headers: bearer(alice),
      });
      t.equal(res.statusCode, 404);
      t.equal(res.json<{ code: string }>().code, 'PM_ERR_NO_DUMP');
    });

    await t.test(
      'allowed: deleted, audited, gone from the store, marked, on the topic, 410 after',
      async (t) => {
        const before = h.logs.lines.length;
        const publishedBefore = await published();
        const started = Date.now();
        const res = await h.app.inject({ method: 'DELETE', url, headers: bearer(alice) });
        t.equal(res.statusCode, 200, res.body);
        const body = res.json<{ crash_id: string; dump: CrashEvent['dump']; changed: boolean }>();
        t.equal(body.crash_id, id);
        t.equal(body.changed, true);
        t.equal(body.dump.status, 'deleted');
        t.equal(body.dump.removed_by, 'alice');
        t.equal(body.dump.reason, 'deleted by alice');
        t.equal(body.dump.sha256, crash.event.dump.sha256, 'the rest of the dump is kept');
        const removedAt = Date.parse(body.dump.removed_at ?? '');
        t.ok(removedAt >= started - 1000 && removedAt <= Date.now() + 1000, 'removed_at is now');

        const audits = h.logs.lines.slice(before).filter((l) => l.audit === true);
        t.equal(audits.length, 1);
        t.match(audits[0], {
          action: 'delete-dump',
          user: 'alice',
          crash_id: id,
          namespace: 'team-a',
          status: 200,
          changed: true,
        });
        t.ok(Math.abs(Date.parse(String(audits[0]?.at)) - removedAt) < 1000, 'the audit says when');

        t.notOk(await exists(h.store, dumpRelPath(crash.event)), 'the core is gone from the store');
        t.ok(await exists(h.store, dumpRelPath(kept.event)), 'the other crash keeps its core');
        const stored = await storedEvent(h.store, crash.event);
        t.match(stored.dump, { status: 'deleted', removed_by: 'alice', reason: 'deleted by alice' });

        t.equal((await published()) - publishedBefore, 1, 'one record on the removal topic');
        await until('the removal record', () => removals.records.length >= 1);
        t.equal(removals.records.length, 1);
        t.match(removals.records[0], {
          crash: { id },
          kubernetes: { namespace: 'team-a', pod: { uid: crash.event.kubernetes?.pod.uid } },
          dump: {
            status: 'deleted',
            removed_by: 'alice',
            reason: 'deleted by alice',
            removed_at: body.dump.removed_at,
          },
        });

        // What the indexer does with that record, so the download reads the crash as deleted.
        await h.index.add([{ ...crash.event, dump: stored.dump }]);
        const download = await h.app.inject({ method: 'GET', url, headers: bearer(alice) });
        t.equal(download.statusCode, 410);
        t.equal(download.json<{ code: string }>().code, 'PM_ERR_DUMP_REMOVED');
        t.match(download.json<{ message: string }>().message, /deleted by alice at /);
      },
    );

    await t.test('deleting again: 200 with the first deletion, nothing changed', async (t) => {
      const first = await storedEvent(h.store, crash.event);
      const carol = addUser(h.kube, 'carol', ['team-a']);
      grantDelete(h, 'carol', 'team-a');
      const res = await h.app.inject({ method: 'DELETE', url, headers: bearer(carol) });
      t.equal(res.statusCode, 200, res.body);
      const body = res.json<{ dump: CrashEvent['dump']; changed: boolean }>();
      t.equal(body.changed, false);
      t.same(body.dump, first.dump, 'the first removal stands: alice, her time');
      t.same((await storedEvent(h.store, crash.event)).dump, first.dump);
      const audit = h.logs.lines.filter((l) => l.audit === true).at(-1);
      t.match(audit, { action: 'delete-dump', user: 'carol', status: 200, changed: false });
    });
  });

t.test('Kafka down: 503 naming Kafka only, audited', async (t) => {
  const backend = await openBackend(t, 'fs');
  const h = await harness(
    { kafkaBrokers: [`127.0.0.1:${await freePort()}`], kafkaTimeoutMs: 500 },
    { store: backend.store },
  );
  t.teardown(() => h.close());
  const alice = addUser(h.kube, 'alice', ['team-a']);
  grantDelete(h, 'alice', 'team-a');
  const crash = makeCrash({ namespace: 'team-a', at: Date.now() - hour });
  await writeThrough(h.store, crash);
  await h.index.add([crash.event]);
  const res = await h.app.inject({
    method: 'DELETE',
    url: `/v1/crashes/${crash.event.crash.id}/dump`,
    headers: bearer(alice),
  });
  t.equal(res.statusCode, 503);
  t.same(res.json(), {
    statusCode: 503,
    code: 'PM_ERR_BACKEND_UNAVAILABLE',
    error: 'Service Unavailable',
    message: 'Kafka is unavailable; retry later',
  });
  t.notMatch(res.body, /127\.0\.0\.1/, 'no address');
  const audit = h.logs.lines.filter((l) => l.audit === true).at(-1);
  t.match(audit, { action: 'delete-dump', user: 'alice', status: 503 });
});

t.test('through the real indexer: the crash says deleted by the caller, the download 410', async (t) => {
  const names = uniqueNames('pm-api-delete');
  const kafka = testKafka();
  const es = testElasticsearch();
  t.teardown(() => es.close());
  const admin = await topicsForTest(t, kafka, es, names, 1);
  const indexer = await startIndexer({ names });
  t.teardown(() => stopIndexer(indexer));
  t.teardown(() => {
    if (!t.passing()) t.comment(indexer.logs.slice(-40).join('\n'));
  });
  await until('the indexer ready', () => indexer.ready());
  const h = await harness({
    kafkaBrokers: stack.kafkaBrokers,
    crashIndex: names.alias,
    dumpRemovalTopic: names.removals,
  });
  t.teardown(() => h.close());
  const alice = addUser(h.kube, 'alice', ['team-a']);
  grantDelete(h, 'alice', 'team-a');
  const crash = makeCrash({ namespace: 'team-a', at: Date.now() - hour });
  const id = crash.event.crash.id;
  await writeThrough(h.store, crash);
  const settled = (topic: string) =>
    until(
      `${topic} indexed to the end`,
      async () => (await groupProgress(admin, names.group, topic)).behind === 0,
    );
  await produce(kafka, names.topic, [{ key: crashKey(crash.event), value: encodeCrashMessage(crash.event) }]);
  await settled(names.topic);
  await es.indices.refresh({ index: `${names.alias}*` });

  const res = await h.app.inject({ method: 'DELETE', url: `/v1/crashes/${id}/dump`, headers: bearer(alice) });
  t.equal(res.statusCode, 200, res.body);
  const { dump } = res.json<{ dump: CrashEvent['dump'] }>();
  await settled(names.removals);
  await es.indices.refresh({ index: `${names.alias}*` });

  const got = await h.app.inject({ method: 'GET', url: `/v1/crashes/${id}`, headers: bearer(alice) });
  t.equal(got.statusCode, 200);
  t.same(got.json<CrashEvent>().dump, dump, 'the indexed crash has the removal the API answered');
  const download = await h.app.inject({
    method: 'GET',
    url: `/v1/crashes/${id}/dump`,
    headers: bearer(alice),
  });
  t.equal(download.statusCode, 410);
  t.same(download.json(), {
    statusCode: 410,
    code: 'PM_ERR_DUMP_REMOVED',
    error: 'Gone',
    message: `the dump of crash ${id} was deleted by alice at ${dump.removed_at ?? ''}: deleted by alice`,
  });
});
