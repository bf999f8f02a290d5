import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { zstdCompressSync } from 'node:zlib';
import { Client } from '@elastic/elasticsearch';
import { Kafka, logLevel } from 'kafkajs';
import type { Test } from 'tap';
import {
  crashIndexFor,
  crashIndexForId,
  crashIndexTemplates,
  dumpRelPath,
  eventRelPath,
  newCrashId,
  validExamples,
  type CrashEvent,
} from '@podmortem/contract';
import { createLogger } from '@podmortem/contract/runtime';
import { FsStore, type Store } from '@podmortem/contract/store';
import type { TracerProvider } from '@opentelemetry/api';
import { buildApp, type App } from '../../query-api/src/app.ts';
import { readConfig, type Config } from '../../query-api/src/config.ts';
import { createElasticsearchClient } from '../../query-api/src/crash-store.ts';
import { createKubeReviews } from '../../query-api/src/kube-reviews.ts';
import { PrometheusClient } from '../../query-api/src/prometheus-client.ts';
import { StorageReader } from '../../query-api/src/storage-reader.ts';
import { createTelemetry, type Telemetry } from '../../query-api/src/telemetry.ts';
import { FakeKubeApi } from './fake-kube-api.ts';
import { stack, uniqueName } from './stack.ts';
import { createTopicsWithLeaders } from './kafka-topics.ts';

// What the query API's integration tests share: a crash index of their own in the real
// Elasticsearch (templates + monthly indices behind a unique alias), a real storage root in a
// temporary folder with zstd dumps of random bytes, the local Kubernetes API stand-in with users
// and grants, and the app built on all of them.

const template = validExamples().find((e) => e.name === 'segv-stored')?.event;
if (!template) throw new Error('contract example segv-stored is missing');

export interface CrashSpec {
  namespace?: string;
  pod?: string;
  uid?: string;
  container?: string;
  node?: string;
  at: string | number;
  signal?: { number: number; name: string };
  executable?: string;
  image?: string;
  signature?: string;
  title?: string;
  status?: CrashEvent['dump']['status'];
  /** A process outside any pod. */
  host?: boolean;
  /** Bytes of the raw core written to storage (0: no file). */
  coreBytes?: number;
  args?: string[];
}

export interface SeededCrash {
  event: CrashEvent;
  raw?: Buffer;
  stored?: Buffer;
}

export function makeCrash(spec: CrashSpec): SeededCrash {
  const at = typeof spec.at === 'number' ? spec.at : Date.parse(spec.at);
  const event = structuredClone(template) as CrashEvent;
  event['@timestamp'] = new Date(at).toISOString();
  event.crash.id = newCrashId(at);
  if (spec.host) {
    delete event.kubernetes;
    delete event.container;
    event.collector.node = spec.node ?? 'node-a';
  } else {
    const k8s = event.kubernetes;
    if (!k8s) throw new Error('template without kubernetes');
    k8s.namespace = spec.namespace ?? 'team-a';
    k8s.pod.name = spec.pod ?? 'api-0';
    k8s.pod.uid = spec.uid ?? randomUUID();
    k8s.container.name = spec.container ?? 'api';
    k8s.node.name = spec.node ?? 'node-a';
    if (spec.image && event.container?.image) event.container.image.name = spec.image;
  }
  if (spec.signal) event.signal = { ...spec.signal, code: 1 };
  if (spec.executable) {
    event.process.executable = spec.executable;
    event.process.name = spec.executable.split('/').pop()?.slice(0, 15) ?? 'x';
  }
  if (spec.args) event.process.args = spec.args;
  if (event.analysis) {
    if (spec.signature) event.analysis.signature = spec.signature;
    if (spec.title) event.analysis.title = spec.title;
  }
  const status = spec.status ?? 'stored';
  const coreBytes = spec.coreBytes ?? (status === 'stored' ? 64 * 1024 : 0);
  event.dump = { status, compression: 'zstd', limit_bytes: 1 << 30 };
  if (status === 'skipped') event.dump.reason = 'rate limit of the container reached';
  if (coreBytes > 0 && (status === 'stored' || status === 'truncated')) {
    // Half random, half zeros: compressible enough that zstd really changes the bytes.
    const raw = Buffer.concat([randomBytes(coreBytes / 2), Buffer.alloc(coreBytes - coreBytes / 2)]);
    const stored = zstdCompressSync(raw);
    event.dump = {
      ...event.dump,
      path: dumpRelPath(event),
      size_bytes: raw.length,
      stored_bytes: stored.length,
      sha256: createHash('sha256').update(raw).digest('hex'),
    };
    return { event, raw, stored };
  }
  return { event };
}

