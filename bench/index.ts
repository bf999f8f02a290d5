import { setTimeout as sleep } from 'node:timers/promises';
import { crashIndexFor, toCloudEvent, crashKey, type CrashEvent } from '@podmortem/contract';
import { createLogger } from '@podmortem/contract/runtime';
import { Partitioners } from 'kafkajs';
import { installCrashTemplates } from '../indexer/src/template-installer.ts';
import { createTelemetry } from '../indexer/src/telemetry.ts';
import {
  crashEvent,
  createTopics,
  removeIndexSet,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  uniqueNames,
} from '../test/support/indexer-harness.ts';
import { until } from '../test/support/poll.ts';

// bench:index — crashes indexed end to end (produced to Kafka → searchable through the alias in
// Elasticsearch, with the indexer running as its own process), against a baseline measured in the
// same run: the same documents bulk-indexed straight into Elasticsearch from this script. Both are
// timed the same way, into an index that exists already: from the first write until the alias
// counts all N documents, with Elasticsearch's own refresh (1 s), which is when users can find
// them. The end-to-end lag of each produced batch is the time from its send to the moment all of
// its documents are searchable.
//
// The lag is measured twice: under the full load above (a backlog builds, so it mostly measures
// queueing), and at a steady rate well below the throughput (BENCH_LAG_RATE events/s for 12 s).
//
// Direct and end-to-end runs alternate for BENCH_ROUNDS rounds, and the medians are compared, so
// that a busy machine weighs on both alike.
//
//   npm run bench:index                      3 rounds of 20,000 crashes, 6 partitions, lag at 500/s
//   BENCH_EVENTS=50000 BENCH_PARTITIONS=12 BENCH_ROUNDS=5 BENCH_LAG_RATE=1000 npm run bench:index

const N = Number(process.env.BENCH_EVENTS ?? 20_000);
const LAG_RATE = Number(process.env.BENCH_LAG_RATE ?? 500);
const LAG_EVENTS = Math.min(N, LAG_RATE * 12);
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 6);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SEND_BATCH = 100;
const BULK = 1000;
const POLL_MS = 50;

const es = testElasticsearch();
const kafka = testKafka();
const month = new Date();
const podUids = Array.from(
  { length: 50 },
  (_, i) => `${String(i).padStart(8, '0')}-8d7e-4c11-9f70-3f2b6c7d8e01`,
);
const events: CrashEvent[] = Array.from({ length: N }, (_, i) => crashEvent(i, month, podUids));
// The events' own month decides the index; keep them all in the current month.
for (const e of events)
  e['@timestamp'] = new Date(Math.min(Date.now(), Date.parse(e['@timestamp']))).toISOString();

/** Times (ms after `start`) at which each batch of SEND_BATCH events (by process.pid) was all searchable. */
async function watchVisibility(alias: string, start: number, count: number, done: () => boolean) {
  const visible = new Map<number, number>();
  const batches = Math.ceil(count / SEND_BATCH);
  while (visible.size < batches && !done()) {
    const res = await es
      .search({
        index: alias,
        size: 0,
        ignore_unavailable: true,
        allow_no_indices: true,
        aggs: {
          b: { histogram: { field: 'process.pid', interval: SEND_BATCH, offset: 1000, min_doc_count: 1 } },
        },
      })
      .catch(() => undefined);
    const now = Date.now() - start;
    const buckets = (
      res?.aggregations as { b?: { buckets: { key: number; doc_count: number }[] } } | undefined
    )?.b?.buckets;
    for (const b of buckets ?? []) {
      const batch = Math.round((b.key - 1000) / SEND_BATCH);
      const size = Math.min(SEND_BATCH, count - batch * SEND_BATCH);
      if (b.doc_count >= size && !visible.has(batch)) visible.set(batch, now);
    }
    await sleep(POLL_MS);
  }
  return visible;
}

async function direct(alias: string): Promise<number> {
  const logger = createLogger('bench', { level: 'silent' });
  await installCrashTemplates({
    es,
    alias,
    shards: 1,
    replicas: 0,
    logger,
    telemetry: createTelemetry(undefined, false),
  });
  const start = Date.now();
  let finished = false;
  const watching = watchVisibility(alias, start, N, () => finished);
  // Two bulks at a time, as the indexer's two partitions consumed concurrently.
  let next = 0;
  const worker = async () => {
    while (next < N) {
      const slice = events.slice(next, next + BULK);
      next += BULK;
      const res = await es.bulk({
        operations: slice.flatMap((e) => [
          { index: { _index: crashIndexFor(e['@timestamp'], alias), _id: e.crash.id } },
          e,
        ]),
      });
      if (res.errors) throw new Error('baseline bulk had errors');
    }
  };
  await Promise.all([worker(), worker()]);
  const visible = await watching;
  finished = true;
  return Math.max(...visible.values());
}

