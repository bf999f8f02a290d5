import t from 'tap';
import { analysisRecordOf, validExamples, type AnalysisResult, type CrashEvent } from '@podmortem/contract';
import { crashOperation, crashPartOf, newestPerDocument, planAnalysis } from './crash-merge.ts';

const crash = validExamples().find((e) => e.name === 'segv-stored')?.event;
if (!crash) throw new Error('examples missing');
const withCollectorAnalysis: CrashEvent = {
  ...crash,
  analysis: {
    modules: [{ path: '/bin/segv', build_id: 'ab12' }],
    build_id: 'ab12',
    title: 'SIGSEGV in segv',
  },
};
const analysis = (at: string, title = `at ${at}`): AnalysisResult => ({
  status: 'ok',
  analyzed_at: at,
  analyzer: '0.1.0',
  title,
  threads: [{ tid: 1, crashing: true, frames: [{ function: 'f' }] }],
});
const INDEX = 'podmortem-crashes-2026.03';

t.test("a crash's update keeps an analysis: its partial doc has none of the analyzer's fields", async (t) => {
  const op = crashOperation({ id: crash.crash.id, index: INDEX, document: withCollectorAnalysis });
  t.same(op.meta, { _index: INDEX, _id: crash.crash.id, retry_on_conflict: 3 });
  const rest = Object.fromEntries(Object.entries(withCollectorAnalysis).filter(([k]) => k !== 'analysis'));
  t.same(op.body, {
    doc: { ...rest, analysis: { modules: [{ path: '/bin/segv', build_id: 'ab12' }], build_id: 'ab12' } },
    upsert: withCollectorAnalysis,
  });
  t.same(crashPartOf({ ...crash, analysis: { title: 'x' } }), rest, 'no empty analysis object');
});

t.test('an analysis creates a document of its own when the crash is not there yet', async (t) => {
  const record = analysisRecordOf(crash, analysis('2026-03-04T05:06:09Z'));
  t.same(planAnalysis(record, INDEX, undefined), {
    kind: 'write',
    operation: {
      action: 'create',
      meta: { _index: INDEX, _id: crash.crash.id },
      body: {
        '@timestamp': crash['@timestamp'],
        crash: crash.crash,
        kubernetes: record.kubernetes,
        analysis: record.analysis,
      },
    },
  });
});

t.test("an analysis replaces the analyzer's fields only, conditionally, and only when newer", async (t) => {
  const older = analysis('2026-03-04T05:06:09Z');
  const existing = {
    seqNo: 7,
    primaryTerm: 2,
    source: { ...withCollectorAnalysis, analysis: { ...withCollectorAnalysis.analysis, ...older } },
  };
  const newer = analysis('2026-03-04T05:06:10.5Z');
  const { status, analyzed_at, analyzer, title } = newer;
  const withoutThreads: AnalysisResult = { status, analyzed_at, analyzer, ...(title ? { title } : {}) };
  t.same(planAnalysis(analysisRecordOf(crash, withoutThreads), INDEX, existing), {
    kind: 'write',
    operation: {
      action: 'index',
      meta: { _index: INDEX, _id: crash.crash.id, if_seq_no: 7, if_primary_term: 2 },
      body: {
        ...withCollectorAnalysis,
        analysis: { modules: [{ path: '/bin/segv', build_id: 'ab12' }], build_id: 'ab12', ...withoutThreads },
      },
    },
  });
  t.same(planAnalysis(analysisRecordOf(crash, analysis('2026-03-04T05:06:08Z')), INDEX, existing), {
    kind: 'skip',
    result: 'stale',
  });
  t.same(planAnalysis(analysisRecordOf(crash, older), INDEX, existing), { kind: 'skip', result: 'noop' });
  const crashOnly = { seqNo: 1, primaryTerm: 1, source: withCollectorAnalysis };
  t.match(
    planAnalysis(analysisRecordOf(crash, older), INDEX, crashOnly),
    { kind: 'write' },
    'first analysis',
  );
});

t.test('of the analyses of one document in a chunk, the newest is written', async (t) => {
  const item = (at: string, ref: number) => ({
    index: INDEX,
    record: analysisRecordOf(crash, analysis(at)),
    ref,
  });
  const other = { ...item('2026-03-04T05:06:01Z', 9), index: 'podmortem-crashes-2026.04' };
  const { newest, superseded } = newestPerDocument([
    item('2026-03-04T05:06:02Z', 1),
    item('2026-03-04T05:06:03Z', 2),
    other,
    item('2026-03-04T05:06:01Z', 3),
    item('2026-03-04T05:06:03Z', 4),
  ]);
  t.same(
    newest.map((i) => i.ref),
    [4, 9],
  );
  t.same(superseded.map((i) => i.ref).sort(), [1, 2, 3]);
});
