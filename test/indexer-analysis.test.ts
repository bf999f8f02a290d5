import t from 'tap';
import {
  analysisRecordOf,
  crashIndexFor,
  crashKey,
  DLQ_HEADERS,
  encodeAnalysisMessage,
  encodeCrashMessage,
  toAnalysisCloudEvent,
  validExamples,
  type AnalysisResult,
  type CrashEvent,
} from '@podmortem/contract';
import {
  crashEvent,
  groupProgress,
  monthsAgo,
  produce,
  readDlq,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  topicsForTest,
  uniqueNames,
  type StreamRecord,
} from './support/indexer-harness.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';

// The analysis records of the analyzer merged into their crashes' documents by the indexer as it
// runs in production, against the real Kafka and Elasticsearch: in either order of arrival,
// re-delivered, out of date, and invalid.

const names = uniqueNames('pm-idx-analysis');
const kafka = testKafka();
const es = testElasticsearch();
const podUids = ['5f0c8a52-8d7e-4c11-9f70-3f2b6c7d8e01', '0b7e2c1d-3a4f-4e5d-9c8b-7a6f5e4d3c2b'];

/** The pod example (its collector part of analysis: modules, build_id, frames, title, signature). */
function podCrash(i: number): CrashEvent {
  const pod = validExamples().find((e) => e.name === 'segv-stored')?.event;
  if (!pod) throw new Error('examples missing');
  const event = crashEvent(i, monthsAgo(i % 2), podUids);
  return { ...event, kubernetes: structuredClone(pod.kubernetes), analysis: structuredClone(pod.analysis) };
}

function hostCrash(i: number): CrashEvent {
  const host = validExamples().find((e) => e.name === 'host-process')?.event;
  if (!host) throw new Error('examples missing');
  const event = crashEvent(i, monthsAgo(0), podUids);
  return { ...structuredClone(host), '@timestamp': event['@timestamp'], crash: event.crash };
}

function analysis(
  crash: CrashEvent,
  second: number,
  status: AnalysisResult['status'] = 'ok',
): AnalysisResult {
  const analyzedAt = new Date(Date.parse(crash['@timestamp']) + second * 1000).toISOString();
  if (status !== 'ok') {
    return { status, reason: `no-dump: at ${second}s`, analyzed_at: analyzedAt, analyzer: '0.2.0' };
  }
  return {
    status,
    analyzed_at: analyzedAt,
    analyzer: '0.2.0',
    signature: second.toString(16).padStart(32, '0'),
    title: `SIGSEGV in parse_header (segv.c:${second})`,
    frames: [{ module: 'segv', function: 'parse_header', offset: 4485, file: '/src/segv.c', line: second }],
    threads: [
      {
        tid: 7,
        crashing: true,
        frames: [{ module: 'segv', function: 'parse_header', offset: 4485, file: '/src/segv.c', line: 4 }],
        truncated: false,
      },
      { tid: 8, name: 'worker', crashing: false, frames: [{ module: 'libc.so.6', offset: 1234 }] },
    ],
  };
}

const crashRecord = (e: CrashEvent): StreamRecord => ({ key: crashKey(e), value: encodeCrashMessage(e) });
const analysisRecord = (e: CrashEvent, second: number, status?: AnalysisResult['status']): StreamRecord => ({
  key: crashKey(e),
  value: encodeAnalysisMessage(e, analysis(e, second, status)),
});

/** The crash's document once `a` is its newest analysis: the collector's fields and a's. */
function merged(crash: CrashEvent, a: AnalysisResult): object {
  const modules = crash.analysis?.modules;
  const buildId = crash.analysis?.build_id;
  return {
    ...crash,
    analysis: { ...(modules ? { modules } : {}), ...(buildId ? { build_id: buildId } : {}), ...a },
  };
}

async function documentOf(crash: CrashEvent): Promise<unknown> {
  const doc = await es.get({ index: crashIndexFor(crash['@timestamp'], names.alias), id: crash.crash.id });
  return doc._source;
}

