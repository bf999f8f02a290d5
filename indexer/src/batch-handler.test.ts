import { setTimeout as sleep } from 'node:timers/promises';
import {
  encodeAnalysisMessage,
  encodeCrashMessage,
  validExamples,
  type AnalysisResult,
  type CrashEvent,
} from '@podmortem/contract';
import type { KafkaMessage } from 'kafkajs';
import { pino } from 'pino';
import { Registry, type Gauge } from 'prom-client';
import t from 'tap';
import {
  chunkMessages,
  createBatchHandler,
  lagAfter,
  nextOffset,
  splitDecoded,
  type BatchHandlerParams,
  type BatchPayload,
} from './batch-handler.ts';
import type { BulkItem, BulkWriteResult, WriteOptions } from './bulk-writer.ts';
import type { DeadLetter, SendOptions } from './dead-letter.ts';
import { createTelemetry, type IndexerTelemetry } from './telemetry.ts';

// The batch handler's logic against in-process fakes of what it is given (the kafkajs payload,
// the bulk writer, the dead-letter writer): the real Kafka and Elasticsearch are in
// test/indexer-*.test.ts. Every fake writes what it is asked to one event list, so a test reads
// the order of bulk writes, dead letters, pauses and commits.

const TOPIC = 'crashes';
const PARTITION = 3;

function message(offset: number, value: Buffer | null): KafkaMessage {
  return { key: null, value, timestamp: '0', attributes: 0, offset: String(offset), headers: {} };
}

const examples = validExamples().map((e) => e.event);
function example(i: number): CrashEvent {
  const event = examples[i % examples.length];
  if (!event) throw new Error('the contract ships valid examples');
  return event;
}
const valid = (offset: number, i = offset): KafkaMessage => message(offset, encodeCrashMessage(example(i)));
const notJson = (offset: number): KafkaMessage => message(offset, Buffer.from('{not json'));

const offsets = (chunks: KafkaMessage[][]) => chunks.map((c) => c.map((m) => Number(m.offset)));

t.test('chunks hold at most maxRecords records, in order', async (t) => {
  const ms = Array.from({ length: 7 }, (_, i) => message(i, Buffer.alloc(10)));
  t.same(offsets(chunkMessages(ms, 3, 1e6)), [[0, 1, 2], [3, 4, 5], [6]]);
  t.same(chunkMessages([], 3, 1e6), []);
});

t.test('chunks stay within maxBytes; a bigger record goes alone', async (t) => {
  const sizes = [40, 40, 40, 500, 10];
  const ms = sizes.map((size, i) => message(i, Buffer.alloc(size)));
  t.same(offsets(chunkMessages(ms, 100, 100)), [[0, 1], [2], [3], [4]]);
});

t.test('decoding splits a chunk into bulk items and dead letters, in order', async (t) => {
  const invalid = message(13, Buffer.from(JSON.stringify({ specversion: '1.0' })));
  const chunk = [valid(10, 0), notJson(11), valid(12, 1), invalid];
  const { items, letters } = splitDecoded(chunk, 'podmortem-crashes', { topic: TOPIC, partition: PARTITION });
  t.same(
    items.map((i) => [i.id, i.index, i.ref.offset]),
    [
      [example(0).crash.id, 'podmortem-crashes-2026.11', '10'],
      [example(1).crash.id, 'podmortem-crashes-2026.11', '12'],
    ],
  );
  t.same(items[0]?.document, example(0), 'the event as decoded');
  t.equal(items[1]?.ref, chunk[2], 'each item keeps its record');
  t.same(
    letters.map((l) => [l.topic, l.partition, l.message.offset, l.code]),
    [
      [TOPIC, PARTITION, '11', 'PM_ERR_RECORD_NOT_JSON'],
      [TOPIC, PARTITION, '13', 'PM_ERR_RECORD_INVALID'],
    ],
  );
  t.equal(letters[0]?.message, chunk[1], 'a letter carries its record unchanged');
  t.match(letters[0]?.error, /^\(record\):/, 'and why it can never be indexed');
});

t.test('the committed offset is the next one, and the lag never negative', async (t) => {
  t.equal(nextOffset('41'), '42');
  t.equal(nextOffset('9007199254740993'), '9007199254740994', 'beyond a double, exactly');
  t.equal(lagAfter('20', '14'), 6);
  t.equal(lagAfter('14', '14'), 0);
  t.equal(lagAfter('10', '14'), 0);
});

/** What a bulk write does once the fake has logged it. */
type BulkScript = (
  items: BulkItem<unknown>[],
  options: WriteOptions,
) => Promise<{ id: string; error: string }[]>;
type SendScript = (letters: DeadLetter[], options: SendOptions) => Promise<void>;

