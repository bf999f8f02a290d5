import t from 'tap';
import { Client } from '@elastic/elasticsearch';
import { crashIndexFor, crashIndexTemplates, validExamples, type CrashEvent } from '@podmortem/contract';
import { stack, uniqueName } from './support/stack.ts';

// The contract's index template on the real Elasticsearch of the local stack, through the
// official client: the example events indexed by crash id and found again by the queries the
// query API and dashboards make.

const es = new Client({ node: stack.elasticsearchUrl });
const alias = uniqueName('pm-test-crashes');
const events = validExamples().map((e) => e.event);

t.before(async () => {
  const { componentTemplates, indexTemplate } = crashIndexTemplates({ replicas: 0, shards: 1, alias });
  for (const { name, ...body } of componentTemplates)
    await es.cluster.putComponentTemplate({ name, ...body });
  const { name, ...body } = indexTemplate;
  await es.indices.putIndexTemplate({ name, ...body });
  const result = await es.bulk({
    refresh: 'wait_for',
    operations: events.flatMap((e) => [
      { index: { _index: crashIndexFor(e['@timestamp'], alias), _id: e.crash.id } },
      e,
    ]),
  });
  if (result.errors) throw new Error(`bulk failed: ${JSON.stringify(result.items)}`);
});

t.teardown(async () => {
  const indices = await es.indices.get({ index: `${alias}-*` });
  for (const index of Object.keys(indices)) await es.indices.delete({ index });
  await es.indices.deleteIndexTemplate({ name: alias });
  await es.cluster.deleteComponentTemplate({ name: `${alias}-settings` });
  await es.cluster.deleteComponentTemplate({ name: `${alias}-mappings` });
  await es.close();
});

t.test('the server reports its real version', async (t) => {
  const info = await es.info();
  t.match(info.version.number, /^9\.\d+\.\d+$/);
  const nodes = await es.nodes.info({ node_id: '_local' });
  t.equal(Object.values(nodes.nodes)[0]?.version, info.version.number, 'the node agrees');
});

t.test('monthly indices are created by the template, behind the alias, with its mapping', async (t) => {
  const indices = await es.indices.get({ index: alias });
  t.same(Object.keys(indices).sort(), [`${alias}-2026.10`, `${alias}-2026.11`]);
  for (const index of Object.values(indices)) {
    t.same(Object.keys(index.aliases ?? {}), [alias]);
    t.equal(index.mappings?.dynamic, 'strict');
    t.equal(index.settings?.index?.number_of_replicas, '0');
  }
  const count = await es.count({ index: alias });
  t.equal(count.count, events.length, 'every example indexed once');
});

t.test('re-indexing by crash id replaces, never doubles', async (t) => {
  const first = events[0] as CrashEvent;
  await es.index({
    index: crashIndexFor(first['@timestamp'], alias),
    id: first.crash.id,
    document: first,
    refresh: 'wait_for',
  });
  t.equal((await es.count({ index: alias })).count, events.length);
});

t.test('a field outside the mapping is refused (strict), naming the field', async (t) => {
  const first = events[0] as CrashEvent;
  await t.rejects(
    es.index({
      index: crashIndexFor(first['@timestamp'], alias),
      id: 'x',
      document: { ...first, surprise: 1 },
    }),
    /strict_dynamic_mapping_exception.*surprise/,
  );
});

t.test('a filtered search finds exactly the matching crashes', async (t) => {
  const result = await es.search<CrashEvent>({
    index: alias,
    query: {
      bool: {
        filter: [
          { term: { 'kubernetes.namespace': 'payments' } },
          { term: { 'signal.name': 'SIGSEGV' } },
          { range: { '@timestamp': { gte: '2026-10-01T00:00:00Z', lt: '2026-12-01T00:00:00Z' } } },
        ],
      },
    },
    sort: [{ '@timestamp': 'desc' }],
  });
  const expected = events
    .filter((e) => e.kubernetes?.namespace === 'payments' && e.signal.name === 'SIGSEGV')
    .sort((a, b) => b['@timestamp'].localeCompare(a['@timestamp']))
    .map((e) => e.crash.id);
  t.ok(expected.length >= 2, 'the examples hold several matches');
  t.same(
    result.hits.hits.map((h) => h._id),
    expected,
  );

  const byLabel = await es.search<CrashEvent>({
    index: alias,
    query: { term: { 'kubernetes.labels.app': 'api' } },
  });
  t.same(
    byLabel.hits.hits.map((h) => h._id).sort(),
    events
      .filter((e) => e.kubernetes?.labels?.app === 'api')
      .map((e) => e.crash.id)
      .sort(),
    'labels are searchable (flattened)',
  );

  const text = await es.search<CrashEvent>({
    index: alias,
    query: { match: { 'analysis.title.text': 'handle_request' } },
  });
  t.same(
    text.hits.hits.map((h) => h._id),
    ['01a10142-fe4b-7000-8000-000000000001'],
    'free text over the title',
  );
});

t.test('terms and date_histogram aggregations count the crashes', async (t) => {
  const result = await es.search({
    index: alias,
    size: 0,
    aggs: {
      namespaces: { terms: { field: 'kubernetes.namespace' } },
      signals: { terms: { field: 'signal.name' } },
      per_month: { date_histogram: { field: '@timestamp', calendar_interval: 'month' } },
    },
  });
  const aggs = result.aggregations as Record<
    string,
    { buckets: { key: string | number; key_as_string?: string; doc_count: number }[] }
  >;
  const tally = (key: (e: CrashEvent) => string | undefined) => {
    const m = new Map<string, number>();
    for (const e of events) {
      const k = key(e);
      if (k !== undefined) m.set(k, (m.get(k) ?? 0) + 1);
    }
    return Object.fromEntries(m);
  };
  const asObject = (name: string) =>
    Object.fromEntries(
      (aggs[name]?.buckets ?? []).map((b) => [b.key_as_string ?? String(b.key), b.doc_count]),
    );
  t.same(
    asObject('namespaces'),
    tally((e) => e.kubernetes?.namespace),
  );
  t.same(
    asObject('signals'),
    tally((e) => e.signal.name),
  );
  t.same(
    asObject('per_month'),
    tally((e) => `${e['@timestamp'].slice(0, 7)}-01T00:00:00.000Z`),
  );
});

t.test('search_after pages through every crash once, newest first', async (t) => {
  const seen: string[] = [];
  let after: (string | number)[] | undefined;
  for (let page = 0; page < 10; page++) {
    const result = await es.search<CrashEvent>({
      index: alias,
      size: 2,
      sort: [{ '@timestamp': 'desc' }, { 'crash.id': 'asc' }],
      ...(after ? { search_after: after } : {}),
    });
    const hits = result.hits.hits;
    if (hits.length === 0) break;
    seen.push(...hits.map((h) => h._id ?? ''));
    after = hits.at(-1)?.sort as (string | number)[];
  }
  t.same(
    seen,
    [...events].sort((a, b) => b['@timestamp'].localeCompare(a['@timestamp'])).map((e) => e.crash.id),
  );
});
