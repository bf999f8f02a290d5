// bench:storm — memory through a crash storm: STORM crashes of one container at once.
//
// 1. The handler: STORM handlers started at once, as the kernel would for a storm, each fed a
//    256 KiB synthetic core (one rate-limit key: 5 dumps kept, the rest skipped); the peak RSS of
//    each (its own getrusage maxRSS, from its log line), median and max, against `node -e ''`
//    started the same way (the same Node binary, an empty environment) in the same run.
// 2. The agent: STORM real crashes through the kernel (core_pattern → the installed handler, 16 at
//    a time) in a pod cgroup, with the agent as a node runs it (the local stack's Kafka, the
//    Kubernetes API stand-in, an OTLP receiver); its peak RSS (VmHWM) once running and once every
//    crash is announced on Kafka and counted in its metrics, and the ratio of the two.
//
// Needs root (core_pattern, cgroups) and the local stack (npm run stack up).
//
//   npm run bench:storm            (STORM=200 to change)
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installHandler } from '../collector/src/agent/handler-installer.ts';
import { collectorSetup, compileC, CRASHERS, type AgentProcess } from '../test/support/collector-agent.ts';
import { lockCorePattern } from '../test/support/core-pattern-lock.ts';
import { createPodCgroup } from '../test/support/pod-cgroup.ts';
import { until } from '../test/support/poll.ts';
import { stack } from '../test/support/stack.ts';
import {
  elfHead,
  note,
  prpsinfo,
  prstatus,
  syntheticCore,
  sleepCrashArgs,
} from '../test/support/synthetic-core.ts';

const STORM = Number(process.env.STORM ?? 200);
const RATE_LIMIT = 5;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const mib = (kb: number) => (kb / 1024).toFixed(0);

