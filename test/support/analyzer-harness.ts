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
import { startService, stopService, type ServiceProcess } from './service-process.ts';
import { stack, uniqueName } from './stack.ts';

// Shared by the analyzer's integration tests and its bench: crash events for real cores put into
// a real storage root as the collector stores them (the dump zstd-compressed at its layout path,
// the executable at the key of its build id), the analyzer run as its own process
// (`node analyzer/src/main.ts`), and a reader of everything on the analysis topic.

export interface AnalyzerNames {
  topic: string;
  analysisTopic: string;
  /** The re-analysis requests, consumed beside the crash topic. */
  requestTopic: string;
  group: string;
}

export function analyzerNames(prefix: string): AnalyzerNames {
  const base = uniqueName(prefix);
  return {
    topic: `${base}.crashes`,
    analysisTopic: `${base}.analyses`,
    requestTopic: `${base}.analysis-requests`,
    group: `${base}-analyzer`,
  };
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

export type AnalyzerProcess = ServiceProcess;

export interface AnalyzerRunOptions {
  names: AnalyzerNames;
  storageRoot: string;
  workDir: string;
  env?: Record<string, string>;
}

export function startAnalyzer(o: AnalyzerRunOptions): Promise<AnalyzerProcess> {
  return startService('analyzer/src/main.ts', (opsPort) => ({
    PODMORTEM_ANALYZER_KAFKA_BROKERS: stack.kafkaBrokers.join(','),
    PODMORTEM_ANALYZER_TOPIC: o.names.topic,
    PODMORTEM_ANALYZER_ANALYSIS_TOPIC: o.names.analysisTopic,
    PODMORTEM_ANALYZER_REQUEST_TOPIC: o.names.requestTopic,
    PODMORTEM_ANALYZER_GROUP_ID: o.names.group,
    PODMORTEM_ANALYZER_STORAGE_ROOT: o.storageRoot,
    PODMORTEM_ANALYZER_WORK_DIR: o.workDir,
    PODMORTEM_ANALYZER_OPS_HOST: '127.0.0.1',
    PODMORTEM_ANALYZER_OPS_PORT: String(opsPort),
    PODMORTEM_ANALYZER_SESSION_TIMEOUT_MS: '10000',
    PODMORTEM_ANALYZER_HEARTBEAT_INTERVAL_MS: '1000',
    PODMORTEM_ANALYZER_RETRY_MAX_MS: '2000',
    ...o.env,
  }));
}

export const stopAnalyzer = stopService;