/** `count` events produced as fast as possible, or at `rate` events/s. */
async function endToEnd(
  count: number,
  rate?: number,
): Promise<{ totalMs: number; lags: number[]; produceMs: number }> {
  const names = uniqueNames('pm-bench-idx');
  const admin = kafka.admin();
  await admin.connect();
  await createTopics(admin, names, PARTITIONS);
  const indexer = await startIndexer({ names, env: { LOG_LEVEL: 'warn' } });
  try {
    await until('the indexer ready', () => indexer.ready());
    // The month's index made beforehand (through the template the indexer installed), here and
    // for the baseline: creating an index takes a second or two on this server.
    await es.indices.create({ index: crashIndexFor(month, names.alias) });
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    const start = Date.now();
    let finished = false;
    const watching = watchVisibility(names.alias, start, count, () => finished);
    const sentAt: number[] = [];
    // At full load, batches go five to a request (the idempotent producer has one in flight).
    const perRequest = rate ? 1 : 5;
    for (let b = 0; b * SEND_BATCH < count; b += perRequest) {
      if (rate) {
        const due = (b * SEND_BATCH * 1000) / rate - (Date.now() - start);
        if (due > 0) await sleep(due);
      }
      for (let k = b; k < b + perRequest; k++) sentAt[k] = Date.now() - start;
      await producer.send({
        topic: names.topic,
        acks: -1,
        messages: events
          .slice(b * SEND_BATCH, Math.min(count, (b + perRequest) * SEND_BATCH))
          .map((e) => ({ key: crashKey(e), value: Buffer.from(JSON.stringify(toCloudEvent(e))) })),
      });
    }
    const produceMs = Date.now() - start;
    await producer.disconnect();
    const visible = await watching;
    finished = true;
    const lags = [...visible.entries()].map(([b, at]) => at - (sentAt[b] ?? 0)).sort((a, b) => a - b);
    return { totalMs: Math.max(...visible.values()), lags, produceMs };
  } finally {
    await stopIndexer(indexer);
    await admin.deleteTopics({ topics: [names.topic, names.dlq] }).catch(() => undefined);
    await admin.disconnect();
    await removeIndexSet(es, names.alias);
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
const directAliases: string[] = [];
try {
  process.stdout.write(
    `bench:index — ${N} crashes, ${PARTITIONS} partitions, ${ROUNDS} rounds (direct bulk, then end to end)\n`,
  );
  const directMs: number[] = [];
  const e2eRuns: Awaited<ReturnType<typeof endToEnd>>[] = [];
  const rate = (ms: number) => (N / (ms / 1000)).toFixed(0);
  for (let round = 1; round <= ROUNDS; round++) {
    const alias = uniqueNames('pm-bench-direct').alias;
    directAliases.push(alias);
    const d = await direct(alias);
    await removeIndexSet(es, alias);
    const e = await endToEnd(N);
    directMs.push(d);
    e2eRuns.push(e);
    process.stdout.write(
      `  round ${round}: direct ${rate(d)}/s, end to end ${rate(e.totalMs)}/s (ratio ${(d / e.totalMs).toFixed(2)})\n`,
    );
  }
  const steady = await endToEnd(LAG_EVENTS, LAG_RATE);
  const d = median(directMs);
  const e2eMs = median(e2eRuns.map((r) => r.totalMs));
  const fullLags = e2eRuns.flatMap((r) => r.lags).sort((a, b) => a - b);
  const rows: [string, string][] = [
    ['crashes per run', String(N)],
    [
      'direct bulk into Elasticsearch (baseline), median: crashes/s',
      `${rate(d)}  (${d} ms to all searchable)`,
    ],
    ['end to end (Kafka → indexer → searchable), median: crashes/s', `${rate(e2eMs)}  (${e2eMs} ms)`],
    ['ratio end to end / direct bulk (medians)', (d / e2eMs).toFixed(2)],
    ['producing alone took (median)', `${median(e2eRuns.map((r) => r.produceMs))} ms`],
    [
      `end-to-end lag at full load p50 (per batch of ${SEND_BATCH}, send → searchable)`,
      `${percentile(fullLags, 50)} ms`,
    ],
    ['end-to-end lag at full load p99', `${percentile(fullLags, 99)} ms`],
    [
      `end-to-end lag at a steady ${LAG_RATE}/s (${LAG_EVENTS} crashes) p50`,
      `${percentile(steady.lags, 50)} ms`,
    ],
    [`end-to-end lag at a steady ${LAG_RATE}/s p99`, `${percentile(steady.lags, 99)} ms`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`);
} finally {
  for (const alias of directAliases) await removeIndexSet(es, alias);
  await es.close();
}
