import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel, type Consumer } from 'kafkajs';
import { crashKey, decodeCrashMessage, type CrashEvent } from '@podmortem/contract';
import { FsStore, type Store } from '@podmortem/contract/store';
import type { Backend } from './backends.ts';
import { FakeKubeApi } from './fake-kube-api.ts';
import { metricValue } from './metrics.ts';
import { OtlpReceiver } from './otlp-receiver.ts';
import { until } from './poll.ts';
import { repoDir, uniqueName } from './stack.ts';
import { createTopicsWithLeaders } from './kafka-topics.ts';

// Runs the collector agent the way a node does — `node collector/src/agent/main.ts`, configured by
// PODMORTEM_COLLECTOR_* variables — as a child process a test can SIGTERM or SIGKILL, with its
// own spool, storage root and handler install folder, a local OTLP receiver, the Kubernetes API
// stand-in and a Kafka topic of its own. Also: the handler run directly (as the kernel would) for
// tests that need no real crash, and a consumer that collects the crash topic.

const NODE = join(repoDir, 'node_modules/node/bin/node');
export const AGENT_MAIN = join(repoDir, 'collector/src/agent/main.ts');

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export class AgentProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  opsPort: number | undefined;
  private readonly exited: Promise<[number | null, NodeJS.Signals | null]>;

  constructor(env: Record<string, string>) {
    this.child = spawn(NODE, ['--disable-warning=ExperimentalWarning', AGENT_MAIN], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LOG_LEVEL: 'debug', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = once(this.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    let partial = '';
    this.child.stdout?.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        try {
          const entry = JSON.parse(line) as LogLine;
          this.logs.push(entry);
          if (entry.msg === 'collector agent running' && typeof entry.ops === 'number')
            this.opsPort = entry.ops;
        } catch {
          this.stderr.push(line);
        }
      }
    });
    this.child.stderr?.on('data', (d: Buffer) => this.stderr.push(d.toString()));
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  async running(timeoutMs = 60_000): Promise<void> {
    await until(
      'the agent to start',
      () => this.opsPort !== undefined || this.child.exitCode !== null,
      timeoutMs,
    );
    if (this.opsPort === undefined) {
      throw new Error(`agent exited with ${this.child.exitCode}: ${this.stderr.join('').slice(-2000)}`);
    }
  }

  async metrics(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.opsPort ?? 0}/metrics`);
    return res.text();
  }

  /** The value of one sample (0 when absent), labels matched exactly as given. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return metricValue(await this.metrics(), name, labels);
  }

  logged(msg: string): LogLine[] {
    return this.logs.filter((l) => l.msg === msg);
  }

  /** SIGTERM and wait for the exit: [code, signal]. */
  async stop(): Promise<[number | null, NodeJS.Signals | null]> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }

  exit(): Promise<[number | null, NodeJS.Signals | null]> {
    return this.exited;
  }

  /** Peak resident memory of the agent process so far (VmHWM), in bytes. */
  peakRss(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  }
}

export interface CollectorSetup {
  dir: string;
  spoolDir: string;
  /** The filesystem backend's root when no backend was given (the agent's default store). */
  storageRoot: string;
  /** Where the agent stores dumps and events: the backend given, or an FsStore on storageRoot. */
  store: Store;
  stateDir: string;
  installDir: string;
  nodeName: string;
  topic: string;
  kube: FakeKubeApi;
  otlp: OtlpReceiver;
  kubeconfig: string;
  brokers: string[];
  /** Environment for an agent over this setup; `extra` overrides. */
  env(extra?: Record<string, string>): Record<string, string>;
  start(extra?: Record<string, string>): Promise<AgentProcess>;
  /** Every crash event on the topic so far (the live consumer's; empty without one). */
  topicEvents(): CrashEvent[];
  /** Reads the whole topic with a fresh consumer until `done` holds of what it read. */
  readTopic(done: (events: CrashEvent[]) => boolean, timeoutMs?: number): Promise<CrashEvent[]>;
  /** Spool entries left (meta files), and any file at all besides the handler's. */
  spoolLeft(): string[];
  /** Waits until spoolLeft() is empty; on timeout the error lists what is left. */
  untilSpoolEmpty(timeoutMs?: number): Promise<void>;
  /** Stored event files (relative paths) and dump files on storageRoot (no backend given). */
  stored(): { events: string[]; dumps: string[] };
  /** The stored events' and dumps' keys, on whichever backend the agent writes to. */
  storedKeys(): Promise<{ events: string[]; dumps: string[] }>;
  close(): Promise<void>;
}

function walk(dir: string, base = ''): string[] {
  const out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(join(dir, base));
  } catch {
    return out;
  }
  for (const name of names) {
    const rel = base === '' ? name : `${base}/${name}`;
    try {
      readdirSync(join(dir, rel));
      out.push(...walk(dir, rel));
    } catch {
      out.push(rel);
    }
  }
  return out;
}

/** Everything one agent needs, in a fresh folder, with a topic of its own on `brokers`. */
export async function collectorSetup(
  brokers: string[],
  options: { nodeName?: string; liveConsumer?: boolean; backend?: Backend } = {},
): Promise<CollectorSetup> {
  // Short: the handler's path goes into core_pattern, which holds 127 bytes.
  const dir = mkdtempSync('/tmp/pmc-');
  const spoolDir = join(dir, 'spool');
  // The build-id cache (modules/) is no crash entry: a module may wait there for a later crash.
  const spoolLeft = () =>
    readdirSync(spoolDir).filter(
      (n) => !n.startsWith('handler.log') && n !== '.handler-state' && n !== 'rejected' && n !== 'modules',
    );
  const storageRoot = join(dir, 'storage');
  const stateDir = join(dir, 'state');
  const installDir = join(dir, 'bin');
  for (const d of [spoolDir, storageRoot, stateDir]) mkdirSync(d, { recursive: true });
  const nodeName = options.nodeName ?? 'node-test';
  const topic = uniqueName('pm-crashes');
  const kube = await FakeKubeApi.start();
  const otlp = await OtlpReceiver.start();
  const kubeconfig = kube.writeKubeconfig(join(dir, 'kubeconfig'));
  const kafka = new Kafka({ clientId: 'pm-test', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await createTopicsWithLeaders(admin, [{ topic, numPartitions: 3 }]);
  await admin.disconnect();
  const events: CrashEvent[] = [];
  const consume = async (into: CrashEvent[]): Promise<Consumer> => {
    const consumer = kafka.consumer({ groupId: uniqueName('pm-test-reader') });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const decoded = decodeCrashMessage(message.value);
        if (!decoded.ok) throw new Error(`bad crash message on ${topic}: ${decoded.errors.join('; ')}`);
        if (message.key?.toString() !== crashKey(decoded.value))
          throw new Error(`crash message keyed ${String(message.key)}`);
        into.push(decoded.value);
      },
    });
    return consumer;
  };
  let consumer: Consumer | undefined = options.liveConsumer === false ? undefined : await consume(events);
  const agents: AgentProcess[] = [];
  const backend = options.backend;
  // Without their dot-named temporaries: what a reader may see.
  const storedOf = (files: string[]) => ({
    events: files.filter((f) => f.endsWith('.json') && !f.split('/').at(-1)?.startsWith('.')),
    dumps: files.filter((f) => f.endsWith('.core.zst') && !f.split('/').at(-1)?.startsWith('.')),
  });
  const setup: CollectorSetup = {
    dir,
    spoolDir,
    storageRoot,
    store: backend?.store ?? new FsStore({ root: storageRoot }),
    stateDir,
    installDir,
    nodeName,
    topic,
    kube,
    otlp,
    kubeconfig,
    brokers,
    env: (extra = {}) => ({
      PODMORTEM_COLLECTOR_NODE_NAME: nodeName,
      PODMORTEM_COLLECTOR_SPOOL_DIR: spoolDir,
      PODMORTEM_COLLECTOR_STORAGE_ROOT: storageRoot,
      PODMORTEM_COLLECTOR_STORAGE_MIN_FREE_BYTES: '0',
      PODMORTEM_COLLECTOR_STATE_DIR: stateDir,
      PODMORTEM_COLLECTOR_HANDLER_INSTALL_DIR: installDir,
      PODMORTEM_COLLECTOR_HANDLER_MIN_FREE_BYTES: '0',
      PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'false',
      PODMORTEM_COLLECTOR_KAFKA_BROKERS: brokers.join(','),
      PODMORTEM_COLLECTOR_KAFKA_TOPIC: topic,
      PODMORTEM_COLLECTOR_KAFKA_TIMEOUT_MS: '5000',
      PODMORTEM_COLLECTOR_OTLP_ENDPOINT: otlp.url,
      PODMORTEM_COLLECTOR_OTLP_TIMEOUT_MS: '3000',
      PODMORTEM_COLLECTOR_KUBECONFIG: kubeconfig,
      PODMORTEM_COLLECTOR_OPS_HOST: '127.0.0.1',
      PODMORTEM_COLLECTOR_OPS_PORT: '0',
      PODMORTEM_COLLECTOR_SWEEP_INTERVAL_MS: '2000',
      PODMORTEM_COLLECTOR_RETRY_INITIAL_MS: '100',
      PODMORTEM_COLLECTOR_RETRY_MAX_MS: '1000',
      PODMORTEM_COLLECTOR_POD_WAIT_MS: '5000',
      PODMORTEM_COLLECTOR_SHUTDOWN_GRACE_MS: '5000',
      ...backend?.env('PODMORTEM_COLLECTOR_'),
      ...extra,
    }),
    async start(extra = {}) {
      const agent = new AgentProcess(setup.env(extra));
      agents.push(agent);
      await agent.running();
      return agent;
    },
    topicEvents: () => [...events],
    async readTopic(done, timeoutMs = 90_000) {
      const read: CrashEvent[] = [];
      const reader = await consume(read);
      try {
        await until('the crash events on Kafka', () => done(read), timeoutMs);
        return read;
      } finally {
        await reader.disconnect();
      }
    },
    spoolLeft,
    async untilSpoolEmpty(timeoutMs = 120_000) {
      try {
        await until('the spool to empty', () => spoolLeft().length === 0, timeoutMs);
      } catch (err) {
        throw new Error(`${(err as Error).message}; left: ${spoolLeft().join(', ')}`, { cause: err });
      }
    },
    stored: () => storedOf(walk(storageRoot)),
    storedKeys: async () => storedOf(backend ? await backend.keys() : walk(storageRoot)),
    async close() {
      for (const a of agents) await a.kill();
      await consumer?.disconnect();
      consumer = undefined;
      const cleanup = kafka.admin();
      await cleanup.connect().catch(() => undefined);
      await cleanup.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await cleanup.disconnect().catch(() => undefined);
      await kube.close();
      await otlp.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return setup;
}

/** Compiles a C program once per run (cached by name) and returns its path. */
export function compileC(name: string, source: string, flags: string[] = []): string {
  const dir = join('/tmp', `podmortem-c-${process.pid}`);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true });
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  const src = join(dir, `${name}.c`);
  const bin = join(dir, name);
  writeFileSync(src, source);
  const r = spawnSync('gcc', ['-O0', '-g', '-o', bin, src, ...flags], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc ${name}: ${r.stderr}`);
  return bin;
}

