import { randomUUID } from 'node:crypto';
import { Client, errors as esErrors } from '@elastic/elasticsearch';
import {
  crashIndexFor,
  crashIndexMonth,
  crashKey,
  DLQ_HEADERS,
  newCrashId,
  toCloudEvent,
  validExamples,
  type CrashEvent,
} from '@podmortem/contract';
import { Kafka, logLevel, Partitioners, type Admin, type IHeaders } from 'kafkajs';
import type { Test } from 'tap';
import { startService, stopService, type ServiceProcess } from './service-process.ts';
import { stack, uniqueName } from './stack.ts';
import { createTopicsWithLeaders } from './kafka-topics.ts';

// Shared by the indexer's integration tests and its bench: a stream of crash records with
// duplicates and invalid records of several kinds (and what must come of each), the indexer run
// as its own process (`node indexer/src/main.ts`), and checks of what reached Elasticsearch and
// the dead-letter topic.

type TestLike = Pick<Test, 'equal' | 'same' | 'ok' | 'match' | 'comment'>;

// ---------------------------------------------------------------------------------------------
// The stream

export type InvalidKind = 'not-json' | 'wrong-schema-version' | 'missing-field' | 'wrong-type';

export interface StreamRecord {
  key: string;
  value: Buffer;
  /** Set on valid records (originals and duplicates). */
  id?: string;
  duplicate?: boolean;
  invalid?: { kind: InvalidKind; code: 'PM_ERR_RECORD_NOT_JSON' | 'PM_ERR_RECORD_INVALID'; field: string };
}

export interface CrashStream {
  records: StreamRecord[];
  /** The unique valid events by crash id: exactly what Elasticsearch must hold. */
  events: Map<string, CrashEvent>;
  invalid: StreamRecord[];
}

/** A small deterministic PRNG (mulberry32), so a stream is the same from run to run. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export const NAMESPACES = ['payments', 'checkout', 'search', 'batch', 'auth', 'media', 'edge'];

/** Months (first instants, UTC) counted back from the current one: 0 = this month. */
export function monthsAgo(n: number, now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - n, 1));
}

export interface StreamOptions {
  unique: number;
  duplicates: number;
  invalid: number;
  /** Months the crashes spread over (each event's month decides its index). */
  months: Date[];
  seed?: number;
}

export function crashEvent(i: number, month: Date, podUids: string[]): CrashEvent {
  const examples = validExamples();
  const base = examples[i % examples.length]?.event;
  if (!base) throw new Error('the contract ships valid examples');
  const event = structuredClone(base);
  // Spread over the first 27 days of the month, whole seconds plus milliseconds.
  const at = new Date(month.getTime() + ((i * 7919) % (27 * 86_400)) * 1000 + (i % 1000));
  event['@timestamp'] = at.toISOString();
  event.crash.id = newCrashId(at.getTime());
  event.process.pid = 1000 + i;
  event.collector.node = `node-${i % 3}`;
  if (event.kubernetes) {
    const slot = i % podUids.length;
    event.kubernetes.namespace = NAMESPACES[i % NAMESPACES.length] ?? 'default';
    event.kubernetes.pod.uid = podUids[slot] ?? randomUUID();
    event.kubernetes.pod.name = `app-${slot}-x${(i % 97).toString(36)}`;
    event.kubernetes.node.name = event.collector.node;
  }
  if (event.dump.path)
    event.dump.path = `${event.kubernetes?.namespace ?? '_host'}/${event.crash.id}.core.zst`;
  return event;
}

