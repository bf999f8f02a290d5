import t from 'tap';
import { classifyBulkItem } from './bulk-writer.ts';

t.test('acknowledged items are indexed, with their result', async (t) => {
  t.same(classifyBulkItem({ status: 201, result: 'created' }), { kind: 'indexed', result: 'created' });
  t.same(classifyBulkItem({ status: 200, result: 'updated' }), { kind: 'indexed', result: 'updated' });
});

t.test('overload, server errors and blocks are retried', async (t) => {
  const retried = [
    { status: 429, error: { type: 'es_rejected_execution_exception', reason: 'queue full' } },
    { status: 503, error: { type: 'unavailable_shards_exception', reason: 'primary shard is not active' } },
    { status: 500, error: { type: 'exception', reason: 'boom' } },
    {
      status: 403,
      error: {
        type: 'cluster_block_exception',
        reason: 'index [x] blocked by: [FORBIDDEN/8/index write (api)]',
      },
    },
    { status: 408, error: { type: 'timeout', reason: 'late' } },
  ];
  for (const answer of retried) t.equal(classifyBulkItem(answer).kind, 'retry', answer.error.type);
  t.equal(classifyBulkItem(undefined).kind, 'retry', 'a missing answer is not an acknowledgement');
});

t.test('mapping errors are rejected for good, with the reason and its cause', async (t) => {
  const outcome = classifyBulkItem({
    status: 400,
    error: {
      type: 'document_parsing_exception',
      reason: '[1:90] failed to parse field [signal.name] of type [long]',
      caused_by: { type: 'illegal_argument_exception', reason: 'For input string: "SIGSEGV"' },
    },
  });
  t.equal(outcome.kind, 'rejected');
  t.match(outcome, {
    reason: /document_parsing_exception: .*signal\.name.*caused by illegal_argument_exception/,
  });
  t.equal(
    classifyBulkItem({ status: 400, error: { type: 'mapper_parsing_exception', reason: 'x' } }).kind,
    'rejected',
  );
  t.equal(
    classifyBulkItem({ status: 400, error: { type: 'strict_dynamic_mapping_exception', reason: 'x' } }).kind,
    'rejected',
  );
});
