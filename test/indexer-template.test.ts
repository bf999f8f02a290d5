import t from 'tap';
import {
  CRASH_TEMPLATE_VERSION,
  crashIndexFor,
  crashIndexTemplates,
  crashMappings,
  DLQ_HEADERS,
  toCloudEvent,
  type CrashEvent,
} from '@podmortem/contract';
import { createLogger } from '@podmortem/contract/runtime';
import { installCrashTemplates } from '../indexer/src/template-installer.ts';
import { createTelemetry } from '../indexer/src/telemetry.ts';
import {
  crashEvent,
  groupProgress,
  monthsAgo,
  produce,
  readDlq,
  removeIndexSet,
  searchableCount,
  startIndexer,
  stopIndexer,
  topicsForTest,
  testElasticsearch,
  testKafka,
  uniqueNames,
  type StreamRecord,
} from './support/indexer-harness.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';

// Start-up against an Elasticsearch that already has an older release's templates and indices:
// the templates are upgraded by version, existing indices stay searchable through the alias and
// take the new mappings where they are compatible; an index that cannot take them is left as it
// is, and a document it refuses goes to the dead-letter topic, named and counted.

const names = uniqueNames('pm-idx-tmpl');
const kafka = testKafka();
const es = testElasticsearch();
const podUids = ['8e0c8a52-8d7e-4c11-9f70-3f2b6c7d8e01', '9f0c8a52-8d7e-4c11-9f70-3f2b6c7d8e02'];

// The previous release's mappings: no `analysis` and no `fault` yet.
const oldMappings = {
  ...crashMappings,
  properties: Object.fromEntries(
    Object.entries(crashMappings.properties).filter(([field]) => field !== 'analysis' && field !== 'fault'),
  ),
};

function events(from: number, count: number, month: Date, shape: 'old' | 'new'): CrashEvent[] {
  return Array.from({ length: count }, (_, i) => {
    const e = crashEvent(from + i, month, podUids);
    if (shape === 'old') {
      delete e.analysis;
      delete e.fault;
    } else {
      e.analysis = { signature: `sig-${from + i}`, title: 'SIGSEGV in handle_request', build_id: 'abcdef' };
    }
    return e;
  });
}

const record = (e: CrashEvent): StreamRecord => ({
  key: `${e.kubernetes?.namespace ?? '_host'}/x`,
  value: Buffer.from(JSON.stringify(toCloudEvent(e))),
  id: e.crash.id,
});

async function installOldTemplates(alias: string) {
  const templates = crashIndexTemplates({ replicas: 0, shards: 1, alias });
  const old = CRASH_TEMPLATE_VERSION - 1;
  const [settings, mappings] = templates.componentTemplates;
  if (!settings || !mappings) throw new Error('the contract has two component templates');
  await es.cluster.putComponentTemplate({ name: settings.name, template: settings.template, version: old });
  await es.cluster.putComponentTemplate({
    name: mappings.name,
    template: { mappings: oldMappings },
    version: old,
  });
  const it = templates.indexTemplate;
  await es.indices.putIndexTemplate({
    name: it.name,
    index_patterns: it.index_patterns,
    composed_of: it.composed_of,
    template: it.template,
    priority: it.priority,
    version: old,
  });
}

