import t from 'tap';
import {
  dumpRelPath,
  eventRelPath,
  moduleKey,
  newCrashId,
  validExamples,
  type CrashEvent,
} from '@podmortem/contract';
import { createIdempotentProducer, createLogger } from '@podmortem/contract/runtime';
import { readBytes, type Store } from '@podmortem/contract/store';
import { runPass, type PassParams } from '../retention/src/pass.ts';
import type { RetentionRules } from '../retention/src/plan.ts';
import { createTelemetry } from '../retention/src/telemetry.ts';
import { KafkaLease } from '../retention/src/lease.ts';
import { until } from './support/poll.ts';
import { BACKENDS, openBackend } from './support/backends.ts';
import { testKafka, uniqueNames } from './support/indexer-harness.ts';

// Retention passes over the real store backends (a temporary folder, a fresh S3 bucket) with its
// removals produced to the real Kafka: exact counts of what each rule removes, what a dry run
// and a malformed event leave alone, and modules kept while a remaining core maps them.

const DAY = 86_400_000;
const NOW = new Date();
const OFF: RetentionRules = {
  maxAgeDays: 0,
  eventMaxAgeDays: 0,
  totalBudgetBytes: 0,
  namespaceBudgetBytes: 0,
  namespaceGraceS: 0,
  moduleGraceS: 0,
};

function crashOf(namespace: string, daysAgo: number, buildIds: string[] = []): CrashEvent {
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
  event.analysis = {
    modules: buildIds.map((build_id) => ({ path: `/bin/${build_id}`, build_id, captured: true })),
  };
  event.dump = { ...event.dump, status: 'stored', path: dumpRelPath(event) };
  return event;
}

async function seed(store: Store, event: CrashEvent, bytes: number): Promise<void> {
  await store.putBytes(dumpRelPath(event), Buffer.alloc(bytes, 7));
  await store.putBytes(eventRelPath(event), Buffer.from(JSON.stringify(event)));
}

async function storedEvent(store: Store, event: CrashEvent): Promise<CrashEvent> {
  const bytes = await readBytes(store, eventRelPath(event));
  return JSON.parse(String(bytes)) as CrashEvent;
}

const kafka = testKafka();
const producer = createIdempotentProducer(kafka);
t.before(() => producer.connect());
t.teardown(() => producer.disconnect());

