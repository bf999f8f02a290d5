import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { CrashEvent } from '@podmortem/contract';
import {
  analyzerNames,
  readAnalyses,
  startAnalyzer,
  stopAnalyzer,
  testKafka,
} from './support/analyzer-harness.ts';
import { BACKENDS, openBackend } from './support/backends.ts';
import { collectorSetup, compileC, CRASHERS } from './support/collector-agent.ts';
import { lockCorePattern } from './support/core-pattern-lock.ts';
import { createPodCgroup } from './support/pod-cgroup.ts';
import { stack } from './support/stack.ts';
import { until } from './support/poll.ts';
import { createTopicsWithLeaders } from './support/kafka-topics.ts';

// A crash storm through the kernel: 200 crashes from one container within seconds. Every crash is
// counted and announced (200 events on Kafka, 200 in the agent's metrics), dumps are kept only up
// to the per-container rate limit (the rest recorded as skipped, with the reason), and the
// analyzer reads them back: on each store backend, the storage root and an S3 bucket. The agent's
// memory through such a storm is a figure of `npm run bench:storm`.

const STORM = 200;
/** The line of CRASHERS.segv that faults. */
const CRASH_LINE = CRASHERS.segv.split('\n').findIndex((l) => l.includes('*p = 42')) + 1;
const RATE_LIMIT = 5;
const SYSCTL = '/proc/sys/kernel';
const readSysctl = (name: string) => readFileSync(join(SYSCTL, name), 'utf8').replace(/\n$/, '');

const release = await lockCorePattern();
const original = { pattern: readSysctl('core_pattern'), pipeLimit: readSysctl('core_pipe_limit') };
t.teardown(async () => {
  if (readSysctl('core_pattern') !== original.pattern)
    writeFileSync(join(SYSCTL, 'core_pattern'), original.pattern);
  if (readSysctl('core_pipe_limit') !== original.pipeLimit)
    writeFileSync(join(SYSCTL, 'core_pipe_limit'), original.pipeLimit);
  await release();
});

