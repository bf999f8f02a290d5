import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { newCrashId, type CrashEvent } from '@podmortem/contract';
import {
  collectorSetup,
  compileC,
  CRASHERS,
  gcore,
  processInCgroup,
  runHandler,
  type AgentProcess,
  type CollectorSetup,
} from './support/collector-agent.ts';
import { BACKENDS, openBackend } from './support/backends.ts';
import { cgroup2Mount, createPodCgroup } from './support/pod-cgroup.ts';
import { privateServer } from './support/private-stack.ts';
import { stack } from './support/stack.ts';
import { until } from './support/poll.ts';

// Faults, nothing lost. Crashes are fed through the real handler process (as the kernel runs it,
// with a real core made by gcore of a live process sitting in a pod-shaped cgroup), so these
// tests need no core_pattern. Each fault is real: a Kafka broker stopped, the agent SIGKILLed, a
// full tmpfs as the storage root, an S3 server of the test's own stopped, the Kubernetes API's
// port closed. Kafka down and the SIGKILL run on each store backend (the storage root, a bucket).

const sleeperBin = compileC('sleeper', CRASHERS.sleeper);

interface Crashable {
  pod: { namespace: string; name: string; uid: string; containerId: string };
  pid: number;
  core: Buffer;
  /** Runs the handler for one crash of the process; resolves when the spool holds it. */
  crash(): Promise<void>;
}

/** A pod on the fake API and a live process in its container's cgroup, with a core of it. */
async function crashable(
  t: { teardown(fn: () => Promise<void>): void },
  setup: CollectorSetup,
  options: { addToApi?: boolean } = {},
): Promise<Crashable> {
  const pod = {
    namespace: 'orders',
    name: `worker-${randomBytes(3).toString('hex')}`,
    uid: randomUUID(),
    containerId: randomBytes(32).toString('hex'),
  };
  if (options.addToApi !== false) addPod(setup, pod);
  const cgroup = createPodCgroup(pod.uid, pod.containerId);
  const proc = await processInCgroup(cgroup.path, sleeperBin);
  t.teardown(async () => {
    await proc.kill();
    cgroup.remove();
  });
  const core = gcore(proc.pid, setup.dir);
  return {
    pod,
    pid: proc.pid,
    core,
    async crash() {
      const run = await runHandler(
        setup.installDir,
        { pid: proc.pid, signal: 11, comm: 'sleeper', exe: sleeperBin },
        core,
      );
      if (run.code !== 0) throw new Error(`handler exited ${run.code}: ${run.stderr}`);
    },
  };
}

function addPod(setup: CollectorSetup, pod: Crashable['pod']): void {
  setup.kube.addPod({
    namespace: pod.namespace,
    name: pod.name,
    uid: pod.uid,
    nodeName: setup.nodeName,
    containers: [
      {
        name: 'worker',
        image: 'registry.example/orders/worker:3',
        containerID: `containerd://${pod.containerId}`,
      },
    ],
  });
}

const metas = (setup: CollectorSetup) => setup.spoolLeft().filter((n) => n.endsWith('.meta.json'));
const unlimited = { PODMORTEM_COLLECTOR_HANDLER_RATE_LIMIT_DUMPS: '100000' };

for (const name of BACKENDS)
  t.test(
    `${name}: Kafka down when a crash happens: it waits in the spool and is delivered when Kafka returns`,
    async (t) => {
      const kafka = await privateServer('kafka');
      t.teardown(() => kafka.destroy());
      await kafka.up();
      const backend = await openBackend(t, name);
      const setup = await collectorSetup([kafka.address], { liveConsumer: false, backend });
      t.teardown(() => setup.close());
      const proc = await crashable(t, setup);
      const agent = await setup.start(unlimited);

      await kafka.down();
      await proc.crash();
      // Storage and OTLP are done; Kafka is refused, again and again.
      await until(
        'Kafka delivery attempts to fail',
        async () =>
          (await agent.metric('podmortem_collector_delivery_failures_total', { step: 'kafka' })) >= 3,
        120_000,
      );
      t.equal(metas(setup).length, 1, 'the crash is still in the spool');
      t.equal((await setup.storedKeys()).dumps.length, 1, 'stored once');
      t.equal(setup.otlp.records.length, 1, 'announced over OTLP once');
      t.equal(await agent.metric('podmortem_collector_spool_entries'), 1);

      await kafka.up();
      const events = await setup.readTopic((e) => e.length >= 1);
      await setup.untilSpoolEmpty();
      t.equal(events.length, 1);
      t.equal(events[0]?.process.pid, proc.pid);
      t.equal(events[0]?.kubernetes?.pod.uid, proc.pod.uid);
      t.same((await setup.storedKeys()).dumps.length, 1, 'not stored again by the retries');
      t.equal(setup.otlp.records.length, 1, 'not announced over OTLP again by the retries');
      t.equal(await agent.metric('podmortem_collector_crashes_total', { namespace: 'orders' }), 1);
    },
  );

