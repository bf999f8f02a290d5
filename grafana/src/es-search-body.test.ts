import t from 'tap';
import { bucketRows, targetSearch } from './es-search-body.ts';
import { esCount, esDocuments } from './es-queries.ts';

const ctx = { fromMs: 1000, toMs: 61_000, intervalMs: 30_000, values: { ns: 'a-b' } };

t.test('a count target nests its bucket aggregations in order, the first outermost', async (t) => {
  const target = esCount('ns:$ns', { by: [{ field: 'signal.name', size: 5 }], overTime: true });
  t.same(targetSearch(target, ctx), {
    size: 0,
    query: {
      bool: {
        filter: [
          { range: { '@timestamp': { gte: 1000, lte: 61_000, format: 'epoch_millis' } } },
          { query_string: { analyze_wildcard: true, query: 'ns:a\\-b' } },
        ],
      },
    },
    aggs: {
      '2': {
        terms: { field: 'signal.name', size: 5, order: { _count: 'desc' }, min_doc_count: 1 },
        aggs: {
          '3': {
            date_histogram: {
              field: '@timestamp',
              min_doc_count: 0,
              extended_bounds: { min: 1000, max: 61_000 },
              format: 'epoch_millis',
              fixed_interval: '30000ms',
            },
            aggs: {},
          },
        },
      },
    },
  });
});

t.test('a documents target asks for the newest documents; a count needs buckets', async (t) => {
  const body = targetSearch(esDocuments('', 7), ctx);
  t.equal(body.size, 7);
  t.same(body.sort, [
    { '@timestamp': { order: 'desc', unmapped_type: 'boolean' } },
    { _doc: { order: 'desc' } },
  ]);
  t.same(
    (body.query as { bool: { filter: unknown[] } }).bool.filter.length,
    1,
    'no query_string for an empty query',
  );
  t.throws(() => targetSearch(esCount(''), ctx), /a count needs bucket aggregations/);
});

t.test('bucket rows: one per innermost bucket, keyed by field', async (t) => {
  const target = esCount('', { by: [{ field: 'a', size: 5 }], overTime: true });
  const aggregations = {
    '2': {
      buckets: [
        {
          key: 'x',
          doc_count: 3,
          '3': {
            buckets: [
              { key: 1, doc_count: 1 },
              { key: 2, doc_count: 2 },
            ],
          },
        },
        { key: 'y', doc_count: 1, '3': { buckets: [{ key: 1, doc_count: 1 }] } },
      ],
    },
  };
  t.same(bucketRows(aggregations, target.bucketAggs), [
    { keys: { a: 'x', date_histogram: 1 }, count: 1 },
    { keys: { a: 'x', date_histogram: 2 }, count: 2 },
    { keys: { a: 'y', date_histogram: 1 }, count: 1 },
  ]);
  t.throws(() => bucketRows({}, target.bucketAggs), /no aggregation 2/);
});
