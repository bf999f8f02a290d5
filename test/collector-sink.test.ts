import { randomBytes } from 'node:crypto';
import t from 'tap';
import type { CrashEvent } from '@podmortem/contract';
import { createLogger } from '@podmortem/contract/runtime';
import { createAgent, type Agent } from '../collector/src/agent/agent.ts';
import { loadCollectorConfig } from '../collector/src/agent/config.ts';
import { handlerInstaller } from '../collector/src/agent/handler-installer.ts';
import type { Sink } from '../collector/src/agent/sink.ts';
import { collectorSetup, runHandler, type CollectorSetup } from './support/collector-agent.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';
import { stack } from './support/stack.ts';
import { elfHead, note, prpsinfo, prstatus, syntheticCore } from './support/synthetic-core.ts';

// A sink added through the agent's public wiring (createAgent's `sinks`) beside OTLP and Kafka,
// the agent running in-process over a real spool (the installed handler writes it, as the kernel
// would run it), the OTLP receiver, the Kubernetes API stand-in and real Kafka. The test sink
// refuses each crash until OTLP and Kafka have it: every crash is then retried at the test sink
// alone, and must still reach each of the three exactly once.

const CRASHES = 5;
/** Not running processes: the handler finds no /proc, so the crashes are the host's. */
const FIRST_PID = 3_900_001;

/** Acknowledges a crash only once `ready` holds of it; counts every attempt. */
class GatedSink implements Sink {
  readonly name = 'test-sink';
  readonly acknowledged: CrashEvent[] = [];
  readonly attempts = new Map<string, number>();
  started = false;
  private readonly ready: (event: CrashEvent) => boolean;

  constructor(ready: (event: CrashEvent) => boolean) {
    this.ready = ready;
  }

  async start(): Promise<void> {
    this.started = true;
  }

  async shutdown(): Promise<void> {
    this.started = false;
  }

  async announce(event: CrashEvent): Promise<void> {
    this.attempts.set(event.crash.id, (this.attempts.get(event.crash.id) ?? 0) + 1);
    // Not one of the agent's own errors: a sink's unknown failure is retried all the same.
    if (!this.ready(event)) throw new Error('the test sink is not taking this crash yet');
    this.acknowledged.push(event);
  }
}

async function startAgent(setup: CollectorSetup, sink: Sink): Promise<Agent> {
  const config = loadCollectorConfig(setup.env());
  const logger = createLogger('collector-sink-test', { level: 'silent' });
  const agent = createAgent({ config, logger, handler: handlerInstaller(config, logger), sinks: [sink] });
  for (const component of agent.components) await component.start();
  return agent;
}

const countBy = (ids: string[]) => {
  const counts: Record<string, number> = {};
  for (const id of ids) counts[id] = (counts[id] ?? 0) + 1;
  return counts;
};

t.test(
  'a sink wired in beside OTLP and Kafka receives every crash, retried alone until it acknowledges',
  async (t) => {
    const setup = await collectorSetup(stack.kafkaBrokers);
    t.teardown(() => setup.close());
    const otlpIds = () =>
      setup.otlp.records.map((r) => {
        const id = r.attributes['podmortem.crash.id'];
        return typeof id === 'string' ? id : '';
      });
    const kafkaIds = () => setup.topicEvents().map((e) => e.crash.id);
    const sink = new GatedSink((e) => otlpIds().includes(e.crash.id) && kafkaIds().includes(e.crash.id));
    const agent = await startAgent(setup, sink);
    t.teardown(async () => {
      const deadline = Date.now() + 5000;
      for (const component of [...agent.components].reverse()) await component.shutdown(deadline);
    });
    t.ok(sink.started, 'started with the agent');
    const metric = async (name: string, labels: Record<string, string>) =>
      metricValue(await agent.telemetry.registry.metrics(), name, labels);

    const pids = Array.from({ length: CRASHES }, (_, i) => FIRST_PID + i);
    for (const pid of pids) {
      const core = syntheticCore({
        notes: [
          note('CORE', 1, prstatus({ signal: 11, pid })),
          note('CORE', 3, prpsinfo({ pid, uid: 0, gid: 0, comm: 'crasher', args: 'crasher' })),
        ],
        loads: [{ vaddr: 0x400000n, data: Buffer.concat([elfHead('cd'.repeat(20)), randomBytes(4096)]) }],
      });
      const run = await runHandler(
        setup.installDir,
        { pid, signal: 11, comm: 'crasher', exe: '/bin/crasher' },
        core,
      );
      t.equal(run.code, 0, `handler for pid ${pid}`);
    }

    await until(
      'every crash delivered and gone from the spool',
      async () => {
        const delivered = await metric('podmortem_collector_crashes_total', {
          namespace: '_host',
          signal: 'SIGSEGV',
          dump_status: 'stored',
        });
        return delivered === CRASHES && setup.spoolLeft().length === 0;
      },
      90_000,
    );

    const ids = sink.acknowledged.map((e) => e.crash.id);
    t.same(
      sink.acknowledged.map((e) => e.process.pid).sort(),
      pids,
      'the test sink acknowledged one event per crash, each process once',
    );
    const once = Object.fromEntries(ids.map((id) => [id, 1]));
    t.same(countBy(ids), once, 'each crash id at the test sink once');
    t.same(
      countBy(otlpIds()),
      once,
      'each at OTLP once: not announced again while the test sink was retried',
    );
    t.same(countBy(kafkaIds()), once, 'each on Kafka once');
    for (const [id, attempts] of sink.attempts)
      t.ok(attempts >= 2, `crash ${id}: refused first, retried until acknowledged (${attempts} attempts)`);
    t.same(
      [...sink.attempts.keys()].sort(),
      [...ids].sort(),
      'no attempt for a crash that is not one of these',
    );
    const failures = await metric('podmortem_collector_delivery_failures_total', {
      step: 'test-sink',
      code: 'PM_ERR_UNEXPECTED',
    });
    t.equal(
      failures,
      [...sink.attempts.values()].reduce((sum, n) => sum + n - 1, 0),
      'every refusal counted under the sink name',
    );
    for (const step of ['otlp', 'kafka'])
      t.equal(
        await metric('podmortem_collector_delivery_failures_total', {
          step,
        }),
        0,
        `no failure at ${step}`,
      );
  },
);