function invalidRecord(j: number, kind: InvalidKind, template: CrashEvent): StreamRecord {
  const ce = toCloudEvent(structuredClone(template));
  const key = `bad/${kind}/${j}`;
  switch (kind) {
    case 'not-json': {
      const value =
        j % 2 === 0
          ? Buffer.from(`{"specversion":"1.0","id":"broken-${j}"`)
          : Buffer.from([0xde, 0xad, j & 0xff, 0xbe, 0xef]);
      return { key, value, invalid: { kind, code: 'PM_ERR_RECORD_NOT_JSON', field: '(record)' } };
    }
    case 'wrong-schema-version': {
      (ce.data as { schema_version: number }).schema_version = 2;
      return {
        key,
        value: Buffer.from(JSON.stringify(ce)),
        invalid: { kind, code: 'PM_ERR_RECORD_INVALID', field: 'data.schema_version' },
      };
    }
    case 'missing-field': {
      const missing = [
        ['process', 'name'],
        ['signal', 'number'],
        ['collector', 'node'],
        ['dump', 'status'],
      ][j % 4] as [string, string];
      const data = ce.data as unknown as Record<string, Record<string, unknown>>;
      const parent = data[missing[0]];
      // Rebuilt without the field (a dynamic `delete` is what lint forbids).
      if (parent)
        data[missing[0]] = Object.fromEntries(Object.entries(parent).filter(([k]) => k !== missing[1]));
      return {
        key,
        value: Buffer.from(JSON.stringify(ce)),
        invalid: { kind, code: 'PM_ERR_RECORD_INVALID', field: `data.${missing[0]}.${missing[1]}` },
      };
    }
    case 'wrong-type': {
      const wrong = [
        ['process', 'pid', '4242'],
        ['signal', 'number', 'eleven'],
        ['process', 'args', '--serve'],
        ['signal', 'name', 11],
      ][j % 4] as [string, string, unknown];
      const data = ce.data as unknown as Record<string, Record<string, unknown>>;
      const parent = data[wrong[0]];
      if (parent) parent[wrong[1]] = wrong[2];
      return {
        key,
        value: Buffer.from(JSON.stringify(ce)),
        invalid: { kind, code: 'PM_ERR_RECORD_INVALID', field: `data.${wrong[0]}.${wrong[1]}` },
      };
    }
  }
}

export function crashStream(options: StreamOptions): CrashStream {
  const random = prng(options.seed ?? 42);
  const podUids = Array.from({ length: 60 }, () => randomUUID());
  const events = new Map<string, CrashEvent>();
  const records: StreamRecord[] = [];
  const originals: StreamRecord[] = [];
  for (let i = 0; i < options.unique; i++) {
    const month = options.months[i % options.months.length] ?? monthsAgo(0);
    const event = crashEvent(i, month, podUids);
    events.set(event.crash.id, event);
    const record = {
      key: crashKey(event),
      value: Buffer.from(JSON.stringify(toCloudEvent(event))),
      id: event.crash.id,
    };
    records.push(record);
    originals.push(record);
  }
  for (let d = 0; d < options.duplicates; d++) {
    const original = originals[Math.floor((d * originals.length) / Math.max(1, options.duplicates))];
    if (original) records.push({ ...original, duplicate: true });
  }
  const kinds: InvalidKind[] = ['not-json', 'wrong-schema-version', 'missing-field', 'wrong-type'];
  const template = events.values().next().value;
  const invalid: StreamRecord[] = [];
  for (let j = 0; j < options.invalid; j++) {
    if (!template) break;
    const kind = kinds[j % kinds.length] ?? 'not-json';
    invalid.push(invalidRecord(Math.floor(j / kinds.length), kind, template));
  }
  records.push(...invalid);
  // A seeded shuffle: duplicates and invalid records anywhere in the stream.
  for (let i = records.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const a = records[i];
    const b = records[j];
    if (a && b) {
      records[i] = b;
      records[j] = a;
    }
  }
  return { records, events, invalid };
}

// ---------------------------------------------------------------------------------------------
// Kafka

export function testKafka(brokers = stack.kafkaBrokers): Kafka {
  return new Kafka({ clientId: 'podmortem-indexer-test', brokers, logLevel: logLevel.NOTHING });
}

export interface Names {
  topic: string;
  analyses: string;
  /** Re-analysis requests: no topic of the indexer's, but of a test running the analyzer beside it. */
  requests: string;
  /** Dump removals (expired or deleted cores). */
  removals: string;
  /** Users' dump deletion requests: of a test running retention's deletion consumer beside it. */
  deletions: string;
  dlq: string;
  group: string;
  alias: string;
}

export function uniqueNames(prefix: string): Names {
  const base = uniqueName(prefix);
  return {
    topic: `${base}.crashes`,
    analyses: `${base}.analyses`,
    requests: `${base}.analysis-requests`,
    removals: `${base}.dump-removals`,
    deletions: `${base}.dump-deletions`,
    dlq: `${base}.crashes.dlq`,
    group: `${base}-indexer`,
    alias: `${base}-crashes`,
  };
}

