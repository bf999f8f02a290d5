import t from 'tap';
import { corePattern, CORE_PATTERN_MAX_BYTES } from './core-pattern.ts';

t.test('corePattern names the handler and the specifiers, within the kernel limit', async (t) => {
  t.equal(
    corePattern('/var/lib/podmortem/podmortem-handler'),
    '|/var/lib/podmortem/podmortem-handler %P %p %I %i %s %t %c %e %E %h %u %g',
  );
  t.throws(() => corePattern('relative/handler'), /absolute/);
  t.throws(() => corePattern('/a b/handler'), /spaces/);
  t.throws(() => corePattern('/' + 'x'.repeat(CORE_PATTERN_MAX_BYTES)), /over the kernel's 127/);
});
