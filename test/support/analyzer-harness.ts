import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { zstdCompressSync } from 'node:zlib';
import {
  crashKey,
  decodeAnalysisMessage,
  dumpRelPath,
  encodeCrashMessage,
  moduleKey,
  newCrashId,
  validExamples,
  type CrashEvent,
} from '@podmortem/contract';
import type { Store } from '@podmortem/contract/store';
import { Kafka, logLevel, Partitioners, type Consumer } from 'kafkajs';
import { freePort } from './ports.ts';
import { repoDir, stack, uniqueName } from './stack.ts';

// Shared by the analyzer's integration tests and its bench: crash events for real cores put into
// a real storage root as the collector stores them (the dump zstd-compressed at its layout path,
// the executable at the key of its build id), the analyzer run as its own process
// (`node analyzer/src/main.ts`), and a reader of everything on the analysis topic.

export interface AnalyzerNames {
  topic: string;
  analysisTopic: string;
  group: string;
}

export function analyzerNames(prefix: string): AnalyzerNames {
  const base = uniqueName(prefix);
  return { topic: `${base}.crashes`, analysisTopic: `${base}.analyses`, group: `${base}-analyzer` };
}

export function testKafka(): Kafka {
  return new Kafka({
    clientId: 'podmortem-analyzer-test',
    brokers: stack.kafkaBrokers,
    logLevel: logLevel.NOTHING,
  });
}

export interface CrashSpec {
  /** The crashed executable as the kernel named it. */
  executable: string;
  pid: number;
  buildId?: string;
  signal?: { number: number; name: string };
  dump?: Partial<CrashEvent['dump']>;
  frames?: NonNullable<CrashEvent['analysis']>['frames'];
}

/** A valid crash event of a pod for a real crash (a new crash id, pod and key each time). */
export function crashEventFor(spec: CrashSpec): CrashEvent {
  const base = validExamples().find((e) => e.name === 'segv-stored')?.event;
  if (!base) throw new Error('the contract ships the segv-stored example');
  const event = structuredClone(base);
  event.crash.id = newCrashId();
  event['@timestamp'] = new Date().toISOString();
  if (event.kubernetes) event.kubernetes.pod.uid = randomUUID();
  event.process = { pid: spec.pid, tid: spec.pid, executable: spec.executable, name: 'crasher' };
  event.signal = spec.signal ?? { number: 11, name: 'SIGSEGV' };
  event.dump = { status: 'stored', compression: 'zstd', ...spec.dump };
  if (event.dump.status === 'stored' || event.dump.status === 'truncated')
    event.dump.path = dumpRelPath(event);
  event.analysis = {
    modules: [{ path: spec.executable, ...(spec.buildId ? { build_id: spec.buildId } : {}) }],
    ...(spec.frames ? { frames: spec.frames } : {}),
  };
  return event;
}

/** The dump of `event` in the store, zstd-compressed as the collector keeps it. */
export async function storeDump(store: Store, event: CrashEvent, core: Buffer): Promise<void> {
  await store.putBytes(dumpRelPath(event), zstdCompressSync(core));
}

/** An executable in the store at the key of its build id, as the collector captures it. */
export async function storeModule(store: Store, buildId: string, path: string): Promise<void> {
  await store.putBytes(moduleKey(buildId), await readFile(path));
}

export async function produceCrashes(kafka: Kafka, topic: string, events: CrashEvent[]): Promise<void> {
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: events.map((e) => ({ key: crashKey(e), value: encodeCrashMessage(e) })),
    });
  } finally {
    await producer.disconnect();
  }
}

export interface AnalysisRecord {
  key: string;
  crashId: string;
  analysis: ReturnType<typeof analysisOfRecord>;
}

function analysisOfRecord(value: Buffer | null) {
  const decoded = decodeAnalysisMessage(value);
  if (!decoded.ok) throw new Error(`not an analysis record: ${decoded.errors.join('; ')}`);
  return decoded.value;
}

/** Every record of the analysis topic, from its beginning, as they arrive. */
export async function readAnalyses(
  kafka: Kafka,
  topic: string,
): Promise<{ records: AnalysisRecord[]; stop: () => Promise<void> }> {
  const records: AnalysisRecord[] = [];
  const consumer: Consumer = kafka.consumer({ groupId: uniqueName('pm-analysis-reader') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const analysis = analysisOfRecord(message.value);
      records.push({ key: message.key?.toString() ?? '', crashId: analysis.crash.id, analysis });
    },
  });
  return { records, stop: () => consumer.disconnect() };
}

export interface AnalyzerProcess {
  readonly child: ChildProcess;
  readonly opsUrl: string;
  readonly logs: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  metrics(): Promise<string>;
  ready(): Promise<boolean>;
}

export interface AnalyzerRunOptions {
  names: AnalyzerNames;
  storageRoot: string;
  workDir: string;
  env?: Record<string, string>;
}

export async function startAnalyzer(o: AnalyzerRunOptions): Promise<AnalyzerProcess> {
  const opsPort = await freePort();
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    PODMORTEM_ANALYZER_KAFKA_BROKERS: stack.kafkaBrokers.join(','),
    PODMORTEM_ANALYZER_TOPIC: o.names.topic,
    PODMORTEM_ANALYZER_ANALYSIS_TOPIC: o.names.analysisTopic,
    PODMORTEM_ANALYZER_GROUP_ID: o.names.group,
    PODMORTEM_ANALYZER_STORAGE_ROOT: o.storageRoot,
    PODMORTEM_ANALYZER_WORK_DIR: o.workDir,
    PODMORTEM_ANALYZER_OPS_HOST: '127.0.0.1',
    PODMORTEM_ANALYZER_OPS_PORT: String(opsPort),
    PODMORTEM_ANALYZER_SESSION_TIMEOUT_MS: '10000',
    PODMORTEM_ANALYZER_HEARTBEAT_INTERVAL_MS: '1000',
    PODMORTEM_ANALYZER_RETRY_MAX_MS: '2000',
    ...o.env,
  };
  const child = spawn(process.execPath, ['analyzer/src/main.ts'], {
    cwd: repoDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(line);
    if (logs.length > 5000) logs.splice(0, logs.length - 5000);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
    });
  });
  const opsUrl = `http://127.0.0.1:${opsPort}`;
  return {
    child,
    opsUrl,
    logs,
    exited,
    alive: () => running,
    metrics: async () => {
      try {
        return await (await fetch(`${opsUrl}/metrics`)).text();
      } catch {
        return '';
      }
    },
    ready: async () => {
      try {
        return (await fetch(`${opsUrl}/readyz`)).status === 200;
      } catch {
        return false;
      }
    },
  };
}

/** Stops the process (SIGTERM, then SIGKILL after `graceMs`) if it is still running. */
export async function stopAnalyzer(p: AnalyzerProcess, graceMs = 30_000): Promise<void> {
  if (!p.alive()) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  await p.exited;
  clearTimeout(timer);
}
