import t from 'tap';
import { contextView, seriesNames } from './format.ts';

t.test('several series of one metric are told apart by the labels that differ', async (t) => {
  t.same(seriesNames([{ pod: 'a', container: 'api' }]), [''], 'one series: no labels');
  t.same(
    seriesNames([
      { pod: 'a', container: 'api', __name__: 'x' },
      { pod: 'a', container: 'sidecar', __name__: 'x' },
      { pod: 'a', __name__: 'x' },
    ]),
    ['{container="api"}', '{container="sidecar"}', '{container=""}'],
  );
  const view = contextView({
    crash: { id: 'c1', timestamp: '2026-12-01T00:00:00Z' },
    window: { from: 'a', to: 'b', step_seconds: 15 },
    metrics: [
      {
        name: 'memory',
        query: 'q',
        series: [
          { metric: { container: 'api' }, values: [[1, '10']] },
          { metric: { container: 'sidecar' }, values: [[1, '20']] },
        ],
      },
      { name: 'cpu', query: 'q', series: [{ metric: { container: 'api' }, values: [[1, '0.5']] }] },
    ],
    logs: { index: 'logs-*', lines: [] },
    other_crashes: [],
    links: {},
    errors: [],
  });
  t.match(view, /\n {2}memory\{container="api"\}: min 10 +max 10 +last 10 +\(1 points\)\n/);
  t.match(view, /\n {2}memory\{container="sidecar"\}: min 20 /);
  t.match(view, /\n {2}cpu: min 0\.5 /, 'a single series keeps the plain name');
});
