import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { validateCrashEvent, type CrashEvent } from '@podmortem/contract';
import { readBytes } from '@podmortem/contract/store';
import {
  collectorSetup,
  compileC,
  CRASHERS,
  type AgentProcess,
  type CollectorSetup,
} from './support/collector-agent.ts';
import { lockCorePattern } from './support/core-pattern-lock.ts';
import { createPodCgroup } from './support/pod-cgroup.ts';
import { stack } from './support/stack.ts';
import { until } from './support/poll.ts';

// podmortem.io/capture through the kernel: real programs crash in cgroups shaped like pods'
// containers; the pods and namespaces, with their labels and annotations, come from the Kubernetes
// API stand-in. A pod or namespace saying "false" gets its crash recorded (store, Kafka, OTLP) as
// dump.status skipped with the reason, and no core in the store; a pod saying "true" in such a
// namespace is stored; a value neither "true" nor "false" is ignored with a warning; the
// collector's default applies to pods that say nothing. kernel.core_pattern is held under the
// shared lock and restored whatever happens.

const SYSCTL = '/proc/sys/kernel';
const readSysctl = (name: string) => readFileSync(join(SYSCTL, name), 'utf8').replace(/\n$/, '');
const writeSysctl = (name: string, value: string) => writeFileSync(join(SYSCTL, name), value);

const release = await lockCorePattern();
const original = { pattern: readSysctl('core_pattern'), pipeLimit: readSysctl('core_pipe_limit') };
t.teardown(async () => {
  if (readSysctl('core_pattern') !== original.pattern) writeSysctl('core_pattern', original.pattern);
  if (readSysctl('core_pipe_limit') !== original.pipeLimit)
    writeSysctl('core_pipe_limit', original.pipeLimit);
  await release();
});

const SEGV = compileC('segv', CRASHERS.segv);

interface Pod {
  namespace: string;
  name: string;
  uid: string;
  containerId: string;
}

function addPod(setup: CollectorSetup, namespace: string, annotations?: Record<string, string>): Pod {
  const pod = {
    namespace,
    name: `api-${randomBytes(3).toString('hex')}`,
    uid: randomUUID(),
    containerId: randomBytes(32).toString('hex'),
  };
  setup.kube.addPod({
    namespace,
    name: pod.name,
    uid: pod.uid,
    nodeName: setup.nodeName,
    ...(annotations ? { annotations } : {}),
    containers: [
      { name: 'api', image: 'registry.example/api:1', containerID: `containerd://${pod.containerId}` },
    ],
  });
  return pod;
}

/** Crashes SEGV in the pod's container and returns the event the agent put on Kafka. */
async function crash(t: Test, setup: CollectorSetup, pod: Pod): Promise<CrashEvent> {
  const cgroup = createPodCgroup(pod.uid, pod.containerId);
  t.teardown(() => cgroup.remove());
  const run = await cgroup.run(SEGV);
  t.equal(run.signal, 'SIGSEGV');
  t.ok(run.coreDumped, 'the kernel dumped the core (and handed it to the handler)');
  const pid = Number(/pid (\d+)/.exec(run.stdout)?.[1]);
  const event = await until(
    `the crash of pid ${pid} on Kafka`,
    () => setup.topicEvents().find((e) => e.process.pid === pid),
    90_000,
  );
  t.ok(validateCrashEvent(event).ok, 'a valid crash event');
  t.same(event.kubernetes?.pod, { name: pod.name, uid: pod.uid });
  return event;
}

const relOf = (pod: Pod, event: CrashEvent) => `${pod.namespace}/${pod.uid}/api/${event.crash.id}`;

/** The event is recorded as skipped with `reason`, in the store and on OTLP, and no core is stored. */
async function recordedWithoutDump(
  t: Test,
  setup: CollectorSetup,
  pod: Pod,
  event: CrashEvent,
  reason: string,
) {
  t.equal(event.dump.status, 'skipped');
  t.equal(event.dump.reason, reason);
  t.equal(event.dump.path, undefined, 'no dump path');
  t.equal(event.dump.stored_bytes, undefined, 'no stored bytes');
  t.equal(event.dump.compression, undefined);
  t.ok((event.dump.size_bytes ?? 0) > 0, 'the size of the core the kernel wrote');
  t.match(event.dump.sha256, /^[0-9a-f]{64}$/, 'and its sha256, from the handler');
  const rel = relOf(pod, event);
  const stored = await readBytes(setup.store, `${rel}.json`);
  t.same(JSON.parse(stored?.toString('utf8') ?? 'null'), event, 'the stored event is the one announced');
  await t.rejects(
    setup.store.stat(`${rel}.core.zst`),
    { code: 'PM_ERR_STORE_NOT_FOUND' },
    'no core in the store',
  );
  t.notOk(
    (await setup.storedKeys()).dumps.some((k) => k.includes(event.crash.id)),
    'no dump of the crash under any key',
  );
  await setup.otlp.waitFor((records) =>
    records.some((r) => r.attributes['podmortem.crash.id'] === event.crash.id),
  );
  const [record] = setup.otlp.withAttribute('podmortem.crash.id', event.crash.id);
  t.equal(record?.attributes['podmortem.dump.status'], 'skipped', 'the OTel record says skipped');
}