for (const backend of BACKENDS) {
  t.test(`${backend}: each rule removes exactly its cores, oldest first, and says why`, async (t) => {
    const { store } = await openBackend(t, backend);
    const names = uniqueNames('pm-retention');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: names.removals, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();

    const old = [crashOf('team-a', 40, ['aa01']), crashOf('team-a', 35, ['aa01', 'bb02'])];
    const [aYoung, bOlder, newest] = [
      crashOf('team-a', 3, ['bb02']),
      crashOf('team-b', 2),
      crashOf('team-b', 1),
    ];
    const young = [aYoung, bOlder, newest];
    const gone = crashOf('gone-ns', 1);
    for (const e of [...old, ...young]) await seed(store, e, 1000);
    await seed(store, gone, 1000);
    for (const id of ['aa01', 'bb02', 'cc03']) await store.putBytes(moduleKey(id), Buffer.from(id));
    await store.putBytes('team-a/broken-uid/app/not-a-crash.json', Buffer.from('{'));
    const badId = newCrashId();
    await store.putBytes(`team-b/bad-uid/app/${badId}.json`, Buffer.from('{"not":"an event"}'));

    const logger = createLogger('retention-test', { level: 'silent' });
    const params = (rules: Partial<RetentionRules>, extra: Partial<PassParams> = {}): PassParams => ({
      store,
      producer,
      removalTopic: names.removals,
      logger,
      telemetry: createTelemetry(undefined, false),
      rules: { ...OFF, ...rules },
      dryRun: false,
      listed: new Set(['team-a', 'team-b']),
      goneSince: new Map([['gone-ns', new Date(NOW.getTime() - 7200_000)]]),
      isActive: async () => true,
      // A minute on: the modules stored just now are past a grace of 0.
      now: new Date(NOW.getTime() + 60_000),
      ...extra,
    });

    const dry = await runPass(params({ maxAgeDays: 30, namespaceGraceS: 3600 }, { dryRun: true }));
    t.equal(dry.plan.dumps.length, 3, 'dry run plans the two old cores and the gone namespace');
    t.equal(dry.removed, 0, 'dry run removes nothing');
    t.equal(dry.malformed, 1, 'the event that is no event of its key is counted');
    for (const e of [...old, ...young, gone]) t.equal((await store.stat(dumpRelPath(e))).size, 1000);

    const within = await runPass(params({ namespaceGraceS: 10_800 }));
    t.equal(within.removed, 0, 'a namespace gone 2 h is kept within a 3 h grace');
    t.equal(within.modulesDeleted, 1, 'cc03, mapped by no crash, goes; aa01 and bb02 are mapped');
    await t.rejects(store.stat(moduleKey('cc03')), { code: 'PM_ERR_STORE_NOT_FOUND' });

    const age = await runPass(params({ maxAgeDays: 30 }));
    t.equal(age.removed, 2);
    t.equal(age.bytesFreed, 2000);
    t.equal(age.modulesDeleted, 1, 'aa01 goes with its last cores; bb02 is still mapped');
    for (const e of old) {
      await t.rejects(store.stat(dumpRelPath(e)), { code: 'PM_ERR_STORE_NOT_FOUND' });
      t.match((await storedEvent(store, e)).dump, {
        status: 'expired',
        reason: 'age: older than 30 days',
        removed_by: 'retention',
      });
    }
    await t.rejects(store.stat(moduleKey('aa01')), { code: 'PM_ERR_STORE_NOT_FOUND' });
    t.ok(await store.stat(moduleKey('bb02')));

    const again = await runPass(params({ maxAgeDays: 30 }));
    t.equal(again.removed, 0, 'a second pass finds nothing left to remove');

    const after = await runPass(params({ namespaceGraceS: 3600 }));
    t.equal(after.removed, 1, 'after its grace, the gone namespace loses its core');
    t.match((await storedEvent(store, gone)).dump, {
      status: 'expired',
      reason: /^namespace deleted: gone since /,
    });

    const nsBudget = await runPass(params({ namespaceBudgetBytes: 1024 }));
    t.equal(nsBudget.removed, 1, 'team-b holds 2000 bytes: its older core goes');
    t.match((await storedEvent(store, bOlder)).dump, { reason: 'namespace budget: team-b over 1 KiB' });

    const total = await runPass(params({ totalBudgetBytes: 1000 }));
    t.equal(total.removed, 1, '2000 bytes left over a 1000-byte budget: the older core goes');
    t.match((await storedEvent(store, aYoung)).dump, { reason: 'total budget: store over 1000 bytes' });
    t.equal((await store.stat(dumpRelPath(newest))).size, 1000, 'the newest core stays');
    t.ok(await store.stat(`team-b/bad-uid/app/${badId}.json`), 'the malformed event is left alone');

    const lost = await runPass(params({ maxAgeDays: 1 }, { isActive: async () => false }));
    t.equal(lost.removed, 0);
    t.equal(lost.leaseLost, true, 'an instance without the lease deletes nothing');
    t.equal((await store.stat(dumpRelPath(newest))).size, 1000);
  });
}