export const CRASHERS = {
  segv: `#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
  printf("pid %d\\n", getpid()); fflush(stdout);
  volatile int *p = (int *)0; *p = 42;
  return 0;
}`,
  abort: `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
  printf("pid %d\\n", getpid()); fflush(stdout);
  abort();
}`,
  threads: `#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
static void *idle(void *arg) {
  (void)arg;
  sleep(30);
  return 0;
}
static void *worker(void *arg) {
  (void)arg;
  printf("tid %ld\\n", (long)syscall(SYS_gettid)); fflush(stdout);
  volatile int *p = (int *)0x10; *p = 1;
  return 0;
}
int main(void) {
  printf("pid %d\\n", getpid()); fflush(stdout);
  pthread_t t[3];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, idle, 0);
  pthread_create(&t[2], 0, worker, 0);
  pthread_join(t[2], 0);
  return 0;
}`,
  /** Sleeps until killed: a live process whose /proc the handler can read. */
  sleeper: `#include <stdio.h>
#include <unistd.h>
int main(void) {
  printf("pid %d\\n", getpid()); fflush(stdout);
  for (;;) pause();
}`,
};

export interface HandlerRun {
  code: number | null;
  stderr: string;
}

/** Runs the installed handler as the kernel would: kernel facts as arguments, the core on stdin. */
export async function runHandler(
  installDir: string,
  facts: {
    pid: number;
    nsPid?: number;
    tid?: number;
    signal: number;
    comm: string;
    exe: string;
    uid?: number;
    gid?: number;
  },
  core: Buffer,
): Promise<HandlerRun> {
  const args = [
    String(facts.pid),
    String(facts.nsPid ?? facts.pid),
    String(facts.tid ?? facts.pid),
    String(facts.tid ?? facts.pid),
    String(facts.signal),
    String(Math.floor(Date.now() / 1000)),
    '18446744073709551615',
    facts.comm,
    facts.exe.replaceAll('/', '!'),
    'host',
    String(facts.uid ?? 0),
    String(facts.gid ?? 0),
  ];
  const child = spawn(join(installDir, 'podmortem-handler'), args, {
    stdio: ['pipe', 'ignore', 'pipe'],
    env: {},
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.on('error', () => undefined);
  child.stdin.end(core);
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stderr };
}

/** A real ELF core of a live process, made by gdb's gcore (the process goes on running). */
export function gcore(pid: number, dir: string): Buffer {
  const prefix = join(dir, 'gcore');
  const r = spawnSync('gcore', ['-o', prefix, String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcore ${pid}: ${r.stderr}`);
  const file = `${prefix}.${pid}`;
  const core = readFileSync(file);
  rmSync(file, { force: true });
  return core;
}

/** A live process inside a cgroup (a pod container's), started by a shell that moves itself there. */
export async function processInCgroup(
  cgroupPath: string,
  program: string,
): Promise<{ pid: number; kill(): Promise<void> }> {
  const script = `echo $$ > ${JSON.stringify(join(cgroupPath, 'cgroup.procs'))} && exec "$0"`;
  const child = spawn('bash', ['-c', script, program], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
  const pid = Number(/pid (\d+)/.exec(chunk.toString())?.[1]);
  if (!pid) throw new Error(`no pid from ${program}: ${chunk.toString()}`);
  return {
    pid,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
  };
}