for (const name of BACKENDS)
  t.test(
    `${name}: the agent SIGKILLed mid-delivery and started again: one stored dump, the crash delivered`,
    async (t) => {
      const backend = await openBackend(t, name);
      const setup = await collectorSetup(stack.kafkaBrokers, { backend });
      t.teardown(() => setup.close());
      const proc = await crashable(t, setup);
      let agent: AgentProcess = await setup.start(unlimited);

      // Stalled between storage and the announcements: OTLP refuses.
      setup.otlp.failWith(503);
      await proc.crash();
      await until('the crash to be stored', async () => (await setup.storedKeys()).events.length === 1);
      await until(
        'the OTLP export to be refused',
        async () =>
          (await agent.metric('podmortem_collector_delivery_failures_total', { step: 'otlp' })) >= 1,
      );
      await agent.kill();
      setup.otlp.failWith(undefined);
      t.equal(metas(setup).length, 1, 'killed before the end: the entry is still in the spool');

      agent = await setup.start(unlimited);
      await setup.untilSpoolEmpty();
      const event = await until('the crash on Kafka', () =>
        setup.topicEvents().find((e) => e.process.pid === proc.pid),
      );
      const once = await setup.storedKeys();
      t.same(once.dumps.length, 1, 'exactly one stored dump');
      t.same(once.events.length, 1);
      const ids = new Set(setup.topicEvents().map((e) => e.crash.id));
      t.same([...ids], [event.crash.id], 'any duplicate on Kafka shares the crash id');
      t.ok(setup.otlp.withAttribute('podmortem.crash.id', event.crash.id).length >= 1, 'announced over OTLP');

      // Killed at an arbitrary point of a stream of crashes: every one delivered, each stored once.
      const count = 12;
      for (let i = 0; i < count; i++) await proc.crash();
      await until(
        'a first crash of the batch stored',
        async () => (await setup.storedKeys()).events.length >= 2,
      );
      await agent.kill();
      agent = await setup.start(unlimited);
      await setup.untilSpoolEmpty(120_000);
      const stored = await setup.storedKeys();
      t.equal(stored.dumps.length, count + 1, 'one dump per crash');
      t.equal(stored.events.length, count + 1, 'one event file per crash');
      await until(
        'every crash on Kafka',
        () => new Set(setup.topicEvents().map((e) => e.crash.id)).size === count + 1,
      );
      const storedIds = new Set(stored.events.map((f) => f.split('/').at(-1)?.replace('.json', '')));
      t.same(
        new Set(setup.topicEvents().map((e) => e.crash.id)),
        storedIds,
        'Kafka and storage agree on the crashes',
      );
      t.same(
        readdirSync(setup.spoolDir).filter((n) => n.startsWith('.tmp-')),
        [],
        'no half-written spool file left',
      );
      await agent.stop();
    },
  );

t.test(
  'the S3 server down when crashes happen: they wait in the spool, delivered when it returns',
  async (t) => {
    const server = await privateServer('seaweedfs');
    t.teardown(() => server.destroy());
    await server.up();
    // Its own test, so that the bucket is emptied and removed before the server goes.
    await t.test('three crashes while it is down', async (t) => {
      const backend = await openBackend(t, 's3', { endpoint: server.address });
      const setup = await collectorSetup(stack.kafkaBrokers, { backend });
      t.teardown(() => setup.close());
      const proc = await crashable(t, setup);
      const agent = await setup.start(unlimited);

      await server.down();
      const count = 3;
      for (let i = 0; i < count; i++) await proc.crash();
      await until(
        'storage to fail with the server down',
        async () =>
          (await agent.metric('podmortem_collector_delivery_failures_total', { step: 'storage' })) >=
          2 * count,
        120_000,
      );
      t.equal(metas(setup).length, count, 'every crash waits in the spool');
      t.same(setup.topicEvents(), [], 'nothing announced before it is stored');
      t.equal(setup.otlp.records.length, 0, 'nor over OTLP');

      await server.up();
      await setup.untilSpoolEmpty(120_000);
      const events = await until('every crash on Kafka', () => {
        const mine = setup.topicEvents().filter((e) => e.process.pid === proc.pid);
        return new Set(mine.map((e) => e.crash.id)).size >= count ? mine : undefined;
      });
      const ids = new Set(events.map((e) => e.crash.id));
      t.equal(ids.size, count, 'each crash delivered');
      t.ok(
        events.every((e) => e.dump.status === 'stored'),
        'each with its dump stored',
      );
      const stored = await setup.storedKeys();
      t.equal(stored.dumps.length, count, 'one dump per crash in the bucket');
      t.same(
        new Set(stored.events.map((k) => k.split('/').at(-1)?.replace('.json', ''))),
        ids,
        'the bucket and Kafka agree on the crashes',
      );
      t.same(await backend.store.list('_none'), [], 'the store answers again');
      t.equal(await agent.metric('podmortem_collector_crashes_total', { namespace: 'orders' }), count);
      await agent.stop();
    });
  },
);

