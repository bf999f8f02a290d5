import t from 'tap';
import {
  crashKey,
  dumpRelPath,
  encodeCrashMessage,
  encodeDumpDeletionMessage,
  eventRelPath,
  type CrashEvent,
} from '@podmortem/contract';
import { isStoreError, readBytes, type Store } from '@podmortem/contract/store';
import { openBackend } from './support/backends.ts';
import { startDeletions, type RunningDeletions } from './support/deletions.ts';
import { produce, testKafka } from './support/indexer-harness.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';
import { privateServer } from './support/private-stack.ts';
import { makeCrash, requestTopicFor, writeThrough } from './support/query-api.ts';
import { uniqueName } from './support/stack.ts';

// Retention's consumer of users' deletion requests on the real Kafka and real stores: a record
// that is no deletion request is passed over (logged, counted) and the requests behind it are
// done; with the S3 server down a request waits, uncommitted, through backoff and a shutdown of
// the member holding it, and the member that takes the partition over does it once the server is
// back: nothing is lost.

const kafka = testKafka();
const hour = 3_600_000;

async function hasCore(store: Store, event: CrashEvent): Promise<boolean> {
  try {
    await store.stat(dumpRelPath(event));
    return true;
  } catch (err) {
    if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) return false;
    throw err;
  }
}

async function storedDump(store: Store, event: CrashEvent): Promise<CrashEvent['dump']> {
  const bytes = await readBytes(store, eventRelPath(event), 1 << 20);
  return (JSON.parse(String(bytes)) as CrashEvent).dump;
}

function request(event: CrashEvent, by: string, at = new Date()) {
  return {
    key: crashKey(event),
    value: encodeDumpDeletionMessage({ event, requestedBy: by, requestedAt: at }),
  };
}

async function done(d: RunningDeletions, result: string): Promise<number> {
  return metricValue(await d.telemetry.registry.metrics(), 'podmortem_retention_deletion_requests_total', {
    result,
  });
}

t.test('records that are no deletion request are passed over; the next request is done', async (t) => {
  const { store } = await openBackend(t, 'fs');
  const deletionTopic = (await requestTopicFor(t, 'pm-deletions')).topic;
  const removalTopic = (await requestTopicFor(t, 'pm-removals')).topic;
  const crash = makeCrash({ namespace: 'team-a', at: Date.now() - hour });
  await writeThrough(store, crash);
  const at = new Date();
  await produce(kafka, deletionTopic, [
    { key: 'junk', value: Buffer.from('not json') },
    // A crash event is no deletion request, though it is the same crash.
    { key: crashKey(crash.event), value: encodeCrashMessage(crash.event) },
    request(crash.event, 'alice', at),
  ]);
  const d = await startDeletions(t, { store, deletionTopic, removalTopic });
  await until('the request done', async () => (await done(d, 'deleted')) === 1);
  t.equal(await done(d, 'invalid'), 2, 'both bad records counted');
  const passed = d.logs.lines.filter((l) => l.msg === 'not a dump deletion request, passed over');
  t.equal(passed.length, 2, 'and logged');
  t.match(passed[0], {
    topic: deletionTopic,
    errors: ['(record): not JSON: Unexpected token \'o\', "not json" is not valid JSON'],
  });
  t.match(passed[1], { errors: ['type: must be "io.podmortem.dump-deletion.v1"'] });
  t.notOk(await hasCore(store, crash.event), 'the core is gone');
  t.same(await storedDump(store, crash.event), {
    ...crash.event.dump,
    status: 'deleted',
    reason: 'deleted by alice',
    removed_at: at.toISOString(),
    removed_by: 'alice',
  });
});

t.test(
  'the S3 server down: the request waits, survives its member, and is done once it is back',
  async (t) => {
    const server = await privateServer('seaweedfs');
    t.teardown(() => server.destroy());
    await server.up();
    await t.test('one request through an outage and a hand-over', async (t) => {
      const { store } = await openBackend(t, 's3', { endpoint: server.address });
      const deletionTopic = (await requestTopicFor(t, 'pm-deletions')).topic;
      const removalTopic = (await requestTopicFor(t, 'pm-removals')).topic;
      const crash = makeCrash({ namespace: 'team-a', at: Date.now() - hour });
      await writeThrough(store, crash);
      const groupId = uniqueName('pm-deletions');
      const first = await startDeletions(t, { store, deletionTopic, removalTopic, groupId });

      await server.down();
      await produce(kafka, deletionTopic, [request(crash.event, 'alice')]);
      await until(
        'the deletion to fail with the server down',
        async () =>
          metricValue(await first.telemetry.registry.metrics(), 'podmortem_retention_errors_total', {
            operation: 'user-delete',
          }) >= 2,
        60_000,
      );
      t.equal(await done(first, 'deleted'), 0, 'not done');
      await first.stop();

      await server.up();
      const second = await startDeletions(t, { store, deletionTopic, removalTopic, groupId });
      await until(
        'the request done by the next member',
        async () => (await done(second, 'deleted')) === 1,
        60_000,
      );
      t.notOk(await hasCore(store, crash.event), 'the core is gone');
      t.match(await storedDump(store, crash.event), { status: 'deleted', removed_by: 'alice' });
      t.equal(await done(first, 'deleted'), 0, 'the stopped member never did it');
      t.ok(
        first.logs.lines.some(
          (l) => l.msg === 'dump deletion failed, retrying' && l.crashId === crash.event.crash.id,
        ),
        'the failures were logged with the crash',
      );
    });
  },
);
