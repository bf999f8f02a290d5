import t from 'tap';
import { errors } from '@elastic/elasticsearch';
import { isRetriable, PodmortemError } from '@podmortem/contract/runtime';
import { fromElasticsearchError, IndexerError, INDEXER_ERRORS, retriableStatus } from './errors.ts';

function responseError(statusCode: number) {
  return new errors.ResponseError({
    body: { error: { type: 'x', reason: 'y' }, status: statusCode },
    statusCode,
    headers: {},
    warnings: null,
    meta: {} as never,
  });
}

t.test('every code is PM_ERR_* and carries retriable', async (t) => {
  for (const [code, def] of Object.entries(INDEXER_ERRORS)) {
    t.match(code, /^PM_ERR_[A-Z_]+$/);
    const e = new IndexerError(code as keyof typeof INDEXER_ERRORS, 'm');
    t.ok(e instanceof PodmortemError);
    t.equal(e.retriable, def.retriable, code);
    t.equal(isRetriable(e), def.retriable);
  }
});

t.test('Elasticsearch errors: network, 408, 429 and 5xx retriable; other answers not', async (t) => {
  t.ok(fromElasticsearchError('x', new errors.ConnectionError('refused')).retriable);
  t.ok(fromElasticsearchError('x', new errors.TimeoutError('late')).retriable);
  t.ok(fromElasticsearchError('x', new errors.NoLivingConnectionsError('none', {} as never)).retriable);
  for (const s of [408, 429, 500, 502, 503])
    t.ok(fromElasticsearchError('x', responseError(s)).retriable, String(s));
  for (const s of [400, 401, 403, 404]) {
    const e = fromElasticsearchError('x', responseError(s));
    t.notOk(e.retriable, String(s));
    t.equal(e.code, 'PM_ERR_ES_REQUEST');
  }
  t.equal(retriableStatus(413), false);
  const cause = new errors.ConnectionError('refused');
  t.equal(fromElasticsearchError('bulk', cause).cause, cause, 'keeps its cause');
});