interface Fakes {
  events: string[];
  telemetry: IndexerTelemetry;
  /** Set per test: what the writers do (by default, everything is acknowledged). */
  bulk: { script: BulkScript };
  dlq: { script: SendScript; letters: DeadLetter[] };
  abandon: AbortController;
  stopping: boolean;
  params: BatchHandlerParams;
}

function fakes(overrides: Partial<BatchHandlerParams> = {}): Fakes {
  const events: string[] = [];
  const telemetry = createTelemetry(new Registry(), false);
  const bulk = { script: (() => Promise.resolve([])) as BulkScript };
  const dlq = { script: (() => Promise.resolve()) as SendScript, letters: [] as DeadLetter[] };
  const abandon = new AbortController();
  const f: Fakes = {
    events,
    telemetry,
    bulk,
    dlq,
    abandon,
    stopping: false,
    params: {
      alias: 'podmortem-crashes',
      bulk: {
        async write<R>(items: BulkItem<R>[], options: WriteOptions): Promise<BulkWriteResult<R>> {
          events.push(`bulk ${items.length}`);
          const rejectedIds = await bulk.script(items, options);
          const reasonOf = (item: BulkItem<R>) => rejectedIds.find((r) => r.id === item.id)?.error;
          return {
            indexed: items
              .filter((i) => reasonOf(i) === undefined)
              .map((item) => ({ item, result: 'created' })),
            rejected: items.flatMap((item) => {
              const error = reasonOf(item);
              return error === undefined ? [] : [{ item, error }];
            }),
          };
        },
      },
      analyses: {
        topic: 'podmortem.analyses',
        merger: {
          write: () => Promise.reject(new Error('this fake takes crash batches only')),
        },
      },
      deadLetter: {
        async send(letters, options) {
          events.push(`dlq ${letters.map((l) => `${l.message.offset}:${l.code}`).join(' ')}`.trimEnd());
          dlq.letters.push(...letters);
          await dlq.script(letters, options);
        },
      },
      telemetry,
      logger: pino({ level: 'silent' }),
      bulkMaxRecords: 100,
      bulkMaxBytes: 1e6,
      heartbeatIntervalMs: 3000,
      stopping: () => f.stopping,
      abandonSignal: abandon.signal,
      ...overrides,
    },
  };
  return f;
}

function payload(
  f: Fakes,
  messages: KafkaMessage[],
  overrides: Partial<Omit<BatchPayload, 'batch'>> = {},
): BatchPayload {
  return {
    batch: { topic: TOPIC, partition: PARTITION, highWatermark: '20', messages },
    heartbeat: () => Promise.resolve(),
    pause: () => {
      f.events.push('pause');
      return () => f.events.push('resume');
    },
    resolveOffset: (offset) => f.events.push(`resolve ${offset}`),
    commitOffsetsIfNecessary: (offsets) => {
      const [topic] = offsets?.topics ?? [];
      const parts = topic?.partitions.map((p) => `${topic.topic}/${p.partition}@${p.offset}`) ?? [];
      f.events.push(`commit ${parts.join(' ')}`);
      return Promise.resolve();
    },
    isRunning: () => true,
    isStale: () => false,
    ...overrides,
  };
}

async function gauge(g: Gauge<'operation'>, operation: string): Promise<number> {
  const { values } = await g.get();
  return values.find((v) => v.labels.operation === operation)?.value ?? 0;
}