t.test(
  'analyses merge into their crash in any order; the newest wins; bad ones are dead-lettered',
  async (t) => {
    const admin = await topicsForTest(t, kafka, es, names, 3);
    const indexer = await startIndexer({ names });
    t.teardown(() => stopIndexer(indexer));
    t.teardown(() => {
      if (!t.passing()) t.comment(indexer.logs.slice(-40).join('\n'));
    });
    await until('the indexer ready', () => indexer.ready());

    const settled = async (topic: string) =>
      until(
        `${topic} committed to the end`,
        async () => (await groupProgress(admin, names.group, topic)).behind === 0,
      );
    const send = async (topic: string, records: StreamRecord[]) => {
      await produce(kafka, topic, records);
      await settled(topic);
    };

    const first = podCrash(1); // its analysis comes first
    const second = podCrash(2); // its crash comes first; then a newer failed analysis
    const third = podCrash(3); // analysed, then its crash and an older analysis re-delivered
    const fourth = podCrash(4); // two analyses in one batch, the newer one first
    const host = hostCrash(5); // no pod: keyed by its node; its analysis comes first

    await send(names.analyses, [analysisRecord(first, 10), analysisRecord(host, 10)]);
    t.equal(await searchableCount(es, names.alias), 2, 'an analysis before its crash makes a document');
    t.same(
      await documentOf(first),
      {
        '@timestamp': first['@timestamp'],
        crash: first.crash,
        kubernetes: { namespace: first.kubernetes?.namespace, pod: { uid: first.kubernetes?.pod.uid } },
        analysis: analysis(first, 10),
      },
      "which holds the crash's id, time, namespace and the analysis until the crash arrives",
    );

    await send(names.topic, [crashRecord(first), crashRecord(second), crashRecord(third), crashRecord(host)]);
    t.same(await documentOf(first), merged(first, analysis(first, 10)), 'analysis first, then crash: merged');
    t.same(await documentOf(host), merged(host, analysis(host, 10)), 'a host crash likewise');
    t.same(await documentOf(second), second, 'a crash before any analysis: as the collector sent it');

    await send(names.analyses, [analysisRecord(second, 10), analysisRecord(third, 20)]);
    t.same(
      await documentOf(second),
      merged(second, analysis(second, 10)),
      'crash first, then analysis: merged',
    );

    await send(names.analyses, [analysisRecord(second, 30, 'failed')]);
    t.same(
      await documentOf(second),
      merged(second, analysis(second, 30, 'failed')),
      "a newer analysis replaces all of the older one's fields: no thread of it is left",
    );

    await send(names.topic, [crashRecord(third)]);
    t.same(
      await documentOf(third),
      merged(third, analysis(third, 20)),
      'a re-delivered crash keeps the analysis',
    );
    await send(names.analyses, [analysisRecord(third, 15), analysisRecord(third, 20)]);
    t.same(
      await documentOf(third),
      merged(third, analysis(third, 20)),
      'an older analysis and a re-delivered one change nothing',
    );

    await send(names.topic, [crashRecord(fourth)]);
    await send(names.analyses, [analysisRecord(fourth, 40), analysisRecord(fourth, 35)]);
    t.same(await documentOf(fourth), merged(fourth, analysis(fourth, 40)), 'of two at once, the newer wins');

    const good = toAnalysisCloudEvent(analysisRecordOf(first, analysis(first, 50)));
    const bad: StreamRecord[] = [
      { key: 'bad/garbage', value: Buffer.from([0xde, 0xad, 0xbe, 0xef]) },
      { key: 'bad/type', value: encodeCrashMessage(first) },
      {
        key: 'bad/fields',
        value: Buffer.from(JSON.stringify({ ...good, data: { ...good.data, process: first.process } })),
      },
      {
        key: 'bad/modules',
        value: Buffer.from(
          JSON.stringify({
            ...good,
            data: { ...good.data, analysis: { ...good.data.analysis, modules: [] } },
          }),
        ),
      },
    ];
    await send(names.analyses, bad);
    t.same(
      await documentOf(first),
      merged(first, analysis(first, 10)),
      'no invalid record reached a document',
    );
    t.equal(await searchableCount(es, names.alias), 5, 'one document per crash');

    const letters = await readDlq(kafka, names.dlq);
    t.equal(letters.length, 4, 'each invalid analysis record dead-lettered once');
    const expected: [string, string, string][] = [
      ['bad/garbage', 'PM_ERR_RECORD_NOT_JSON', '(record): not JSON'],
      ['bad/type', 'PM_ERR_RECORD_INVALID', 'type: must be "io.podmortem.analysis.v1"'],
      ['bad/fields', 'PM_ERR_RECORD_INVALID', 'data.process: is not a field of analysis record v1'],
      ['bad/modules', 'PM_ERR_RECORD_INVALID', 'data.analysis.modules: is not a field of analysis record v1'],
    ];
    for (const [key, code, error] of expected) {
      const letter = letters.find((l) => l.key?.toString() === key);
      const sent = bad.find((b) => b.key === key);
      t.ok(letter && sent && letter.value?.equals(sent.value), `${key}: its very bytes`);
      t.match(
        letter?.headers,
        {
          [DLQ_HEADERS.errorCode]: code,
          [DLQ_HEADERS.sourceTopic]: names.analyses,
          [DLQ_HEADERS.sourcePartition]: /^\d$/,
          [DLQ_HEADERS.sourceOffset]: /^\d+$/,
          'test-origin': key,
        },
        `${key}: headers say why and where from`,
      );
      t.ok(
        letter?.headers[DLQ_HEADERS.error]?.startsWith(error),
        `${key}: ${letter?.headers[DLQ_HEADERS.error]}`,
      );
    }

    const metrics = await indexer.metrics();
    const mergedCount = (result: string) =>
      metricValue(metrics, 'podmortem_indexer_analyses_merged_total', { result });
    t.same(
      ['created', 'updated', 'stale', 'noop'].map(mergedCount),
      [2, 4, 2, 1],
      'merged: 2 before their crash, 4 into it, 2 out of date, 1 re-delivery',
    );
    t.equal(metricValue(metrics, 'podmortem_indexer_records_indexed_total'), 6, 'crash records written');
    t.equal(metricValue(metrics, 'podmortem_indexer_records_dead_lettered_total'), 4, 'dead-lettered');
    t.equal(
      metricValue(metrics, 'podmortem_indexer_offsets_committed_total', { topic: names.analyses }),
      13,
      'every analysis record committed',
    );
  },
);