export function sha256(data: Buffer | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A unique crash index set (alias + templates) in the real Elasticsearch. */
export class CrashIndex {
  readonly alias: string;
  readonly es: Client;

  private constructor(alias: string, es: Client) {
    this.alias = alias;
    this.es = es;
  }

  static async create(prefix = 'pm-api'): Promise<CrashIndex> {
    const es = new Client({ node: stack.elasticsearchUrl });
    const index = new CrashIndex(uniqueName(prefix), es);
    const t = crashIndexTemplates({ replicas: 0, shards: 1, alias: index.alias });
    for (const c of t.componentTemplates) await es.cluster.putComponentTemplate(c);
    await es.indices.putIndexTemplate(t.indexTemplate);
    return index;
  }

  async add(events: CrashEvent[]): Promise<void> {
    if (events.length === 0) return;
    const operations = events.flatMap((e) => [
      // Where the indexer puts a crash: the month of its id's time.
      {
        index: {
          _index: crashIndexForId(e.crash.id, this.alias) ?? crashIndexFor(e['@timestamp'], this.alias),
          _id: e.crash.id,
        },
      },
      e,
    ]);
    const res = await this.es.bulk({ operations, refresh: 'wait_for' });
    if (res.errors) throw new Error(`bulk failed: ${JSON.stringify(res.items.find((i) => i.index?.error))}`);
  }

  async destroy(): Promise<void> {
    // Deletes need concrete names here (destructive_requires_name): resolve the pattern first.
    const names = Object.keys(
      await this.es.indices.get({ index: `${this.alias}-*`, allow_no_indices: true }),
    );
    if (names.length > 0) await this.es.indices.delete({ index: names });
    const t = crashIndexTemplates({ replicas: 0, shards: 1, alias: this.alias });
    await this.es.indices.deleteIndexTemplate({ name: t.indexTemplate.name }).catch(() => undefined);
    for (const c of t.componentTemplates)
      await this.es.cluster.deleteComponentTemplate({ name: c.name }).catch(() => undefined);
    await this.es.close();
  }
}

/** A storage root in a temporary folder, laid out as the collector writes it. */
/** A log line of a pod's container, as a log shipper would put it in the logs index. */
export interface LogDoc {
  at: number;
  ns: string;
  pod: string;
  container: string;
  message: string;
}

/** A log line in the ECS shape (Filebeat, Elastic Agent): kubernetes.*. */
export function ecsLogDoc(d: LogDoc): Record<string, unknown> {
  return {
    '@timestamp': new Date(d.at).toISOString(),
    message: d.message,
    kubernetes: { namespace: d.ns, pod: { name: d.pod }, container: { name: d.container } },
  };
}

/** Indexes the lines into `index`, searchable when this returns. */
export async function seedLogs(
  es: Client,
  index: string,
  docs: LogDoc[],
  shape: (d: LogDoc) => Record<string, unknown> = ecsLogDoc,
): Promise<void> {
  const operations = docs.flatMap((d) => [{ index: { _index: index } }, shape(d)]);
  const res = await es.bulk({ operations, refresh: 'wait_for' });
  if (res.errors) throw new Error(`bulk of ${docs.length} log lines into ${index} failed`);
}

export class StorageRoot {
  readonly root: string;
  constructor() {
    this.root = mkdtempSync(join(tmpdir(), 'pm-storage-'));
  }

  write(crash: SeededCrash): void {
    const eventPath = join(this.root, eventRelPath(crash.event));
    mkdirSync(dirname(eventPath), { recursive: true });
    writeFileSync(eventPath, JSON.stringify(crash.event));
    if (crash.stored) writeFileSync(join(this.root, dumpRelPath(crash.event)), crash.stored);
  }

  path(rel: string): string {
    return join(this.root, rel);
  }

  destroy(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Writes the crash's event and stored dump through `store`, where the collector puts them. */
export async function writeThrough(store: Store, crash: SeededCrash): Promise<void> {
  await store.putBytes(eventRelPath(crash.event), Buffer.from(JSON.stringify(crash.event)));
  if (crash.stored) await store.putBytes(dumpRelPath(crash.event), crash.stored);
}

/** Log lines captured from the app's logger (audit records among them). */
export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() !== '') this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    done();
  }
  get text(): string {
    return this.lines.map((l) => JSON.stringify(l)).join('\n');
  }
}