export async function createTopics(admin: Admin, names: Names, partitions: number): Promise<void> {
  await createTopicsWithLeaders(admin, [
    { topic: names.topic, numPartitions: partitions },
    { topic: names.analyses, numPartitions: partitions },
    { topic: names.requests, numPartitions: partitions },
    { topic: names.removals, numPartitions: partitions },
    { topic: names.deletions, numPartitions: partitions },
    { topic: names.dlq, numPartitions: 2 },
  ]);
}

export async function produce(
  kafka: Kafka,
  topic: string,
  records: StreamRecord[],
  perSend = 500,
): Promise<void> {
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    for (let i = 0; i < records.length; i += perSend) {
      await producer.send({
        topic,
        acks: -1,
        messages: records
          .slice(i, i + perSend)
          .map((r) => ({ key: r.key, value: r.value, headers: { 'test-origin': r.key } })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

export interface DlqRecord {
  partition: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

function headerText(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? v.map(String).join(',') : String(v);
  }
  return out;
}

/** Every record of the dead-letter topic (up to its current end). */
export async function readDlq(kafka: Kafka, dlq: string): Promise<DlqRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(dlq);
  await admin.disconnect();
  const total = ends.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
  const out: DlqRecord[] = [];
  if (total === 0) return out;
  const consumer = kafka.consumer({ groupId: uniqueName('pm-dlq-reader') });
  await consumer.connect();
  await consumer.subscribe({ topic: dlq, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          out.push({
            partition,
            key: message.key,
            value: message.value,
            headers: headerText(message.headers),
          });
          if (out.length === total) resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  return out;
}

/** Committed offsets of the group, and the end of each partition. */
export async function groupProgress(admin: Admin, group: string, topic: string) {
  const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const ends = await admin.fetchTopicOffsets(topic);
  const behind = ends.map((e) => {
    const c = committed?.partitions.find((p) => p.partition === e.partition)?.offset ?? '-1';
    return Number(e.high) - (c === '-1' ? 0 : Number(c));
  });
  return { behind: behind.reduce((a, b) => a + b, 0), committed: committed?.partitions ?? [] };
}

// ---------------------------------------------------------------------------------------------
// Elasticsearch

export function testElasticsearch(node = stack.elasticsearchUrl): Client {
  return new Client({ node, requestTimeout: 60_000 });
}

/**
 * Documents searchable through the alias now (after a refresh). An index the indexer has just
 * created is in the alias before its primary shard has started; a count in that moment fails with
 * no_shard_available_action_exception on every shard, and nothing is searchable yet: 0.
 */
export async function searchableCount(es: Client, alias: string): Promise<number> {
  await es.indices.refresh({ index: alias, ignore_unavailable: true, allow_no_indices: true });
  try {
    return (await es.count({ index: alias, ignore_unavailable: true, allow_no_indices: true })).count;
  } catch (err) {
    if (err instanceof esErrors.ResponseError && (err.statusCode === 404 || shardsStarting(err))) return 0;
    throw err;
  }
}

function shardsStarting(err: esErrors.ResponseError): boolean {
  const body = err.meta.body as { error?: { root_cause?: { type?: string }[] } } | undefined;
  const causes = body?.error?.root_cause ?? [];
  return causes.length > 0 && causes.every((c) => c.type === 'no_shard_available_action_exception');
}

/** Removes what a test made in Elasticsearch: its indices (by exact name) and templates. */
export async function removeIndexSet(es: Client, alias: string): Promise<void> {
  const indices = Object.keys(
    await es.indices.get({ index: `${alias}-*`, expand_wildcards: ['open', 'closed'] }).catch(() => ({})),
  ).filter((i) => i.startsWith(`${alias}-`));
  if (indices.length > 0) await es.indices.delete({ index: indices }).catch(() => undefined);
  await es.indices.deleteIndexTemplate({ name: alias }).catch(() => undefined);
  for (const c of [`${alias}-settings`, `${alias}-mappings`]) {
    await es.cluster.deleteComponentTemplate({ name: c }).catch(() => undefined);
  }
}

/**
 * Elasticsearch holds exactly the stream's unique valid events: the count through the alias, the
 * count of each monthly index and of each namespace, and every document equal, field by field,
 * to the event that was sent (a sample asserted field by field, all of them compared).
 */
export async function verifyIndexed(
  t: TestLike,
  es: Client,
  alias: string,
  stream: CrashStream,
): Promise<void> {
  const expected = [...stream.events.values()];
  t.equal(
    await searchableCount(es, alias),
    expected.length,
    `the alias holds exactly ${expected.length} crashes`,
  );

  const byIndex = new Map<string, number>();
  const byNamespace = new Map<string, number>();
  for (const e of expected) {
    const index = crashIndexFor(e['@timestamp'], alias);
    byIndex.set(index, (byIndex.get(index) ?? 0) + 1);
    const ns = e.kubernetes?.namespace ?? '(none)';
    byNamespace.set(ns, (byNamespace.get(ns) ?? 0) + 1);
  }
  const counts = await es.cat.indices({ index: `${alias}-*`, format: 'json', h: ['index', 'docs.count'] });
  const actualByIndex = Object.fromEntries(
    counts
      .filter((c) => c.index && crashIndexMonth(c.index, alias))
      .map((c) => [c.index ?? '', Number(c['docs.count'])]),
  );
  t.same(actualByIndex, Object.fromEntries(byIndex), 'each event in the index of its month');

  const aggs = await es.search({
    index: alias,
    size: 0,
    aggs: {
      ns: { terms: { field: 'kubernetes.namespace', size: 100 } },
      none: { missing: { field: 'kubernetes.namespace' } },
    },
  });
  const nsAgg = aggs.aggregations as unknown as {
    ns: { buckets: { key: string; doc_count: number }[] };
    none: { doc_count: number };
  };
  const actualByNamespace: Record<string, number> = Object.fromEntries(
    nsAgg.ns.buckets.map((b) => [b.key, b.doc_count]),
  );
  if (nsAgg.none.doc_count > 0) actualByNamespace['(none)'] = nsAgg.none.doc_count;
  t.same(actualByNamespace, Object.fromEntries(byNamespace), 'crashes per namespace');

  const mismatched: string[] = [];
  const missing: string[] = [];
  for (let i = 0; i < expected.length; i += 1000) {
    const slice = expected.slice(i, i + 1000);
    const res = await es.mget<CrashEvent>({
      docs: slice.map((e) => ({ _index: crashIndexFor(e['@timestamp'], alias), _id: e.crash.id })),
    });
    res.docs.forEach((doc, j) => {
      const want = slice[j];
      if (!want) return;
      if (!('found' in doc) || !doc.found) missing.push(want.crash.id);
      else if (JSON.stringify(canonical(doc._source)) !== JSON.stringify(canonical(want)))
        mismatched.push(want.crash.id);
    });
  }
  t.same(missing, [], 'every crash found by its id in its monthly index');
  t.same(mismatched, [], 'every document equals the event sent');

  // A sample, field by field, so a failure says which field.
  const sample = expected
    .filter((_, i) => i % Math.max(1, Math.floor(expected.length / 12)) === 0)
    .slice(0, 12);
  for (const want of sample) {
    const got = (
      await es.get<CrashEvent>({ index: crashIndexFor(want['@timestamp'], alias), id: want.crash.id })
    )._source;
    for (const [field, value] of flatten(want)) {
      t.same(got ? pick(got, field) : undefined, value, `${want.crash.id} ${field}`);
    }
  }
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) => [k, canonical(v)]),
    );
  }
  return value;
}

function flatten(value: unknown, prefix = ''): [string, unknown][] {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k));
  }
  return [[prefix, value]];
}