/** Rejects with the signal's reason once it is aborted, as the real writers do. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
  });
}

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(1);
}

t.test('a chunk is committed only after Elasticsearch and the DLQ acknowledged it', async (t) => {
  const f = fakes();
  const rejectedId = example(2).crash.id;
  f.bulk.script = () => Promise.resolve([{ id: rejectedId, error: 'mapper_parsing_exception: bad field' }]);
  const handler = createBatchHandler(f.params);
  await handler.handle(payload(f, [valid(10, 0), notJson(11), valid(12, 2), valid(13, 1)]));
  t.same(f.events, [
    'bulk 3',
    'dlq 11:PM_ERR_RECORD_NOT_JSON 12:PM_ERR_ES_REJECTED',
    'resolve 13',
    `commit ${TOPIC}/${PARTITION}@14`,
  ]);
  t.match(f.dlq.letters[1], {
    topic: TOPIC,
    partition: PARTITION,
    error: 'mapper_parsing_exception: bad field',
  });
  t.equal((await f.telemetry.consumed.get()).values[0]?.value, 4);
  t.equal((await f.telemetry.committed.get()).values[0]?.value, 4);
  t.same((await f.telemetry.consumerLag.get()).values[0], {
    value: 6,
    labels: { topic: TOPIC, partition: String(PARTITION) },
  });
  t.equal(handler.waiting, 0);
  t.equal(handler.inFlight, 0);
});

t.test('the DLQ is asked even when a chunk has no letters', async (t) => {
  const f = fakes();
  await createBatchHandler(f.params).handle(payload(f, [valid(0)]));
  t.same(f.events, ['bulk 1', 'dlq', 'resolve 0', `commit ${TOPIC}/${PARTITION}@1`]);
});

t.test('each chunk of a batch is written and committed before the next starts', async (t) => {
  const f = fakes({ bulkMaxRecords: 2 });
  await createBatchHandler(f.params).handle(
    payload(
      f,
      [0, 1, 2, 3, 4].map((o) => valid(o)),
    ),
  );
  const commit = (o: number) => `commit ${TOPIC}/${PARTITION}@${o}`;
  t.same(f.events, [
    ...['bulk 2', 'dlq', 'resolve 1', commit(2)],
    ...['bulk 2', 'dlq', 'resolve 3', commit(4)],
    ...['bulk 1', 'dlq', 'resolve 4', commit(5)],
  ]);
});

t.test('a failed write commits nothing and ends the batch with its error', async (t) => {
  const f = fakes({ bulkMaxRecords: 1 });
  f.bulk.script = () => Promise.reject(new Error('bulk broke'));
  await t.rejects(createBatchHandler(f.params).handle(payload(f, [valid(0), valid(1)])), {
    message: 'bulk broke',
  });
  t.same(f.events, ['bulk 1'], 'no letters, no offsets, no second chunk');

  const g = fakes();
  g.dlq.script = () => Promise.reject(new Error('dlq broke'));
  await t.rejects(createBatchHandler(g.params).handle(payload(g, [notJson(0)])), { message: 'dlq broke' });
  t.same(g.events, ['bulk 0', 'dlq 0:PM_ERR_RECORD_NOT_JSON']);
});

t.test(
  'while Elasticsearch is retried the partition is paused, once, until the chunk is acknowledged',
  async (t) => {
    const f = fakes();
    let release = () => {};
    f.bulk.script = async (_items, options) => {
      for (let i = 0; i < 3; i++) options.onRetry?.();
      await new Promise<void>((resolve) => (release = resolve));
      return [];
    };
    f.dlq.script = async (_letters, options) => options.onRetry?.();
    const handler = createBatchHandler(f.params);
    const handled = handler.handle(payload(f, [valid(0), notJson(1)]));
    await waitFor(() => f.events.includes('pause'));
    t.equal(handler.waiting, 1);
    t.equal(await gauge(f.telemetry.waiting, 'elasticsearch'), 1);
    release();
    await handled;
    t.same(f.events, [
      'bulk 1',
      'pause',
      'dlq 1:PM_ERR_RECORD_NOT_JSON',
      'resume',
      'resolve 1',
      `commit ${TOPIC}/${PARTITION}@2`,
    ]);
    t.equal(handler.waiting, 0);
    t.equal(await gauge(f.telemetry.waiting, 'elasticsearch'), 0);
  },
);

t.test('a DLQ being retried pauses the partition too', async (t) => {
  const f = fakes();
  let release = () => {};
  f.dlq.script = async (_letters, options) => {
    options.onRetry?.();
    await new Promise<void>((resolve) => (release = resolve));
  };
  const handler = createBatchHandler(f.params);
  const handled = handler.handle(payload(f, [notJson(0)]));
  await waitFor(() => f.events.includes('pause'));
  t.equal(await gauge(f.telemetry.waiting, 'dlq'), 1);
  release();
  await handled;
  t.same(f.events, [
    'bulk 0',
    'dlq 0:PM_ERR_RECORD_NOT_JSON',
    'pause',
    'resume',
    'resolve 0',
    `commit ${TOPIC}/${PARTITION}@1`,
  ]);
  t.equal(await gauge(f.telemetry.waiting, 'dlq'), 0);
});

t.test('at the shutdown deadline a waiting chunk is abandoned uncommitted', async (t) => {
  const f = fakes({ bulkMaxRecords: 1 });
  f.bulk.script = (_items, options) => {
    options.onRetry?.();
    return untilAborted(options.signal);
  };
  const handler = createBatchHandler(f.params);
  const handled = handler.handle(payload(f, [valid(0), valid(1)]));
  await waitFor(() => handler.waiting === 1);
  t.equal(handler.inFlight, 1);
  let idle = false;
  void handler.idle().then(() => (idle = true));
  await sleep(5);
  t.notOk(idle, 'a chunk is in flight');
  f.abandon.abort(new Error('shutdown deadline'));
  await handled;
  t.ok(idle, 'idle once the chunk is given up');
  t.same(f.events, ['bulk 1', 'pause', 'resume'], 'no offset, no second chunk');
  t.equal(handler.waiting, 0);
  t.equal(handler.inFlight, 0);
});

t.test('a failed heartbeat abandons a waiting chunk and ends the batch with it', async (t) => {
  const f = fakes({ heartbeatIntervalMs: 2 });
  f.bulk.script = (_items, options) => {
    options.onRetry?.();
    return untilAborted(options.signal);
  };
  const rebalance = new Error('The group is rebalancing');
  const p = payload(f, [valid(0)], { heartbeat: () => Promise.reject(rebalance) });
  await t.rejects(createBatchHandler(f.params).handle(p), rebalance);
  t.same(f.events, ['bulk 1', 'pause', 'resume'], 'nothing committed');
});

t.test('a failed heartbeat lets a moving chunk commit, then ends the batch with it', async (t) => {
  const f = fakes({ heartbeatIntervalMs: 2, bulkMaxRecords: 1 });
  const rebalance = new Error('The group is rebalancing');
  let heartbeats = 0;
  const heartbeat = () => {
    heartbeats++;
    return Promise.reject(rebalance);
  };
  f.bulk.script = async () => {
    await waitFor(() => heartbeats > 0);
    await sleep(1);
    return [];
  };
  const p = payload(f, [valid(0), valid(1)], { heartbeat });
  await t.rejects(createBatchHandler(f.params).handle(p), rebalance);
  t.same(f.events, ['bulk 1', 'dlq', 'resolve 0', `commit ${TOPIC}/${PARTITION}@1`], 'no second chunk');
});

t.test('no chunk starts once the indexer stops or the batch is no longer current', async (t) => {
  const stopped = fakes();
  stopped.stopping = true;
  await createBatchHandler(stopped.params).handle(payload(stopped, [valid(0)]));
  t.same(stopped.events, [], 'stopping');

  for (const [why, overrides] of [
    ['not running', { isRunning: () => false }],
    ['stale', { isStale: () => true }],
  ] as const) {
    const f = fakes();
    await createBatchHandler(f.params).handle(payload(f, [valid(0)], overrides));
    t.same(f.events, [], why);
  }

  const midway = fakes({ bulkMaxRecords: 1 });
  midway.bulk.script = () => {
    midway.stopping = true;
    return Promise.resolve([]);
  };
  await createBatchHandler(midway.params).handle(payload(midway, [valid(0), valid(1)]));
  t.same(
    midway.events,
    ['bulk 1', 'dlq', 'resolve 0', `commit ${TOPIC}/${PARTITION}@1`],
    'the chunk in flight finishes',
  );
});

t.test('idle() resolves at once when no chunk is in flight', async (t) => {
  const f = fakes();
  const handler = createBatchHandler(f.params);
  t.equal(handler.inFlight, 0);
  await handler.idle();
  t.pass();
});

t.test('a chunk of the analysis topic is merged, its bad and rejected records dead-lettered', async (t) => {
  const analysis = {
    status: 'ok',
    analyzed_at: '2026-11-20T12:00:01Z',
    analyzer: '0.2.0',
  } as const satisfies AnalysisResult;
  const analysisOf = (offset: number, i: number) =>
    message(offset, encodeAnalysisMessage(example(i), analysis));
  const merged: string[] = [];
  const f = fakes({
    analyses: {
      topic: 'analyses',
      merger: {
        write(items) {
          f.events.push(`merge ${items.length}`);
          merged.push(...items.map((i) => `${i.index} ${i.record.crash.id}`));
          const rejected = items.filter((i) => i.record.crash.id === example(1).crash.id);
          return Promise.resolve({
            rejected: rejected.map((item) => ({ item, error: 'mapper_parsing_exception' })),
          });
        },
      },
    },
  });
  const handler = createBatchHandler(f.params);
  const chunk = [analysisOf(20, 0), valid(21, 0), analysisOf(22, 1), notJson(23)];
  await handler.handle({
    ...payload(f, chunk),
    batch: { topic: 'analyses', partition: 1, highWatermark: '24', messages: chunk },
  });
  t.same(f.events, [
    'merge 2',
    'dlq 21:PM_ERR_RECORD_INVALID 23:PM_ERR_RECORD_NOT_JSON 22:PM_ERR_ES_REJECTED',
    'resolve 23',
    'commit analyses/1@24',
  ]);
  t.same(
    merged,
    [
      `podmortem-crashes-${example(0)['@timestamp'].slice(0, 7).replace('-', '.')} ${example(0).crash.id}`,
      `podmortem-crashes-${example(1)['@timestamp'].slice(0, 7).replace('-', '.')} ${example(1).crash.id}`,
    ],
    "each in the index of its crash's month",
  );
  t.match(f.dlq.letters[0], {
    topic: 'analyses',
    partition: 1,
    error: /^type: must be "io.podmortem.analysis.v1"/,
  });
});