export interface Harness {
  app: App;
  config: Config;
  kube: FakeKubeApi;
  index: CrashIndex;
  storage: StorageRoot;
  /** What the app reads dumps and events from: the storage root's FsStore unless one was given. */
  store: Store;
  logs: LogCapture;
  telemetry: Telemetry;
  close(): Promise<void>;
}

export const RBAC = { group: 'podmortem.io', resource: 'coredumps' } as const;

/** Registers a user with a token and the usual grants in some namespaces ('' = cluster-wide). */
export function addUser(
  kube: FakeKubeApi,
  username: string,
  namespaces: string[],
  rights: { list?: boolean; get?: boolean; dump?: boolean } = { list: true, get: true, dump: true },
): string {
  const token = `tok-${username}-${randomUUID()}`;
  kube.addToken(token, { username, groups: ['system:authenticated'] });
  for (const namespace of namespaces) {
    const verbs = [...(rights.list ? ['list'] : []), ...(rights.get ? ['get'] : [])];
    if (verbs.length > 0) kube.grant({ user: username, namespace, verbs, ...RBAC });
    if (rights.dump) kube.grant({ user: username, namespace, verbs: ['get'], ...RBAC, subresource: 'dump' });
  }
  return token;
}

export async function harness(
  overrides: Partial<Config> = {},
  extra: { tracerProvider?: TracerProvider; store?: Store } = {},
): Promise<Harness> {
  const kube = await FakeKubeApi.start();
  const index = await CrashIndex.create();
  const storage = new StorageRoot();
  const logs = new LogCapture();
  const telemetry = createTelemetry(undefined, false);
  const config = readConfig(
    {},
    {
      crashIndex: index.alias,
      storageRoot: storage.root,
      elasticsearchUrl: stack.elasticsearchUrl,
      prometheusUrl: stack.prometheusUrl,
      logsIndex: uniqueName('pm-logs'),
      ...overrides,
    },
  );
  const es = createElasticsearchClient(config.elasticsearchUrl, config.elasticsearchTimeoutMs);
  const store = extra.store ?? new FsStore({ root: config.storageRoot });
  const app = await buildApp({
    config,
    es,
    kube: createKubeReviews(kube.kubeConfig(), { timeoutMs: config.kubeTimeoutMs }),
    prometheus: new PrometheusClient({ url: config.prometheusUrl, timeoutMs: config.prometheusTimeoutMs }),
    storage: new StorageReader({ store }),
    store,
    logger: createLogger('query-api-test', { level: 'info' }, logs),
    telemetry,
    ...(extra.tracerProvider ? { tracerProvider: extra.tracerProvider } : {}),
  });
  await app.ready();
  return {
    app,
    config,
    kube,
    index,
    storage,
    store,
    logs,
    telemetry,
    async close() {
      await app.close();
      await es.close();
      await kube.close();
      await index.destroy();
      storage.destroy();
    },
  };
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** A re-analysis request topic of the test's own on the real Kafka, removed at the end. */
export interface RequestTopic {
  topic: string;
  /** Records published to the topic so far (the sum of its partitions' high offsets). */
  published: () => Promise<number>;
}

export async function requestTopicFor(t: Test, prefix: string): Promise<RequestTopic> {
  const topic = uniqueName(prefix);
  const admin = new Kafka({ brokers: stack.kafkaBrokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await createTopicsWithLeaders(admin, [{ topic }]);
  t.teardown(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });
  return {
    topic,
    published: async () => (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0),
  };
}