function pick(value: unknown, path: string): unknown {
  let v: unknown = value;
  for (const seg of path.split('.')) {
    if (!v || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[seg];
  }
  return v;
}

/**
 * The dead-letter topic holds each invalid record of the stream: its very bytes and key, its
 * original headers, and headers naming the error code, the field, the source topic, partition and
 * offset. `exact`: no record twice (a crash between a DLQ write and the offset commit may write
 * one again, with the same source partition and offset).
 */
export function verifyDeadLetters(
  t: TestLike,
  letters: DlqRecord[],
  stream: CrashStream,
  topic: string,
  exact = true,
): void {
  const bySource = new Map<string, DlqRecord>();
  for (const l of letters) {
    bySource.set(`${l.headers[DLQ_HEADERS.sourcePartition]}/${l.headers[DLQ_HEADERS.sourceOffset]}`, l);
  }
  if (exact)
    t.equal(letters.length, stream.invalid.length, `the DLQ holds exactly ${stream.invalid.length} records`);
  t.equal(
    bySource.size,
    stream.invalid.length,
    `${stream.invalid.length} distinct source records dead-lettered`,
  );
  const byKey = new Map<string, DlqRecord>();
  for (const l of bySource.values()) byKey.set(l.key?.toString() ?? '', l);
  let wrong = 0;
  for (const r of stream.invalid) {
    const l = byKey.get(r.key);
    const want = r.invalid;
    const ok =
      l !== undefined &&
      want !== undefined &&
      l.value !== null &&
      l.value.equals(r.value) &&
      l.headers['test-origin'] === r.key &&
      l.headers[DLQ_HEADERS.errorCode] === want.code &&
      (l.headers[DLQ_HEADERS.error] ?? '').includes(want.field) &&
      l.headers[DLQ_HEADERS.sourceTopic] === topic &&
      /^\d+$/.test(l.headers[DLQ_HEADERS.sourcePartition] ?? '') &&
      /^\d+$/.test(l.headers[DLQ_HEADERS.sourceOffset] ?? '');
    if (!ok) {
      wrong++;
      if (wrong <= 5) t.comment('dead letter not as expected', r.key, want, l?.headers);
    }
  }
  t.equal(wrong, 0, 'each invalid record dead-lettered with its bytes, key, headers and error headers');
  const kinds = new Set(stream.invalid.map((r) => r.invalid?.kind));
  t.equal(kinds.size, 4, 'of four kinds: not JSON, wrong schema version, missing field, wrong type');
}

// ---------------------------------------------------------------------------------------------
// The indexer process

export type IndexerProcess = ServiceProcess;

export interface IndexerRunOptions {
  names: Names;
  brokers?: string[];
  elasticsearchUrl?: string;
  env?: Record<string, string>;
}

export function indexerEnv(o: IndexerRunOptions, opsPort: number): Record<string, string> {
  return {
    PODMORTEM_INDEXER_KAFKA_BROKERS: (o.brokers ?? stack.kafkaBrokers).join(','),
    PODMORTEM_INDEXER_ELASTICSEARCH_URL: o.elasticsearchUrl ?? stack.elasticsearchUrl,
    PODMORTEM_INDEXER_TOPIC: o.names.topic,
    PODMORTEM_INDEXER_ANALYSIS_TOPIC: o.names.analyses,
    PODMORTEM_INDEXER_DUMP_REMOVAL_TOPIC: o.names.removals,
    PODMORTEM_INDEXER_DLQ_TOPIC: o.names.dlq,
    // Topics the indexer only creates when missing: the test's own names, not the defaults.
    PODMORTEM_INDEXER_ANALYSIS_REQUEST_TOPIC: o.names.requests,
    PODMORTEM_INDEXER_DUMP_DELETION_TOPIC: o.names.deletions,
    PODMORTEM_INDEXER_GROUP_ID: o.names.group,
    PODMORTEM_INDEXER_INDEX_ALIAS: o.names.alias,
    PODMORTEM_INDEXER_OPS_HOST: '127.0.0.1',
    PODMORTEM_INDEXER_OPS_PORT: String(opsPort),
    PODMORTEM_INDEXER_SESSION_TIMEOUT_MS: '10000',
    PODMORTEM_INDEXER_HEARTBEAT_INTERVAL_MS: '1000',
    PODMORTEM_INDEXER_RETRY_MAX_MS: '2000',
    ...o.env,
  };
}

export function startIndexer(o: IndexerRunOptions): Promise<IndexerProcess> {
  return startService('indexer/src/main.ts', (opsPort) => indexerEnv(o, opsPort));
}

export const stopIndexer = stopService;

/**
 * A test's own crash, analysis and DLQ topics (created now) and index set, all removed in its teardown;
 * returns the connected admin client.
 */
export async function topicsForTest(
  t: Test,
  kafka: Kafka,
  es: Client,
  names: Names,
  partitions: number,
): Promise<Admin> {
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(async () => {
    await admin
      .deleteTopics({
        topics: [names.topic, names.analyses, names.requests, names.removals, names.deletions, names.dlq],
      })
      .catch(() => undefined);
    await admin.disconnect();
    await removeIndexSet(es, names.alias);
  });
  await createTopics(admin, names, partitions);
  return admin;
}

/** The issue's stream: 9,000 unique crashes over two months, 1,000 duplicates, 100 invalid records. */
export function issueStream(seed: number) {
  return crashStream({
    unique: 9000,
    duplicates: 1000,
    invalid: 100,
    months: [monthsAgo(0), monthsAgo(1)],
    seed,
  });
}
