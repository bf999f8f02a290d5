import { createHash } from 'node:crypto';
import t from 'tap';
import { newCrashId } from './crash-id.ts';
import {
  CRASH_ALIAS,
  CRASH_INDEX_TEMPLATE,
  CRASH_TEMPLATE_VERSION,
  crashIndexFor,
  crashIndexForId,
  crashIndexMonth,
  crashIndexTemplates,
} from './index-template.ts';

t.test('the default names are the contract names', async (t) => {
  const { componentTemplates, indexTemplate } = crashIndexTemplates();
  t.same(
    componentTemplates.map((c) => c.name),
    ['podmortem-crashes-settings', 'podmortem-crashes-mappings'],
  );
  t.equal(indexTemplate.name, CRASH_INDEX_TEMPLATE);
  t.same(indexTemplate.index_patterns, ['podmortem-crashes-*']);
  t.same(indexTemplate.composed_of, ['podmortem-crashes-settings', 'podmortem-crashes-mappings']);
  t.same(Object.keys(indexTemplate.template.aliases), [CRASH_ALIAS]);
  t.equal(indexTemplate.version, CRASH_TEMPLATE_VERSION);
});

t.test('another alias renames every template, pattern and index consistently', async (t) => {
  const { componentTemplates, indexTemplate } = crashIndexTemplates({
    replicas: 1,
    shards: 2,
    alias: 'x-crashes',
  });
  t.same(
    componentTemplates.map((c) => c.name),
    ['x-crashes-settings', 'x-crashes-mappings'],
  );
  t.equal(indexTemplate.name, 'x-crashes');
  t.same(indexTemplate.index_patterns, ['x-crashes-*']);
  t.same(indexTemplate.composed_of, ['x-crashes-settings', 'x-crashes-mappings']);
  t.same(Object.keys(indexTemplate.template.aliases), ['x-crashes']);
  t.same(componentTemplates[0]?.template, { settings: { number_of_shards: 2, number_of_replicas: 1 } });
  t.equal(crashIndexFor('2026-03-04T05:06:07Z', 'x-crashes'), 'x-crashes-2026.03');
  t.same(crashIndexMonth('x-crashes-2026.03', 'x-crashes'), new Date(Date.UTC(2026, 2, 1)));
});

t.test('crashIndexMonth recognises only <alias>-YYYY.MM', async (t) => {
  for (const name of [
    'podmortem-crashes-2026.13',
    'podmortem-crashes-2026.00',
    'podmortem-crashes-2026.1',
    'podmortem-crashes-2026.01-restored',
    'other-2026.01',
    'podmortem-crashes-x-2026.01',
  ]) {
    t.equal(crashIndexMonth(name), undefined, name);
  }
  t.equal(crashIndexMonth('x-crashes-2026.03'), undefined, 'another alias is not ours by default');
  t.equal(crashIndexMonth('podmortem-crashes-2026.03', 'x-crashes'), undefined);
});

t.test("crashIndexForId names the index of the id's month, and none beyond the year 9999", async (t) => {
  t.equal(crashIndexForId(newCrashId(Date.UTC(2026, 2, 31, 23, 59, 59, 999)), 'x'), 'x-2026.03');
  t.equal(crashIndexForId(newCrashId(Date.UTC(2026, 3, 1)), 'x'), 'x-2026.04');
  t.equal(crashIndexForId(newCrashId(2 ** 48 - 1), 'x'), undefined, 'the year 10889');
  t.equal(crashIndexForId('not-an-id', 'x'), undefined);
});

t.test('a change of the templates raises CRASH_TEMPLATE_VERSION', async (t) => {
  // The indexer upgrades installed templates, and puts the new mappings on existing monthly
  // indices, only when the version rises: a field mapped without a new version never reaches the
  // index of the current month, which then refuses every event carrying it. Each version's
  // templates have one digest; a change of them needs a new version and its digest here.
  const digests: Record<number, string> = {
    4: 'd5812c0e9a0ec6a3511e411eabb5df8555a84b9cec22b5450a01f08faae6fafa',
    5: '479951201c2b5d59139366ef174c599b7f3bb15f209bcda6a68f987bc68e3090',
  };
  const { componentTemplates } = crashIndexTemplates();
  const digest = createHash('sha256')
    .update(JSON.stringify(componentTemplates.map((c) => [c.name, c.template])))
    .digest('hex');
  t.equal(
    digest,
    digests[CRASH_TEMPLATE_VERSION],
    `the templates of version ${CRASH_TEMPLATE_VERSION} (raise it and record ${digest} when they change)`,
  );
});