t.test('a full storage root: the crash stays pending, then is stored when space returns', async (t) => {
  const setup = await collectorSetup(stack.kafkaBrokers);
  t.teardown(() => setup.close());
  const mount = join(setup.dir, 'small');
  mkdirSync(mount);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mount]);
  t.teardown(() => execFileSync('umount', ['-l', mount]));
  const proc = await crashable(t, setup);
  // Leave less room than the compressed core needs.
  const filler = join(mount, 'filler');
  const fs = statfsSync(mount);
  writeFileSync(filler, Buffer.alloc(fs.bavail * fs.bsize - 8 * 1024));
  const agent = await setup.start({ ...unlimited, PODMORTEM_COLLECTOR_STORAGE_ROOT: mount });

  await proc.crash();
  await until(
    'storage to fail for want of space',
    async () =>
      (await agent.metric('podmortem_collector_delivery_failures_total', {
        step: 'storage',
        code: 'PM_ERR_STORAGE_FULL',
      })) >= 3,
  );
  t.equal(metas(setup).length, 1, 'the crash waits in the spool');
  t.same(setup.topicEvents(), [], 'nothing announced before it is stored');
  t.equal(
    execFileSync('find', [mount, '-type', 'f']).toString().trim(),
    filler,
    'nothing on the volume but the filler',
  );

  rmSync(filler);
  await setup.untilSpoolEmpty();
  const event = await until('the crash on Kafka', () =>
    setup.topicEvents().find((e) => e.process.pid === proc.pid),
  );
  t.equal(event.dump.status, 'stored');
  t.ok(existsSync(join(mount, event.dump.path ?? '')), 'the dump is on the volume');
  const leftovers = execFileSync('find', [mount, '-name', '.tmp-*']).toString().trim();
  t.equal(leftovers, '', 'no temporary file left by the failed writes');
  await agent.stop();
});

t.test(
  'the Kubernetes API unreachable: crashes of pods wait, and are delivered with the pod once it is back',
  async (t) => {
    const setup = await collectorSetup(stack.kafkaBrokers);
    t.teardown(() => setup.close());
    const inPod = await crashable(t, setup, { addToApi: false });
    await setup.kube.stop();
    // The pod is created while the agent cannot see the API; a short pod wait would give up early.
    addPod(setup, inPod.pod);
    const agent = await setup.start({ ...unlimited, PODMORTEM_COLLECTOR_POD_WAIT_MS: '500' });
    t.equal(
      (await fetch(`http://127.0.0.1:${agent.opsPort ?? 0}/readyz`)).status,
      503,
      'not ready without the API',
    );

    await inPod.crash();
    // A process outside any pod needs no API: delivered at once.
    const host = await processInCgroup(cgroup2Mount(), sleeperBin);
    t.teardown(() => host.kill());
    const hostRun = await runHandler(
      setup.installDir,
      { pid: host.pid, signal: 6, comm: 'sleeper', exe: sleeperBin },
      inPod.core,
    );
    t.equal(hostRun.code, 0);
    const hostEvent = await until('the host crash on Kafka', () =>
      setup.topicEvents().find((e) => e.process.pid === host.pid),
    );
    t.equal(hostEvent.kubernetes, undefined, 'a host process: no kubernetes block');
    t.equal(hostEvent.container, undefined);
    t.match(hostEvent.dump.path, new RegExp(`^_host/${setup.nodeName}/_process/`));
    // On Kafka is not yet out of the spool: the entry goes once every sink (OTLP too) has it.
    await until('the host crash removed from the spool', () =>
      setup.spoolLeft().every((n) => !n.includes(hostEvent.crash.id)),
    );

    await until(
      'pod resolution to fail a few times',
      async () =>
        (await agent.metric('podmortem_collector_delivery_failures_total', {
          step: 'prepare',
          code: 'PM_ERR_KUBE_UNAVAILABLE',
        })) >= 3,
    );
    t.equal(metas(setup).length, 1, 'the pod crash waits in the spool, past the pod wait');
    t.notOk(
      setup.topicEvents().some((e) => e.process.pid === inPod.pid),
      'and is not delivered unresolved',
    );

    await setup.kube.restart();
    const event = await until('the pod crash on Kafka', () =>
      setup.topicEvents().find((e) => e.process.pid === inPod.pid),
    );
    t.same(event.kubernetes?.pod, { name: inPod.pod.name, uid: inPod.pod.uid });
    t.equal(event.kubernetes?.namespace, 'orders');
    t.equal(event.kubernetes?.container.name, 'worker');
    await setup.untilSpoolEmpty();
    await until(
      'ready again',
      async () => (await fetch(`http://127.0.0.1:${agent.opsPort ?? 0}/readyz`)).status === 200,
    );
    await agent.stop();
  },
);

