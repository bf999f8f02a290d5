import t from 'tap';
import { analysisRecordOf, validExamples, type AnalysisResult, type CrashEvent } from '@podmortem/contract';
import { crashPartOf, newestPerDocument, planAnalysis, planCrash } from './crash-merge.ts';

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

t.test(
  'a new crash is created whole; the same crash again is a conditional update keeping an analysis',
  async (t) => {
    const item = { id: crash.crash.id, index: INDEX, document: withCollectorAnalysis };
    t.same(planCrash(item, undefined), {
      kind: 'write',
      operation: {
        action: 'create',
        meta: { _index: INDEX, _id: crash.crash.id },
        body: withCollectorAnalysis,
      },
    });
    const existing = {
      seqNo: 4,
      primaryTerm: 1,
      source: { ...withCollectorAnalysis, analysis: { status: 'ok' } },
    };
    const rest = Object.fromEntries(Object.entries(withCollectorAnalysis).filter(([k]) => k !== 'analysis'));
    t.same(planCrash(item, existing), {
      kind: 'write',
      operation: {
        action: 'update',
        meta: { _index: INDEX, _id: crash.crash.id, if_seq_no: 4, if_primary_term: 1 },
        body: {
          doc: {
            ...rest,
            analysis: { modules: [{ path: '/bin/segv', build_id: 'ab12' }], build_id: 'ab12' },
          },
        },
      },
    });
    t.same(crashPartOf({ ...crash, analysis: { title: 'x' } }), rest, 'no empty analysis object');
  },
);

t.test('another crash of the same id is a duplicate, never written over the first', async (t) => {
  const stored = { seqNo: 4, primaryTerm: 1, source: crash as unknown as Record<string, unknown> };
  const k8s = crash.kubernetes;
  if (!k8s) throw new Error('a pod example');
  const others: [string, CrashEvent][] = [
    ['another namespace', { ...crash, kubernetes: { ...k8s, namespace: 'team-b' } }],
    ['another month', { ...crash, '@timestamp': '2026-12-03T10:15:30.123Z' }],
    [
      'another pod',
      { ...crash, kubernetes: { ...k8s, pod: { ...k8s.pod, uid: '0b7e2c1d-3a4f-4e5d-9c8b-7a6f5e4d3c2b' } } },
    ],
    ['another node', { ...crash, collector: { ...crash.collector, node: 'node-z' } }],
    ['no pod', Object.fromEntries(Object.entries(crash).filter(([k]) => k !== 'kubernetes')) as CrashEvent],
  ];
  for (const [what, other] of others) {
    const plan = planCrash({ id: crash.crash.id, index: INDEX, document: other }, stored);
    t.equal(plan.kind, 'duplicate', what);
    t.match(
      plan.kind === 'duplicate' && plan.reason,
      `crash id ${crash.crash.id} is held in ${INDEX} by another crash`,
    );
  }
  const sameInstant = { ...crash, '@timestamp': crash['@timestamp'].replace('Z', '+00:00') };
  t.equal(
    planCrash({ id: crash.crash.id, index: INDEX, document: sameInstant }, stored).kind,
    'write',
    'the same instant written otherwise',
  );
});

t.test("a placeholder of another crash's analysis is replaced by the crash", async (t) => {
  const placeholder = {
    '@timestamp': crash['@timestamp'],
    crash: crash.crash,
    kubernetes: { namespace: 'team-b', pod: { uid: crash.kubernetes?.pod.uid } },
    analysis: analysis('2026-03-04T05:06:09Z'),
  };
  const plan = planCrash(
    { id: crash.crash.id, index: INDEX, document: crash },
    { seqNo: 2, primaryTerm: 1, source: placeholder },
  );
  t.match(plan, {
    kind: 'write',
    operation: { action: 'index', meta: { if_seq_no: 2, if_primary_term: 1 }, body: crash },
    replaces: /namespace team-b stored, payments sent/,
  });
  const ownPlaceholder = {
    ...placeholder,
    kubernetes: { namespace: 'payments', pod: { uid: crash.kubernetes?.pod.uid } },
  };
  t.match(
    planCrash(
      { id: crash.crash.id, index: INDEX, document: crash },
      { seqNo: 2, primaryTerm: 1, source: ownPlaceholder },
    ),
    {
      kind: 'write',
      operation: { action: 'update' },
    },
    'its own placeholder: merged, the analysis kept',
  );
});

t.test('an analysis of another crash of the id is a duplicate, not merged', async (t) => {
  const record = analysisRecordOf(crash, analysis('2026-03-04T05:06:09Z'));
  const forged = {
    ...record,
    kubernetes: { namespace: 'team-b', pod: { uid: record.kubernetes?.pod.uid ?? '' } },
  };
  const plan = planAnalysis(forged, INDEX, {
    seqNo: 1,
    primaryTerm: 1,
    source: crash as unknown as Record<string, unknown>,
  });
  t.equal(plan.kind, 'duplicate');
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
