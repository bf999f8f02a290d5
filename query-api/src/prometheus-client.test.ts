import t from 'tap';
import { fillPromql, promqlString } from './prometheus-client.ts';

t.test('placeholders are filled with escaped string literals', async (t) => {
  t.equal(
    fillPromql('m{namespace="{namespace}",pod="{pod}",container="{container}"}', {
      namespace: 'a',
      pod: 'p-0',
      container: 'c',
    }),
    'm{namespace="a",pod="p-0",container="c"}',
  );
  const injected = fillPromql('m{pod="{pod}"}', {
    namespace: '',
    pod: 'x"} or vector(1) #\\',
    container: '',
  });
  t.equal(injected, String.raw`m{pod="x\"} or vector(1) #\\"}`, 'a value cannot close the quotes');
  t.equal(promqlString('a\nb'), String.raw`a\nb`);
  t.equal(
    fillPromql('rate(x{a="b"}[5m])', { namespace: 'n', pod: 'p', container: 'c' }),
    'rate(x{a="b"}[5m])',
    'selectors are left alone',
  );
});