/** Runs `cmd` as the kernel runs the handler: an empty environment, `input` on stdin. */
async function runEmptyEnv(cmd: string, args: string[], input: Buffer): Promise<string> {
  const child = spawn(cmd, args, { env: {}, stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin.end(input);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`${cmd} exited ${String(code)}`);
  return out;
}

async function handlerStorm(): Promise<{ medianKb: number; maxKb: number; nodeKb: number }> {
  const work = await mkdtemp(join(tmpdir(), 'pm-bench-storm-'));
  try {
    const spool = join(work, 'spool');
    const { handlerPath } = await installHandler({
      dir: join(work, 'bin'),
      config: { spoolDir: spool, minFreeBytes: 0, rateLimitDumps: RATE_LIMIT, rateLimitWindowSeconds: 600 },
    });
    const target = spawn('sleep', ['600'], { stdio: 'ignore' });
    await once(target, 'spawn');
    const pid = target.pid ?? 0;
    const core = syntheticCore({
      notes: [
        note('CORE', 1, prstatus({ signal: 11, pid })),
        note('CORE', 3, prpsinfo({ pid, uid: 0, gid: 0, comm: 'sleep', args: 'sleep 600' })),
      ],
      loads: [
        { vaddr: 0x400000n, data: elfHead('ab'.repeat(20)) },
        { vaddr: 0x600000n, data: randomBytes(256 * 1024) },
      ],
    });
    const args = sleepCrashArgs(pid);
    await Promise.all(Array.from({ length: STORM }, () => runEmptyEnv(handlerPath, args, core)));
    target.kill('SIGKILL');
    const rss = (await readFile(join(spool, 'handler.log'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; maxRssKb: number })
      .filter((l) => l.msg === 'crash spooled')
      .map((l) => l.maxRssKb);
    if (rss.length !== STORM) throw new Error(`${rss.length} handler log lines for ${STORM} crashes`);
    const nodeKb = median(
      await Promise.all(
        Array.from({ length: 5 }, async () =>
          Number(
            await runEmptyEnv(
              process.execPath,
              ['-e', 'process.stdout.write(String(process.resourceUsage().maxRSS))'],
              Buffer.alloc(0),
            ),
          ),
        ),
      ),
    );
    return { medianKb: median(rss), maxKb: Math.max(...rss), nodeKb };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const SYSCTL = '/proc/sys/kernel';
const readSysctl = (name: string) => readFileSync(join(SYSCTL, name), 'utf8').replace(/\n$/, '');

async function agentStorm(): Promise<{ startKb: number; peakKb: number; stormMs: number }> {
  const release = await lockCorePattern();
  const original = { pattern: readSysctl('core_pattern'), pipeLimit: readSysctl('core_pipe_limit') };
  const setup = await collectorSetup(stack.kafkaBrokers);
  const pod = { uid: randomUUID(), containerId: randomBytes(32).toString('hex') };
  const cgroup = createPodCgroup(pod.uid, pod.containerId);
  let agent: AgentProcess | undefined;
  try {
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
    const segv = compileC('segv', CRASHERS.segv);
    agent = await setup.start({
      PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'true',
      PODMORTEM_COLLECTOR_CORE_PIPE_LIMIT: '64',
      PODMORTEM_COLLECTOR_HANDLER_RATE_LIMIT_DUMPS: String(RATE_LIMIT),
      PODMORTEM_COLLECTOR_HANDLER_RATE_LIMIT_WINDOW_SECONDS: '3600',
      PODMORTEM_COLLECTOR_CONCURRENCY: '4',
    });
    const running = agent;
    const startKb = running.peakRss() / 1024;
    const started = performance.now();
    await cgroup.run('bash', ['-c', `seq ${STORM} | xargs -P 16 -I{} sh -c '${segv} >/dev/null 2>&1; true'`]);
    await until(
      `${STORM} crash events on Kafka`,
      () => new Set(setup.topicEvents().map((e) => e.crash.id)).size >= STORM,
      300_000,
    );
    const counted = (status: string) =>
      running.metric('podmortem_collector_crashes_total', { namespace: 'storm', dump_status: status });
    await until(
      'every crash counted',
      async () => (await counted('stored')) + (await counted('skipped')) === STORM,
    );
    const stormMs = performance.now() - started;
    return { startKb, peakKb: running.peakRss() / 1024, stormMs };
  } finally {
    await agent?.stop();
    await setup.close();
    cgroup.remove();
    if (readSysctl('core_pattern') !== original.pattern)
      writeFileSync(join(SYSCTL, 'core_pattern'), original.pattern);
    if (readSysctl('core_pipe_limit') !== original.pipeLimit)
      writeFileSync(join(SYSCTL, 'core_pipe_limit'), original.pipeLimit);
    await release();
  }
}

const handlers = await handlerStorm();
const agent = await agentStorm();

console.log(
  `\nbench:storm — ${STORM} crashes of one container at once (rate limit: ${RATE_LIMIT} dumps kept)`,
);
console.log(
  `Node ${process.version}, ${(await readFile('/proc/cpuinfo', 'utf8')).match(/model name\s*:\s*(.*)/)?.[1] ?? ''}\n`,
);
console.log(`handler peak RSS, ${STORM} at once, each with a 256 KiB core:`);
console.log(`  median ${mib(handlers.medianKb)} MiB, max ${mib(handlers.maxKb)} MiB`);
console.log(
  `  node -e '' ${mib(handlers.nodeKb)} MiB: the handler's max is ${(handlers.maxKb / handlers.nodeKb).toFixed(2)}x that`,
);
console.log(
  `agent peak RSS through the kernel storm (${(agent.stormMs / 1000).toFixed(1)} s until all announced and counted):`,
);
console.log(
  `  ${mib(agent.startKb)} MiB once running, ${mib(agent.peakKb)} MiB after: +${mib(agent.peakKb - agent.startKb)} MiB, ${(agent.peakKb / agent.startKb).toFixed(2)}x`,
);