t.test('an older template is upgraded on start without breaking existing indices', async (t) => {
  const admin = await topicsForTest(t, kafka, es, names, 2);

  // The older release's state: its templates, an index of its own month made through them, and
  // an index whose mappings conflict with the new ones (signal.name a number).
  await installOldTemplates(names.alias);
  const oldMonth = monthsAgo(2);
  const oldEvents = events(0, 40, oldMonth, 'old');
  const oldIndex = crashIndexFor(oldMonth, names.alias);
  await es.bulk({
    refresh: true,
    operations: oldEvents.flatMap((e) => [{ index: { _index: oldIndex, _id: e.crash.id } }, e]),
  });
  const conflictMonth = monthsAgo(3);
  const conflictIndex = crashIndexFor(conflictMonth, names.alias);
  await es.indices.create({
    index: conflictIndex,
    mappings: { properties: { signal: { properties: { name: { type: 'long' } } } } },
  });
  t.equal(await searchableCount(es, names.alias), 40, 'before: the old index searchable through the alias');

  const indexer = await startIndexer({ names });
  t.teardown(() => stopIndexer(indexer));
  t.teardown(() => {
    if (!t.passing()) t.comment(indexer.logs.slice(-40).join('\n'));
  });
  await until('the indexer ready', () => indexer.ready());

  const installed = await es.indices.getIndexTemplate({ name: names.alias });
  t.equal(
    installed.index_templates[0]?.index_template.version,
    CRASH_TEMPLATE_VERSION,
    'index template upgraded',
  );
  const components = await es.cluster.getComponentTemplate({ name: `${names.alias}-*` });
  t.same(
    components.component_templates.map((c) => [c.name, c.component_template.version]).sort(),
    [
      [`${names.alias}-mappings`, CRASH_TEMPLATE_VERSION],
      [`${names.alias}-settings`, CRASH_TEMPLATE_VERSION],
    ],
    'component templates upgraded',
  );
  t.equal(metricValue(await indexer.metrics(), 'podmortem_indexer_templates_installed_total'), 3);
  t.equal(await searchableCount(es, names.alias), 40, 'after: the old documents still searchable');
  const oldMapping = await es.indices.getMapping({ index: oldIndex });
  t.ok(oldMapping[oldIndex]?.mappings.properties?.analysis, 'the old index took the new fields');
  t.ok(
    indexer.logs.some((l) => l.includes('existing index keeps its mappings') && l.includes(conflictIndex)),
    'the conflicting index is left as it is, and logged',
  );

  // New crashes: this month (a new index from the new template), late ones of the old month
  // (with the new fields), and some for the conflicting index, which refuses them.
  const fresh = events(100, 30, monthsAgo(0), 'new');
  const late = events(200, 20, oldMonth, 'new');
  const refused = events(300, 5, conflictMonth, 'new');
  await produce(kafka, names.topic, [...fresh, ...late, ...refused].map(record));
  await until(
    'the group committed to the end',
    async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
  );

  t.equal(
    await searchableCount(es, names.alias),
    40 + 30 + 20,
    'old and new crashes all searchable through the alias',
  );
  const found = await es.search<CrashEvent>({
    index: names.alias,
    size: 100,
    query: { exists: { field: 'analysis.signature' } },
  });
  t.same(
    found.hits.hits.map((h) => h._id).sort(),
    [...fresh, ...late].map((e) => e.crash.id).sort(),
    'the new field indexed and searchable in the new and the upgraded index',
  );
  const got = await es.get<CrashEvent>({ index: oldIndex, id: late[0]?.crash.id ?? '' });
  t.same(got._source, late[0], 'a late crash of the old month, as sent');

  const letters = await readDlq(kafka, names.dlq);
  t.equal(letters.length, 5, 'the refused documents are dead-lettered');
  for (const l of letters) {
    t.equal(l.headers[DLQ_HEADERS.errorCode], 'PM_ERR_ES_REJECTED');
    t.match(l.headers[DLQ_HEADERS.error], /signal\.name/, 'the error names the field');
  }
  t.same(
    letters.map((l) => (JSON.parse(l.value?.toString() ?? '{}') as { id?: string }).id).sort(),
    refused.map((e) => e.crash.id).sort(),
    'with their original bytes',
  );
  t.equal(
    metricValue(await indexer.metrics(), 'podmortem_indexer_records_dead_lettered_total', {
      code: 'PM_ERR_ES_REJECTED',
    }),
    5,
  );
});

t.test('a newer installed template is left alone, and an up-to-date one is not rewritten', async (t) => {
  const alias = `${names.alias}-b`;
  t.teardown(() => removeIndexSet(es, alias));
  const logger = createLogger('test', { level: 'silent' });
  const params = { es, alias, shards: 1, replicas: 0, logger, telemetry: createTelemetry(undefined, false) };
  const first = await installCrashTemplates(params);
  t.same(
    first.installed.map((i) => [i.name, i.from, i.to]),
    [
      [`${alias}-settings`, undefined, CRASH_TEMPLATE_VERSION],
      [`${alias}-mappings`, undefined, CRASH_TEMPLATE_VERSION],
      [alias, undefined, CRASH_TEMPLATE_VERSION],
    ],
    'installed when absent',
  );
  t.same((await installCrashTemplates(params)).installed, [], 'nothing rewritten at the same version');
  await es.indices.putIndexTemplate({
    name: alias,
    index_patterns: [`${alias}-*`],
    composed_of: [`${alias}-settings`, `${alias}-mappings`],
    priority: 200,
    version: CRASH_TEMPLATE_VERSION + 1,
    _meta: { marker: 'newer release' },
  });
  t.same((await installCrashTemplates(params)).installed, [], 'a newer one is not downgraded');
  const kept = await es.indices.getIndexTemplate({ name: alias });
  t.same(kept.index_templates[0]?.index_template._meta, { marker: 'newer release' });
});