for (const name of BACKENDS)
  t.test(
    `${name}: ${STORM} crashes from one container: all counted, dumps up to the rate limit`,
    async (t) => {
      const backend = await openBackend(t, name);
      const setup = await collectorSetup(stack.kafkaBrokers, { backend });
      t.teardown(() => setup.close());
      const pod = { uid: randomUUID(), containerId: randomBytes(32).toString('hex') };
      setup.kube.addPod({
        namespace: 'storm',
        name: 'crashloop-0',
        uid: pod.uid,
        nodeName: setup.nodeName,
        containers: [
          {
            name: 'app',
            image: 'registry.example/storm/app:1',
            containerID: `containerd://${pod.containerId}`,
          },
        ],
      });
      const cgroup = createPodCgroup(pod.uid, pod.containerId);
      t.teardown(() => cgroup.remove());
      const segv = compileC('segv', CRASHERS.segv);
      const agent = await setup.start({
        PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'true',
        // The kernel drops dumps beyond core_pipe_limit at once: the storm runs 16 at a time.
        PODMORTEM_COLLECTOR_CORE_PIPE_LIMIT: '64',
        PODMORTEM_COLLECTOR_HANDLER_RATE_LIMIT_DUMPS: String(RATE_LIMIT),
        PODMORTEM_COLLECTOR_HANDLER_RATE_LIMIT_WINDOW_SECONDS: '3600',
        PODMORTEM_COLLECTOR_CONCURRENCY: '4',
      });

      const run = await cgroup.run('bash', [
        '-c',
        `seq ${STORM} | xargs -P 16 -I{} sh -c '${segv} >/dev/null 2>&1; true'`,
      ]);
      t.equal(run.code, 0, 'the storm ran');

      const events = await until(
        `${STORM} crash events on Kafka`,
        () => {
          const mine = setup.topicEvents().filter((e) => e.kubernetes?.pod.uid === pod.uid);
          return new Set(mine.map((e) => e.crash.id)).size >= STORM ? mine : undefined;
        },
        300_000,
      );
      await setup.untilSpoolEmpty(120_000);
      const unique = new Map(events.map((e) => [e.crash.id, e]));
      t.equal(unique.size, STORM, 'every crash announced on Kafka');
      const byStatus = (s: string) => [...unique.values()].filter((e) => e.dump.status === s);
      t.equal(byStatus('stored').length, RATE_LIMIT, 'dumps kept up to the rate limit');
      t.equal(byStatus('skipped').length, STORM - RATE_LIMIT, 'the rest recorded as skipped');
      t.ok(
        byStatus('skipped').every((e) => /rate/i.test(e.dump.reason ?? '')),
        'skipped for the rate limit, and saying so',
      );
      // A skipped dump still has what its notes say: the handler kept them while draining the core.
      const pcInExecutable = (e: CrashEvent): boolean => {
        const exe = e.analysis?.modules?.find((m) => m.path === e.process.executable);
        const pc = e.registers?.pc;
        return !!(
          exe?.start &&
          exe.end &&
          pc &&
          BigInt(exe.start) <= BigInt(pc) &&
          BigInt(pc) < BigInt(exe.end)
        );
      };
      t.same(
        byStatus('skipped')
          .filter((e) => !(e.signal.code === 1 && e.fault?.address === '0x0' && pcInExecutable(e)))
          .map((e) => ({ id: e.crash.id, signal: e.signal, fault: e.fault, registers: e.registers })),
        [],
        'every skipped crash has its signal code, fault address and a pc in its executable',
      );
      const kept = await setup.storedKeys();
      t.equal(kept.dumps.length, RATE_LIMIT, 'only the kept dumps in the store');
      t.equal(kept.events.length, STORM, 'an event object for every crash');

      const metric = (status: string) =>
        agent.metric('podmortem_collector_crashes_total', {
          namespace: 'storm',
          signal: 'SIGSEGV',
          dump_status: status,
        });
      await until(
        'every crash counted',
        async () => (await metric('stored')) + (await metric('skipped')) === STORM,
      );
      t.equal(await metric('stored'), RATE_LIMIT);
      t.equal(await metric('skipped'), STORM - RATE_LIMIT);
      t.equal(
        setup.otlp.records.filter((r) => r.attributes['k8s.pod.uid'] === pod.uid).length >= STORM,
        true,
        'every crash over OTLP',
      );
      await agent.stop();
      t.equal(readSysctl('core_pattern'), original.pattern);

      // The analyzer over the storm: a signature for each stored dump, and for each skipped one the top
      // frame from its pc, named from the executable the collector captured.
      const names = { ...analyzerNames('pm-storm'), topic: setup.topic };
      const kafka = testKafka();
      const admin = kafka.admin();
      await admin.connect();
      await createTopicsWithLeaders(admin, [{ topic: names.analysisTopic }, { topic: names.requestTopic }]);
      t.teardown(async () => {
        await admin
          .deleteTopics({ topics: [names.analysisTopic, names.requestTopic] })
          .catch(() => undefined);
        await admin.disconnect();
      });
      const reader = await readAnalyses(kafka, names.analysisTopic);
      t.teardown(reader.stop);
      const workDir = join(setup.dir, 'analyzer-work');
      mkdirSync(workDir);
      const analyzer = await startAnalyzer({
        names,
        storageRoot: backend.settings.storageRoot,
        workDir,
        env: backend.env('PODMORTEM_ANALYZER_'),
      });
      t.teardown(() => stopAnalyzer(analyzer));
      const analyses = await until(
        `an analysis of each of the ${STORM} crashes`,
        () => {
          const byCrash = new Map(reader.records.map((r) => [r.crashId, r.analysis.analysis]));
          return [...unique.keys()].every((id) => byCrash.has(id)) ? byCrash : undefined;
        },
        300_000,
      );
      const wrong = [...unique.values()].flatMap((e) => {
        const a = analyses.get(e.crash.id);
        const good =
          e.dump.status === 'stored'
            ? a?.status === 'ok' && a.signature !== undefined && a.frames?.[0]?.function === 'main'
            : a?.status === 'partial' &&
              a.signature === undefined &&
              a.frames?.length === 1 &&
              a.frames[0]?.function === 'main' &&
              a.frames[0].line === CRASH_LINE;
        return good ? [] : [{ id: e.crash.id, dump: e.dump.status, analysis: a }];
      });
      t.same(
        wrong,
        [],
        'each stored crash a signature, each skipped one its top frame (main, with its line)',
      );
      t.equal(
        new Set([...analyses.values()].flatMap((a) => (a.signature ? [a.signature] : []))).size,
        1,
        'one bug, one signature',
      );
    },
  );
