import t from 'tap';
import { metricValue, parseMetrics } from './support/metrics.ts';

// The tests' Prometheus text reader: samples, labels unescaped, exact label matching.

const exposition = [
  '# HELP podmortem_crashes_total Crashes seen.',
  '# TYPE podmortem_crashes_total counter',
  'podmortem_crashes_total{namespace="team-a",signal="SIGSEGV"} 3',
  'podmortem_crashes_total{namespace="team-a-canary",signal="SIGSEGV"} 5',
  'podmortem_crashes_total{namespace="team-b",signal="SIGABRT"} 7 1700000000000',
  'podmortem_crashes_total_created{namespace="team-a",signal="SIGSEGV"} 1700000000',
  'podmortem_lag 12.5',
  '',
  'podmortem_bulk_seconds_bucket{le="+Inf"} 4',
  'podmortem_gauge{reason="a \\"quoted\\" word, a \\\\ and a\\nnew line",x="}"} -2e3',
  'podmortem_spaced { a = "1" , b="2", } +Inf',
  'podmortem_nan NaN',
  'podmortem_lag_mean_seconds Nan',
  'podmortem_floor -inf',
].join('\n');

t.test('every sample, with its labels unescaped and its value', async (t) => {
  t.same(parseMetrics(exposition), [
    { name: 'podmortem_crashes_total', labels: { namespace: 'team-a', signal: 'SIGSEGV' }, value: 3 },
    { name: 'podmortem_crashes_total', labels: { namespace: 'team-a-canary', signal: 'SIGSEGV' }, value: 5 },
    { name: 'podmortem_crashes_total', labels: { namespace: 'team-b', signal: 'SIGABRT' }, value: 7 },
    {
      name: 'podmortem_crashes_total_created',
      labels: { namespace: 'team-a', signal: 'SIGSEGV' },
      value: 1_700_000_000,
    },
    { name: 'podmortem_lag', labels: {}, value: 12.5 },
    { name: 'podmortem_bulk_seconds_bucket', labels: { le: '+Inf' }, value: 4 },
    {
      name: 'podmortem_gauge',
      labels: { reason: 'a "quoted" word, a \\ and a\nnew line', x: '}' },
      value: -2000,
    },
    { name: 'podmortem_spaced', labels: { a: '1', b: '2' }, value: Infinity },
    { name: 'podmortem_nan', labels: {}, value: NaN },
    { name: 'podmortem_lag_mean_seconds', labels: {}, value: NaN },
    { name: 'podmortem_floor', labels: {}, value: -Infinity },
  ]);
});

t.test('a value is the sum of the series whose labels match exactly', async (t) => {
  t.equal(metricValue(exposition, 'podmortem_crashes_total'), 15, 'no labels: every series of the name');
  t.equal(
    metricValue(exposition, 'podmortem_crashes_total', { namespace: 'team-a' }),
    3,
    'not team-a-canary',
  );
  t.equal(metricValue(exposition, 'podmortem_crashes_total', { signal: 'SIGSEGV' }), 8);
  t.equal(metricValue(exposition, 'podmortem_crashes_total', { namespace: 'team' }), 0, 'no prefix match');
  t.equal(metricValue(exposition, 'podmortem_crashes_total', { pod: '' }), 0, 'a missing label is not empty');
  t.equal(metricValue(exposition, 'podmortem_crashes', {}), 0, 'no name prefix match');
  t.equal(metricValue(exposition, 'podmortem_missing'), 0, 'absent: 0');
  t.equal(
    metricValue(exposition, 'podmortem_gauge', { reason: 'a "quoted" word, a \\ and a\nnew line' }),
    -2000,
    'matched on the unescaped value',
  );
});

t.test('a line that is not a sample is an error naming it', async (t) => {
  for (const line of [
    'podmortem_x{a="1"',
    'podmortem_x{a="1} 2',
    'podmortem_x{a=1} 2',
    'podmortem_x{a="\\t"} 2',
    'podmortem_x{a="1",a="2"} 2',
    'podmortem_x',
    'podmortem_x one',
    'podmortem_x 1 2 3',
    'podmortem_x 1 soon',
    '1podmortem 2',
  ]) {
    t.throws(
      () => parseMetrics(`ok 1\n${line}\n`),
      { message: `metrics line 2 ${JSON.stringify(line)}:` },
      line,
    );
  }
});