t.test(
  'a crash of a pod already deleted is resolved from the tombstone; an unknown container after the pod wait',
  async (t) => {
    const setup = await collectorSetup(stack.kafkaBrokers);
    t.teardown(() => setup.close());
    const gone = await crashable(t, setup);
    const unknown = await crashable(t, setup, { addToApi: false });
    const agent = await setup.start({ ...unlimited, PODMORTEM_COLLECTOR_POD_WAIT_MS: '1000' });
    await until(
      'the pod cache to sync',
      async () => (await agent.metric('podmortem_collector_kube_pod_cache_synced')) === 1,
    );
    setup.kube.deletePod(gone.pod.namespace, gone.pod.name);
    await gone.crash();
    await unknown.crash();
    const goneEvent = await until('the deleted pod crash', () =>
      setup.topicEvents().find((e) => e.process.pid === gone.pid),
    );
    t.equal(goneEvent.kubernetes?.pod.uid, gone.pod.uid, 'resolved from the recently deleted pod');
    const unknownEvent = await until('the unknown pod crash', () =>
      setup.topicEvents().find((e) => e.process.pid === unknown.pid),
    );
    t.equal(unknownEvent.kubernetes, undefined, 'no pod is made up');
    t.same(
      unknownEvent.container,
      { id: unknown.pod.containerId, runtime: 'containerd' },
      'what the cgroup says is kept',
    );
    t.equal(await agent.metric('podmortem_collector_pods_unresolved_total'), 1);
    await agent.stop();
  },
);

t.test('bad spool entries are set aside with their reason and counted; the agent goes on', async (t) => {
  const setup = await collectorSetup(stack.kafkaBrokers);
  t.teardown(() => setup.close());
  const agent = await setup.start(unlimited);
  const notJson = newCrashId();
  writeFileSync(join(setup.spoolDir, `${notJson}.meta.json`), '{"version": 1, "crashId": ');
  const wrongShape = newCrashId();
  writeFileSync(
    join(setup.spoolDir, `${wrongShape}.meta.json`),
    JSON.stringify({ version: 7, crashId: wrongShape }),
  );
  await until(
    'both set aside',
    () =>
      existsSync(join(setup.spoolDir, 'rejected', `${wrongShape}.reason.json`)) &&
      existsSync(join(setup.spoolDir, 'rejected', `${notJson}.reason.json`)),
  );
  t.equal(
    await agent.metric('podmortem_collector_rejected_total', { code: 'PM_ERR_SPOOL_ENTRY_INVALID' }),
    2,
  );
  t.same(metas(setup), [], 'no longer in the spool');

  // Garbage and empty cores through the handler: recorded with a reason, delivered.
  const host = await processInCgroup(cgroup2Mount(), sleeperBin);
  t.teardown(() => host.kill());
  await runHandler(
    setup.installDir,
    { pid: host.pid, signal: 11, comm: 'sleeper', exe: sleeperBin },
    randomBytes(100_000),
  );
  await runHandler(
    setup.installDir,
    { pid: host.pid, signal: 7, comm: 'sleeper', exe: sleeperBin },
    Buffer.alloc(0),
  );
  const events = await until('both crashes on Kafka', () => {
    const mine = setup.topicEvents().filter((e) => e.process.pid === host.pid);
    return mine.length === 2 ? mine : undefined;
  });
  const garbage = events.find((e) => e.signal.number === 11) as CrashEvent;
  t.match(garbage.dump.reason, /core notes unreadable: not an ELF core/);
  t.equal(garbage.dump.status, 'stored', 'the bytes the kernel sent are kept all the same');
  const empty = events.find((e) => e.signal.number === 7) as CrashEvent;
  t.not(empty.dump.status, 'stored');
  t.ok(empty.dump.reason, `an empty core says why: ${empty.dump.reason ?? ''}`);
  await until('the spool to empty', () => metas(setup).length === 0);
  await agent.stop();
});
