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
import { startDeletions } from './support/deletions.ts';
import { metricValue } from './support/metrics.ts';
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

// DELETE /v1/crashes/{id}/dump on real Elasticsearch, Kafka and each store backend, with the
// retention service's deletion consumer performing what the API accepts: allowed with `delete` on
// coredumps/dump (202, then the core gone from the store, the stored event marked, the DumpRemoval
// on its topic, a later download 410 naming who), 403 with read rights alone, 404 for a crash the
// caller may not see and for none at all (nothing requested), idempotent, audited, and 503 naming
// Kafka when it is down. Then once through the real indexer, which merges the removal into the
// crash.

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
    const requests = await requestTopicFor(t, 'pm-delete-requests');
    const h = await harness(
      { kafkaBrokers: stack.kafkaBrokers, dumpDeletionTopic: requests.topic },
      { store: backend.store },
    );
    t.teardown(() => h.close());
    const removals = await readRemovals(topic);
    t.teardown(() => removals.consumer.disconnect());
    const deletions = await startDeletions(t, {
      store: backend.store,
      deletionTopic: requests.topic,
      removalTopic: topic,
    });

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
      t.equal(await requests.published(), 0, 'nothing requested');
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
      t.equal(await requests.published(), 0, 'nothing requested');
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
      t.equal(await requests.published(), 0, 'nothing requested');
    });

    await t.test(
      'allowed: 202, audited; then retention deletes it: gone from the store, marked, on the topic, 410',
      async (t) => {
        const before = h.logs.lines.length;
        const publishedBefore = await published();
        const started = Date.now();
        const res = await h.app.inject({ method: 'DELETE', url, headers: bearer(alice) });
        t.equal(res.statusCode, 202, res.body);
        const body = res.json<{
          crash_id: string;
          dump: CrashEvent['dump'];
          changed: boolean;
          requested_at: string;
          requested_by: string;
        }>();
        t.equal(body.crash_id, id);
        t.equal(body.changed, true);
        t.equal(body.requested_by, 'alice');
        t.equal(body.dump.status, 'stored', 'the dump as it still is');
        const requestedAt = Date.parse(body.requested_at);
        t.ok(requestedAt >= started - 1000 && requestedAt <= Date.now() + 1000, 'requested_at is now');
        t.equal(await requests.published(), 1, 'one deletion request on its topic');

        const audits = h.logs.lines.slice(before).filter((l) => l.audit === true);
        t.equal(audits.length, 1);
        t.match(audits[0], {
          action: 'delete-dump',
          user: 'alice',
          crash_id: id,
          namespace: 'team-a',
          status: 202,
          changed: true,
        });
        t.equal(audits[0]?.at, body.requested_at, 'the audit says when');

        await until(
          'the core gone from the store',
          async () => !(await exists(h.store, dumpRelPath(crash.event))),
        );
        await until(
          'the stored event marked',
          async () => (await storedEvent(h.store, crash.event)).dump.status === 'deleted',
        );
        t.ok(await exists(h.store, dumpRelPath(kept.event)), 'the other crash keeps its core');
        const stored = await storedEvent(h.store, crash.event);
        t.same(
          stored.dump,
          {
            ...crash.event.dump,
            status: 'deleted',
            reason: 'deleted by alice',
            removed_at: body.requested_at,
            removed_by: 'alice',
          },
          'deleted by alice when she asked; the rest of the dump kept',
        );

        await until('the removal record', () => removals.records.length >= 1);
        t.equal((await published()) - publishedBefore, 1, 'one record on the removal topic');
        t.equal(removals.records.length, 1);
        t.match(removals.records[0], {
          crash: { id },
          kubernetes: { namespace: 'team-a', pod: { uid: crash.event.kubernetes?.pod.uid } },
          dump: {
            status: 'deleted',
            removed_by: 'alice',
            reason: 'deleted by alice',
            removed_at: body.requested_at,
          },
        });
        const done = async () =>
          metricValue(
            await deletions.telemetry.registry.metrics(),
            'podmortem_retention_deletion_requests_total',
            {
              result: 'deleted',
            },
          );
        await until('the request done', async () => (await done()) === 1);
        t.match(
          deletions.logs.lines.find((l) => l.msg === 'core deleted at a user’s request'),
          { crashId: id, requestedBy: 'alice', changed: true },
          'retention logs the deletion',
        );

        // Before the indexer has the removal the API reads the store: asked again, it answers it.
        const again = await h.app.inject({ method: 'DELETE', url, headers: bearer(alice) });
        t.equal(again.statusCode, 200, again.body);
        t.same(again.json<{ dump: unknown }>().dump, stored.dump);
        t.equal(await requests.published(), 1, 'no second request');

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
      t.equal(await requests.published(), 1, 'nothing requested again');
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
    dumpDeletionTopic: names.deletions,
  });
  t.teardown(() => h.close());
  await startDeletions(t, { store: h.store, deletionTopic: names.deletions, removalTopic: names.removals });
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
  t.equal(res.statusCode, 202, res.body);
  const { requested_at } = res.json<{ requested_at: string }>();
  const got = await until('the indexed crash deleted', async () => {
    await es.indices.refresh({ index: `${names.alias}*` });
    const r = await h.app.inject({ method: 'GET', url: `/v1/crashes/${id}`, headers: bearer(alice) });
    return r.statusCode === 200 && r.json<CrashEvent>().dump.status === 'deleted' ? r : undefined;
  });
  const { dump } = got.json<CrashEvent>();
  t.same(
    dump,
    {
      ...crash.event.dump,
      status: 'deleted',
      reason: 'deleted by alice',
      removed_at: requested_at,
      removed_by: 'alice',
    },
    'the indexed crash says who deleted it and when she asked',
  );
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
