import t from 'tap';
import { analysisRecordOf, validateAnalysisRecord, type AnalysisResult } from './analysis-record.ts';
import { validateCrashEvent } from './validate.ts';
import { validExamples } from './examples.ts';

const pod = validExamples().find((e) => e.name === 'segv-stored')?.event;
if (!pod) throw new Error('examples missing');

const result: AnalysisResult = {
  status: 'ok',
  analyzed_at: '2026-03-04T05:06:08.123Z',
  analyzer: '0.1.0',
  signature: '0123456789abcdef0123456789abcdef',
  title: 'SIGSEGV in parse_header (segv.c:4)',
  frames: [
    { module: 'segv', function: 'parse_header', offset: 4485, file: '/src/segv.c', line: 4, column: 11 },
  ],
  threads: [{ tid: 7, crashing: true, frames: [{ function: 'parse_header', line: 4 }], truncated: false }],
};

t.test('the record of an analysis carries what the indexer merges by, and the analysis', async (t) => {
  const record = analysisRecordOf(pod, result);
  t.same(record, {
    schema_version: 1,
    '@timestamp': pod['@timestamp'],
    crash: { id: pod.crash.id },
    kubernetes: { namespace: pod.kubernetes?.namespace, pod: { uid: pod.kubernetes?.pod.uid } },
    collector: { node: pod.collector.node },
    analysis: result,
  });
  t.same(validateAnalysisRecord(record), { ok: true, value: record });
});

t.test("the collector's fields of analysis never travel in an analysis record", async (t) => {
  const withModules = { ...result, modules: [{ path: '/bin/segv' }], build_id: 'abcd' };
  const record = analysisRecordOf(pod, withModules);
  t.same(Object.keys(record.analysis).sort(), Object.keys(result).sort());
});

t.test('a host crash has no kubernetes part', async (t) => {
  const host = validExamples().find((e) => e.name === 'host-process')?.event;
  if (!host) throw new Error('examples missing');
  const record = analysisRecordOf(host, result);
  t.notOk('kubernetes' in record);
  t.ok(validateAnalysisRecord(record).ok);
});

t.test('bad records are rejected with the field named', async (t) => {
  const record = analysisRecordOf(pod, result);
  const cases: [string, unknown, string][] = [
    ['no status', { ...record, analysis: { ...result, status: undefined } }, 'analysis.status: is required'],
    [
      'unknown status',
      { ...record, analysis: { ...result, status: 'done' } },
      'analysis.status: must be one of',
    ],
    ['no analyzed_at', { ...record, analysis: { analyzer: '1', status: 'ok' } }, 'analysis.analyzed_at'],
    [
      'bad analyzed_at',
      { ...record, analysis: { ...result, analyzed_at: 'yesterday' } },
      'analysis.analyzed_at',
    ],
    ['modules', { ...record, analysis: { ...result, modules: [] } }, 'analysis.modules: is not a field of'],
    ['crash fields', { ...record, process: { pid: 1 } }, 'process: is not a field of analysis record v1'],
    ['bad crash id', { ...record, crash: { id: 'x' } }, 'crash.id'],
    [
      'too many threads',
      {
        ...record,
        analysis: { ...result, threads: Array.from({ length: 1025 }, () => result.threads?.[0]) },
      },
      'analysis.threads',
    ],
    [
      'thread without frames',
      { ...record, analysis: { ...result, threads: [{ tid: 1, crashing: true }] } },
      'analysis.threads.0.frames',
    ],
  ];
  for (const [name, value, expected] of cases) {
    const checked = validateAnalysisRecord(JSON.parse(JSON.stringify(value)));
    t.equal(checked.ok, false, `${name} rejected`);
    if (!checked.ok)
      t.ok(
        checked.errors.some((e) => e.startsWith(expected)),
        `${name}: ${checked.errors.join('; ')}`,
      );
  }
});

t.test("a crash event may carry the analyzer's fields too (the indexed document does)", async (t) => {
  const merged = { ...pod, analysis: { ...pod.analysis, ...result } };
  t.same(validateCrashEvent(merged), { ok: true, value: merged });
});

t.test('an analysis record names its namespace and node as Kubernetes does', async (t) => {
  const record = analysisRecordOf(pod, {
    status: 'ok',
    analyzed_at: '2026-10-03T10:16:00.000Z',
    analyzer: '1',
  });
  t.equal(validateAnalysisRecord(record).ok, true, 'the example is valid');
  for (const [what, bad] of [
    [
      'namespace "../team-b"',
      { ...record, kubernetes: { namespace: '../team-b', pod: { uid: pod.kubernetes?.pod.uid ?? '' } } },
    ],
    ['node "a/b"', { ...record, collector: { node: 'a/b' } }],
  ] as const) {
    t.equal(validateAnalysisRecord(bad).ok, false, `${what} is refused`);
  }
});
