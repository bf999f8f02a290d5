import t from 'tap';
import { interpolate, luceneEscape } from './template-vars.ts';

t.test('Lucene: single values escaped, multi-values OR-ed in quotes, raw values as they are', async (t) => {
  t.equal(luceneEscape('team-a'), 'team\\-a');
  t.equal(luceneEscape('42'), '42');
  t.equal(interpolate('ns:$namespace', { namespace: 'a:b' }, 'lucene'), 'ns:a\\:b');
  t.equal(interpolate('ns:${namespace}', { namespace: ['a-1', 'b'] }, 'lucene'), 'ns:("a\\-1" OR "b")');
  t.equal(interpolate('ns:[[namespace]]', { namespace: { raw: '*' } }, 'lucene'), 'ns:*');
});

t.test('PromQL: single values as they are, multi-values a regex alternation', async (t) => {
  t.equal(
    interpolate('x{i=~"$i"}[$__rate_interval]', { i: 'h:1', __rate_interval: { raw: '1m' } }, 'promql'),
    'x{i=~"h:1"}[1m]',
  );
  t.equal(interpolate('x{i=~"$i"}', { i: ['a.b', 'c'] }, 'promql'), 'x{i=~"(a\\.b|c)"}');
});

t.test('a variable without a value is an error naming it', async (t) => {
  t.throws(() => interpolate('a:$missing', {}, 'lucene'), /no value for the variable \$missing/);
  t.equal(interpolate('${__interval_ms}ms', { __interval_ms: { raw: '60000' } }, 'lucene'), '60000ms');
});
