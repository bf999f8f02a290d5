import t from 'tap';
import { expiredIndices } from './retention.ts';

const alias = 'podmortem-crashes';

t.test('an index is expired once all of its month is older than the retention', async (t) => {
  const now = new Date('2026-06-15T12:00:00Z');
  const indices = [
    'podmortem-crashes-2026.06',
    'podmortem-crashes-2026.05',
    'podmortem-crashes-2026.04',
    'podmortem-crashes-2025.12',
  ];
  // 45 days before now is 2026-05-01T12:00Z: April ended before it, May did not.
  t.same(expiredIndices(indices, alias, now, 45), ['podmortem-crashes-2025.12', 'podmortem-crashes-2026.04']);
  t.same(
    expiredIndices(indices, alias, now, 46),
    ['podmortem-crashes-2025.12'],
    'April ends after the cutoff',
  );
  t.same(expiredIndices(indices, alias, now, 0), [], '0 keeps everything');
});

t.test('indices that are not ours are never expired', async (t) => {
  const now = new Date('2026-06-15T00:00:00Z');
  const indices = [
    'podmortem-crashes',
    'podmortem-crashes-2020.01-restored',
    'podmortem-crashes-old',
    'other-2020.01',
    'podmortem-crashes-x-2020.01',
    '.kibana',
    'crashes-test-2020.01',
  ];
  t.same(expiredIndices(indices, alias, now, 1), []);
  t.same(expiredIndices(indices, 'crashes-test', now, 1), ['crashes-test-2020.01'], 'under another alias');
});
