import t from 'tap';
import { readFileSync } from 'node:fs';
import { readmeWithConfigDocs } from './config-docs.ts';

t.test('the README configuration tables are what the schemas generate', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  t.equal(readme, readmeWithConfigDocs(readme), 'run node scripts/config-docs.ts to regenerate');
});
