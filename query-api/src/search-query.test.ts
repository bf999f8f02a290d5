import t from 'tap';
import { crashQuery, parseFields, searchBody, signalClause, timeBounds } from './search-query.ts';

t.test('filters become term clauses; the namespace scope always applies', async (t) => {
  const q = crashQuery(
    { namespace: 'a', pod: 'p', container: 'c', status: 'stored' },
    { all: false, namespaces: ['a', 'b'] },
  );
  t.same(q, {
    bool: {
      filter: [
        { terms: { 'kubernetes.namespace': ['a', 'b'] } },
        { term: { 'kubernetes.namespace': 'a' } },
        { term: { 'kubernetes.pod.name': 'p' } },
        { term: { 'kubernetes.container.name': 'c' } },
        { term: { 'dump.status': 'stored' } },
      ],
      must: [],
    },
  });
  t.same(crashQuery({}, { all: true }), { bool: { filter: [], must: [] } }, 'cluster-wide: no scope clause');
});

t.test('signals by name, short name or number', async (t) => {
  t.same(signalClause('SIGSEGV'), { term: { 'signal.name': 'SIGSEGV' } });
  t.same(signalClause('SEGV'), { term: { 'signal.name': 'SIGSEGV' } });
  t.same(signalClause('11'), { term: { 'signal.number': 11 } });
});

t.test('executable wildcards are escaped', async (t) => {
  const q = crashQuery({ executable: 'a*b?' }, { all: true }) as { bool: { filter: unknown[] } };
  t.match(JSON.stringify(q), String.raw`*/a\\*b\\?`);
});

t.test('time bounds: RFC 3339, `to` not before `from`', async (t) => {
  t.same(timeBounds({ from: '2026-01-01T00:00:00Z' }), { from: Date.UTC(2026, 0, 1) });
  t.throws(() => timeBounds({ from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' }), {
    message: /querystring\/to/,
  });
});

t.test('fields: known names only, id and time always', async (t) => {
  t.same(parseFields('kubernetes.pod.name,signal'), [
    'crash.id',
    '@timestamp',
    'kubernetes.pod.name',
    'signal',
  ]);
  t.equal(parseFields(undefined), undefined);
  t.throws(() => parseFields('kubernetes.pod.nope,other'), {
    message: /querystring\/fields.*kubernetes\.pod\.nope, other/,
  });
  t.throws(() => parseFields(','), { message: /querystring\/fields names no field/ });
});

t.test('the body asks one hit more than the page, sorted newest first', async (t) => {
  const body = searchBody({
    filters: {},
    scope: { all: true },
    limit: 10,
    after: [5, 'x'],
    fields: ['crash.id'],
  });
  t.equal(body.size, 11);
  t.same(body.sort, [{ '@timestamp': { order: 'desc' } }, { 'crash.id': { order: 'desc' } }]);
  t.same(body.search_after, [5, 'x']);
  t.same(body._source, { includes: ['crash.id'] });
});