for (const backend of BACKENDS) {
  t.test(
    `${backend}: a namespace only the store holds is found, and loses its cores after the grace`,
    async (t) => {
      const { store } = await openBackend(t, backend);
      const names = uniqueNames('pm-retention-orphan');
      const admin = kafka.admin();
      await admin.connect();
      await admin.createTopics({
        topics: [{ topic: names.removals, numPartitions: 1 }],
        waitForLeaders: true,
      });
      await admin.disconnect();
      // Deleted while no retention instance ran: this instance never saw it in the API's list.
      const orphans = [crashOf('vanished', 2), crashOf('vanished', 1)];
      const kept = crashOf('team-a', 1);
      for (const e of [...orphans, kept]) await seed(store, e, 300);

      // The instance's memory across its passes, empty as after a restart.
      const goneSince = new Map<string, Date>();
      const pass = (now: Date, listed: ReadonlySet<string> | undefined) =>
        runPass({
          store,
          producer,
          removalTopic: names.removals,
          logger: createLogger('retention-test', { level: 'silent' }),
          telemetry: createTelemetry(undefined, false),
          rules: { ...OFF, namespaceGraceS: 3600 },
          dryRun: false,
          listed,
          goneSince,
          isActive: async () => true,
          now,
        });

      const first = await pass(NOW, new Set(['team-a']));
      t.equal(first.removed, 0, 'first seen missing now: within its grace');
      t.same([...goneSince], [['vanished', NOW]], 'its grace starts at this first sight; team-a is not gone');

      const apiAway = await pass(new Date(NOW.getTime() + 7200_000), undefined);
      t.equal(apiAway.removed, 0, 'the API unread: the namespace rule waits');
      t.same([...goneSince], [['vanished', NOW]], 'and the first sight is kept');

      const after = await pass(new Date(NOW.getTime() + 7200_000), new Set(['team-a']));
      t.equal(after.removed, 2, 'both cores of the vanished namespace go, and only they');
      t.equal(after.bytesFreed, 600);
      for (const e of orphans) {
        await t.rejects(store.stat(dumpRelPath(e)), { code: 'PM_ERR_STORE_NOT_FOUND' });
        t.match((await storedEvent(store, e)).dump, {
          status: 'expired',
          reason: `namespace deleted: gone since ${NOW.toISOString()}`,
          removed_by: 'retention',
        });
      }
      t.equal((await store.stat(dumpRelPath(kept))).size, 300, 'the listed namespace keeps its core');
    },
  );
}

for (const backend of BACKENDS) {
  t.test(
    `${backend}: two instances at once, one lease: one removes everything, the other nothing`,
    async (t) => {
      const { store } = await openBackend(t, backend);
      const names = uniqueNames('pm-retention-lease');
      const admin = kafka.admin();
      await admin.connect();
      await admin.createTopics({
        topics: [{ topic: names.removals, numPartitions: 1 }],
        waitForLeaders: true,
      });
      await admin.disconnect();
      const crashes = Array.from({ length: 6 }, (_, i) => crashOf(`team-${i % 2}`, 40 + i));
      for (const e of crashes) await seed(store, e, 500);

      const logger = createLogger('retention-test', { level: 'silent' });
      const leases = [0, 1].map(
        () =>
          new KafkaLease({
            kafka,
            topic: `${names.topic}.lease`,
            groupId: names.group,
            sessionTimeoutMs: 10_000,
            heartbeatIntervalMs: 1000,
            logger,
          }),
      );
      t.teardown(() => Promise.all(leases.map((l) => l.shutdown())));
      await Promise.all(leases.map((l) => l.start()));
      await until('both members joined, one active', () => {
        const states = leases.map((l) => l.state());
        return states.includes('active') && states.includes('standby');
      });

      const results = await Promise.all(
        leases.map((lease) =>
          runPass({
            store,
            producer,
            removalTopic: names.removals,
            logger,
            telemetry: createTelemetry(undefined, false),
            rules: { ...OFF, maxAgeDays: 30 },
            dryRun: false,
            listed: undefined,
            goneSince: new Map(),
            isActive: () => lease.isActive(),
          }),
        ),
      );
      t.same(results.map((r) => r.removed).sort(), [0, 6], 'one instance removed all six, the other none');
      t.same(results.map((r) => r.leaseLost).sort(), [false, true]);
      for (const e of crashes)
        await t.rejects(store.stat(dumpRelPath(e)), { code: 'PM_ERR_STORE_NOT_FOUND' });
    },
  );
}