async function storedWithDump(t: Test, setup: CollectorSetup, pod: Pod, event: CrashEvent) {
  const rel = relOf(pod, event);
  t.equal(event.dump.status, 'stored');
  t.equal(event.dump.reason, undefined);
  t.equal(event.dump.path, `${rel}.core.zst`);
  const core = await readBytes(setup.store, `${rel}.core.zst`);
  t.equal(core?.length, event.dump.stored_bytes, 'the core is in the store');
}

t.test('podmortem.io/capture on pods and namespaces decides which dumps are stored', async (t) => {
  const setup = await collectorSetup(stack.kafkaBrokers);
  t.teardown(() => setup.close());
  // "payments" is not a namespace the API knows (404): only its pods can say anything there.
  setup.kube.addNamespace('quiet', { labels: { 'podmortem.io/capture': 'false' } });
  const optedOut = addPod(setup, 'payments', { 'podmortem.io/capture': 'false' });
  const inQuiet = addPod(setup, 'quiet');
  const optedIn = addPod(setup, 'quiet', { 'podmortem.io/capture': 'true' });
  const bad = addPod(setup, 'payments', { 'podmortem.io/capture': 'nope' });
  const agent: AgentProcess = await setup.start({ PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'true' });

  await t.test('a pod annotated capture=false: recorded, dump skipped, no core stored', async (t) => {
    const event = await crash(t, setup, optedOut);
    await recordedWithoutDump(
      t,
      setup,
      optedOut,
      event,
      'capture disabled by pod annotation podmortem.io/capture=false',
    );
  });

  await t.test('a pod in a namespace labelled capture=false: the same, for the namespace', async (t) => {
    const event = await crash(t, setup, inQuiet);
    await recordedWithoutDump(
      t,
      setup,
      inQuiet,
      event,
      'capture disabled by namespace label podmortem.io/capture=false',
    );
  });

  await t.test('a pod annotated capture=true in that namespace: stored', async (t) => {
    const event = await crash(t, setup, optedIn);
    await storedWithDump(t, setup, optedIn, event);
  });

  await t.test('a pod annotated capture=nope: stored (the default), and a warning names it', async (t) => {
    const event = await crash(t, setup, bad);
    await storedWithDump(t, setup, bad, event);
    const warnings = agent.logs.filter(
      (l) => l.level === 40 && l.msg.startsWith('podmortem.io/capture ignored'),
    );
    t.same(
      warnings.map((l) => [l.msg, l.namespace, l.pod, l.on, l.value, l.crashId]),
      [
        [
          `podmortem.io/capture ignored: "nope" on pod payments/${bad.name} is neither "true" nor "false"`,
          'payments',
          bad.name,
          'pod annotation',
          'nope',
          event.crash.id,
        ],
      ],
      'one warning, naming the pod and the value',
    );
  });

  await setup.untilSpoolEmpty();
  t.same(setup.spoolLeft(), [], 'the skipped cores are gone from the spool too');
  t.equal(
    await agent.metric('podmortem_collector_crashes_total', {
      namespace: 'payments',
      signal: 'SIGSEGV',
      dump_status: 'skipped',
    }),
    1,
  );
  t.equal(
    await agent.metric('podmortem_collector_crashes_total', {
      namespace: 'quiet',
      signal: 'SIGSEGV',
      dump_status: 'stored',
    }),
    1,
  );
  t.same(await agent.stop(), [0, null]);

  await t.test('the collector default false: a pod that says nothing is not stored', async (t) => {
    const quietDefault = await setup.start({
      PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'true',
      PODMORTEM_COLLECTOR_CAPTURE_DEFAULT: 'false',
    });
    const silent = addPod(setup, 'payments');
    const event = await crash(t, setup, silent);
    await recordedWithoutDump(
      t,
      setup,
      silent,
      event,
      'capture disabled by the collector default (PODMORTEM_COLLECTOR_CAPTURE_DEFAULT=false)',
    );
    // A pod saying true still is, whatever the default.
    const wanted = addPod(setup, 'payments', { 'podmortem.io/capture': 'true' });
    await storedWithDump(t, setup, wanted, await crash(t, setup, wanted));
    await setup.untilSpoolEmpty();
    t.same(await quietDefault.stop(), [0, null]);
  });
  t.equal(readSysctl('core_pattern'), original.pattern, 'kernel.core_pattern restored');
});
