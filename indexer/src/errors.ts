import { errors as esErrors } from '@elastic/elasticsearch';
import {
  defineErrors,
  ElasticsearchAuthError,
  messageOf,
  PodmortemError,
  registryOptions,
} from '@podmortem/contract/runtime';

// The indexer's error codes. Records that can never be indexed go to the dead-letter topic with
// their code in a header; everything Elasticsearch or Kafka may still accept later is retried.

export const INDEXER_ERRORS = defineErrors({
  PM_ERR_RECORD_NOT_JSON: { retriable: false, message: 'the record value is empty or not a JSON object' },
  PM_ERR_RECORD_INVALID: { retriable: false, message: 'the record is not a valid crash event v1 message' },
  PM_ERR_ES_REJECTED: { retriable: false, message: 'Elasticsearch rejected the document for good' },
  PM_ERR_DUPLICATE_ID: {
    retriable: false,
    message: 'the crash id is held by another crash (another time, namespace, pod or node)',
  },
  PM_ERR_ES_RETRY: { retriable: true, message: 'Elasticsearch could not take some documents now' },
  PM_ERR_ES_UNAVAILABLE: { retriable: true, message: 'Elasticsearch did not answer or failed' },
  PM_ERR_ES_REQUEST: { retriable: false, message: 'Elasticsearch refused the request' },
  PM_ERR_ES_AUTH: { retriable: false, message: 'Elasticsearch refused the credentials' },
  PM_ERR_ES_NOT_READY: { retriable: true, message: 'the Elasticsearch cluster is not ready' },
  PM_ERR_TEMPLATE: { retriable: false, message: 'the index templates could not be installed' },
  PM_ERR_DLQ: { retriable: true, message: 'the dead-letter topic did not acknowledge' },
});

export type IndexerErrorCode = keyof typeof INDEXER_ERRORS;

export class IndexerError extends PodmortemError {
  declare readonly code: IndexerErrorCode;

  constructor(code: IndexerErrorCode, message: string, cause?: unknown) {
    super(code, message, registryOptions(INDEXER_ERRORS[code], cause));
    this.name = 'IndexerError';
  }
}

/** HTTP statuses after which the same request may succeed. */
export function retriableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * An error of the Elasticsearch client as one of ours: network failures, timeouts and 408/429/5xx
 * are retriable; other answers (400 bad request, 401/403, 404) are not.
 */
export function fromElasticsearchError(what: string, err: unknown): IndexerError {
  if (err instanceof IndexerError) return err;
  // Its message names the variables of the credentials (see namingElasticsearchRefusals).
  if (err instanceof ElasticsearchAuthError)
    return new IndexerError('PM_ERR_ES_AUTH', `${what}: ${err.message}`, err);
  if (err instanceof esErrors.ResponseError) {
    const status = err.meta.statusCode ?? 0;
    const code = retriableStatus(status) ? 'PM_ERR_ES_UNAVAILABLE' : 'PM_ERR_ES_REQUEST';
    return new IndexerError(code, `${what}: Elasticsearch answered ${status}: ${messageOf(err)}`, err);
  }
  if (err instanceof esErrors.SerializationError || err instanceof esErrors.ConfigurationError) {
    return new IndexerError('PM_ERR_ES_REQUEST', `${what}: ${messageOf(err)}`, err);
  }
  return new IndexerError('PM_ERR_ES_UNAVAILABLE', `${what}: ${messageOf(err)}`, err);
}

/** The status of an Elasticsearch response error, if it is one. */
export function elasticsearchStatus(err: unknown): number | undefined {
  return err instanceof esErrors.ResponseError ? err.meta.statusCode : undefined;
}
