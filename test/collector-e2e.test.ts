import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { validateCrashEvent, type CrashEvent } from '@podmortem/contract';
import { readBytes } from '@podmortem/contract/store';
import { BACKENDS, openBackend } from './support/backends.ts';
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

// End to end through the kernel: the agent installs the handler and points kernel.core_pattern at
// it; real programs crash (SIGSEGV, SIGABRT, a fault in a non-main thread) inside a cgroup shaped
// like a pod container's; the kernel pipes each core to the handler, the agent delivers it. The
// test then finds the dump in the store, on each backend (the storage root, an S3 bucket): an ELF
// core, read here with its own small parser after the zstd command-line tool decompressed it,
// the event beside it, the OTel log record, the CloudEvent on Kafka, and an empty spool. kernel.core_pattern is held under the shared lock
// and restored whatever happens.

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

/** NT_PRSTATUS notes of an ELF64 little-endian core: [pr_pid, pr_cursig] in file order. */
function prstatusNotes(core: Buffer): { pid: number; signal: number }[] {
  if (core.readUInt32BE(0) !== 0x7f454c46) throw new Error('not ELF');
  if (core[4] !== 2 || core[5] !== 1 || core.readUInt16LE(16) !== 4) throw new Error('not an ELF64 LE core');
  const phoff = Number(core.readBigUInt64LE(32));
  const phentsize = core.readUInt16LE(54);
  const phnum = core.readUInt16LE(56);
  const out: { pid: number; signal: number }[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (core.readUInt32LE(ph) !== 4) continue; // PT_NOTE
    const offset = Number(core.readBigUInt64LE(ph + 8));
    const size = Number(core.readBigUInt64LE(ph + 32));
    for (let at = offset; at + 12 <= offset + size;) {
      const namesz = core.readUInt32LE(at);
      const descsz = core.readUInt32LE(at + 4);
      const type = core.readUInt32LE(at + 8);
      const desc = at + 12 + Math.ceil(namesz / 4) * 4;
      // struct elf_prstatus (x86_64): pr_info (12 bytes), short pr_cursig at 12, pr_pid at 32.
      if (type === 1) out.push({ pid: core.readInt32LE(desc + 32), signal: core.readInt16LE(desc + 12) });
      at = desc + Math.ceil(descsz / 4) * 4;
    }
  }
  return out;
}

function unzstd(stored: Buffer): Buffer {
  const r = spawnSync('zstd', ['-dc'], { input: stored, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd -dc: ${r.stderr.toString()}`);
  return r.stdout;
}

/** The object under `key`, which must be there. */
async function stored(setup: CollectorSetup, key: string): Promise<Buffer> {
  const bytes = await readBytes(setup.store, key);
  if (!bytes) throw new Error(`${key}: no object`);
  return bytes;
}

interface PodFixture {
  namespace: string;
  name: string;
  uid: string;
  containerId: string;
  container: string;
  image: string;
  digest: string;
}

function addPod(setup: CollectorSetup): PodFixture {
  const pod: PodFixture = {
    namespace: 'payments',
    name: `api-${randomBytes(3).toString('hex')}`,
    uid: randomUUID(),
    containerId: randomBytes(32).toString('hex'),
    container: 'api',
    image: 'registry.example/payments/api:1.4.2',
    digest: 'sha256:' + randomBytes(32).toString('hex'),
  };
  setup.kube.addPod({
    namespace: pod.namespace,
    name: pod.name,
    uid: pod.uid,
    nodeName: setup.nodeName,
    labels: { app: 'api' },
    owner: { kind: 'ReplicaSet', name: 'api-7d9f8' },
    containers: [
      {
        name: 'sidecar',
        image: 'registry.example/proxy:2',
        containerID: `containerd://${randomBytes(32).toString('hex')}`,
      },
      {
        name: pod.container,
        image: pod.image,
        containerID: `containerd://${pod.containerId}`,
        imageID: `registry.example/payments/api@${pod.digest}`,
      },
    ],
  });
  return pod;
}

async function deliveredEvent(setup: CollectorSetup, pid: number): Promise<CrashEvent> {
  return until(
    `the crash of pid ${pid} on Kafka`,
    () => setup.topicEvents().find((e) => e.process.pid === pid),
    90_000,
  );
}

for (const name of BACKENDS)
  t.test(
    `${name}: crashes in a pod container, through the kernel, end as dump, event, OTel record and Kafka message`,
    async (t) => {
      const backend = await openBackend(t, name);
      const setup = await collectorSetup(stack.kafkaBrokers, { backend });
      t.teardown(() => setup.close());
      const pod = addPod(setup);
      const cgroup = createPodCgroup(pod.uid, pod.containerId);
      t.teardown(() => cgroup.remove());
      const agent = await setup.start({
        PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'true',
        PODMORTEM_COLLECTOR_CORE_PIPE_LIMIT: '16',
      });
      const handler = join(setup.installDir, 'podmortem-handler');
      t.equal(
        readSysctl('core_pattern'),
        `|${handler} %P %p %I %i %s %t %c %e %E %h %u %g`,
        'the agent points the kernel at the handler',
      );
      t.equal(readSysctl('core_pipe_limit'), '16');

      const cases = [
        { name: 'SIGSEGV', bin: compileC('segv', CRASHERS.segv), signal: 11, fault: '0x0', threads: 1 },
        { name: 'SIGABRT', bin: compileC('abort', CRASHERS.abort), signal: 6, fault: undefined, threads: 1 },
        {
          name: 'SIGSEGV in a non-main thread',
          bin: compileC('threads', CRASHERS.threads, ['-pthread']),
          signal: 11,
          fault: '0x10',
          threads: 4,
        },
      ];
      for (const c of cases) {
        await t.test(c.name, async (t) => {
          const run = await cgroup.run(c.bin);
          t.equal(
            run.signal,
            c.name.startsWith('SIGABRT') ? 'SIGABRT' : 'SIGSEGV',
            'the program died of its signal',
          );
          t.ok(run.coreDumped, 'the kernel dumped its core');
          const pid = Number(/pid (\d+)/.exec(run.stdout)?.[1]);
          const faultingTid = Number(/tid (\d+)/.exec(run.stdout)?.[1] ?? pid);
          const event = await deliveredEvent(setup, pid);
          t.ok(validateCrashEvent(event).ok, 'the Kafka message carries a valid crash event');

          // The event names the pod, from the Kubernetes API, found by the container id in the cgroup.
          t.same(event.kubernetes, {
            namespace: pod.namespace,
            pod: { name: pod.name, uid: pod.uid },
            container: { name: pod.container },
            node: { name: setup.nodeName },
            labels: { app: 'api' },
            owner: { kind: 'ReplicaSet', name: 'api-7d9f8' },
          });
          t.same(event.container, {
            id: pod.containerId,
            runtime: 'containerd',
            image: { name: pod.image, digest: pod.digest },
          });
          t.equal(event.process.executable, c.bin);
          t.equal(event.process.name, c.bin.split('/').at(-1));
          t.equal(event.process.tid, faultingTid, 'the thread that faulted');
          t.equal(event.signal.number, c.signal);
          t.equal(event.signal.name, c.name.split(' ')[0]);
          t.same(event.fault?.address, c.fault);
          t.equal(event.dump.status, 'stored');
          t.match(event.analysis?.build_id, /^[0-9a-f]{40}$/, "the executable's GNU build id");
          // The executable itself, captured at the crash: once in the store by its build id.
          const buildId = event.analysis?.build_id ?? '';
          t.match(
            event.analysis?.modules?.find((m) => m.path === c.bin),
            { build_id: buildId, captured: true },
          );
          t.same(
            await stored(setup, `_buildid/${buildId}/executable`),
            readFileSync(c.bin),
            'stored at _buildid/<build id>/executable, byte for byte',
          );

          // The dump: in the store where the event says, an ELF core of this very process.
          const rel = `${pod.namespace}/${pod.uid}/${pod.container}/${event.crash.id}`;
          t.equal(event.dump.path, `${rel}.core.zst`);
          const core = unzstd(await stored(setup, `${rel}.core.zst`));
          t.equal(core.length, event.dump.size_bytes, 'the raw size the kernel wrote');
          const { createHash } = await import('node:crypto');
          t.equal(createHash('sha256').update(core).digest('hex'), event.dump.sha256);
          const prstatus = prstatusNotes(core);
          t.equal(prstatus.length, c.threads, 'one NT_PRSTATUS per thread');
          t.same(
            prstatus[0],
            { pid: faultingTid, signal: c.signal },
            'the first NT_PRSTATUS is the faulting thread, with its signal',
          );
          if (c.threads > 1)
            t.ok(
              prstatus.some((p) => p.pid === pid),
              "the main thread's NT_PRSTATUS carries the process pid",
            );

          // The event beside it is the one announced.
          t.same(JSON.parse((await stored(setup, `${rel}.json`)).toString('utf8')) as CrashEvent, event);

          // The OTel log record.
          await setup.otlp.waitFor((records) =>
            records.some((r) => r.attributes['podmortem.crash.id'] === event.crash.id),
          );
          const [record] = setup.otlp.withAttribute('podmortem.crash.id', event.crash.id);
          if (!record) throw new Error('no OTLP record for the crash');
          t.match(record.attributes, {
            'k8s.namespace.name': pod.namespace,
            'k8s.pod.name': pod.name,
            'k8s.pod.uid': pod.uid,
            'k8s.container.name': pod.container,
            'k8s.node.name': setup.nodeName,
            'k8s.replicaset.name': 'api-7d9f8',
            'container.id': pod.containerId,
            'container.image.name': pod.image,
            'process.pid': pid,
            'process.executable.path': c.bin,
            'podmortem.signal.name': event.signal.name,
            'podmortem.dump.status': 'stored',
            'podmortem.dump.path': event.dump.path,
          });
          t.same(record.attributes['process.command_args'], [c.bin]);
          t.equal(record.eventName, 'podmortem.crash');

          await setup.untilSpoolEmpty();
          t.same(setup.spoolLeft(), [], 'nothing left in the spool');
        });
      }

      // Counted once all three outputs acknowledged, just before the spool entry goes.
      const segv = { namespace: pod.namespace, signal: 'SIGSEGV', dump_status: 'stored' };
      await until(
        'both SIGSEGV crashes counted',
        async () => (await agent.metric('podmortem_collector_crashes_total', segv)) >= 2,
      );
      t.equal(await agent.metric('podmortem_collector_crashes_total', segv), 2);
      t.equal(
        await agent.metric('podmortem_collector_crashes_total', {
          namespace: pod.namespace,
          signal: 'SIGABRT',
          dump_status: 'stored',
        }),
        1,
      );
      t.equal(await agent.metric('podmortem_collector_spool_entries'), 0);
      // The handler's own log, followed into the agent's.
      await until(
        'handler log lines in the agent log',
        () => agent.logs.filter((l) => l.source === 'handler').length >= 3,
      );
      t.ok(
        agent.logs.some((l) => l.source === 'handler' && l.crashId !== undefined),
        "the handler's lines about each crash reach the agent's log",
      );
      t.same(await agent.stop(), [0, null], 'SIGTERM: a clean exit');
      t.equal(readSysctl('core_pattern'), original.pattern, 'kernel.core_pattern restored on shutdown');
      t.equal(
        readSysctl('core_pipe_limit'),
        original.pipeLimit,
        'kernel.core_pipe_limit restored on shutdown',
      );
    },
  );

t.test('an agent SIGKILLed and started again restores the original core_pattern, not its own', async (t) => {
  const setup = await collectorSetup(stack.kafkaBrokers);
  t.teardown(() => setup.close());
  const managed = { PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'true' };
  const first: AgentProcess = await setup.start(managed);
  const pattern = readSysctl('core_pattern');
  t.not(pattern, original.pattern);
  await first.kill();
  t.equal(readSysctl('core_pattern'), pattern, 'a killed agent cannot restore anything');
  const second = await setup.start(managed);
  t.equal(readSysctl('core_pattern'), pattern);
  await second.stop();
  t.equal(readSysctl('core_pattern'), original.pattern, 'the value from before the first agent');
  t.equal(readSysctl('core_pipe_limit'), original.pipeLimit);
});
