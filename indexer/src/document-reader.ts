import type { Client } from '@elastic/elasticsearch';
import type { ExistingDocument } from './crash-merge.ts';
import { fromElasticsearchError, IndexerError } from './errors.ts';

// One mget of crash documents by their exact index and id, with what a conditional write needs
// (sequence number and primary term). Used by the crash writes that met a document already there
// and by the analysis merges (crash-merge.ts).

export interface DocumentRef {
  index: string;
  id: string;
}

/** The documents as they are now, in the order of `refs`; undefined where there is none. */
export async function readDocuments(
  es: Client,
  refs: DocumentRef[],
  signal: AbortSignal,
): Promise<(ExistingDocument | undefined)[]> {
  if (refs.length === 0) return [];
  let res: Awaited<ReturnType<Client['mget']>>;
  try {
    res = await es.mget({ docs: refs.map((r) => ({ _index: r.index, _id: r.id })) }, { signal });
  } catch (err) {
    throw fromElasticsearchError('document read', err);
  }
  return refs.map((ref, i) => {
    const doc = res.docs[i];
    if (!doc) throw new IndexerError('PM_ERR_ES_UNAVAILABLE', `mget answered no document for ${ref.index}`);
    if ('error' in doc) {
      // A month whose first crash is still to come has no index yet: no document.
      if (doc.error.type === 'index_not_found_exception') return undefined;
      throw new IndexerError(
        'PM_ERR_ES_UNAVAILABLE',
        `document read: ${doc.error.type}: ${doc.error.reason ?? ''}`,
      );
    }
    if (!doc.found) return undefined;
    if (doc._seq_no === undefined || doc._primary_term === undefined || !doc._source) {
      throw new IndexerError(
        'PM_ERR_ES_UNAVAILABLE',
        'document read: a document without its sequence number',
      );
    }
    return {
      seqNo: doc._seq_no,
      primaryTerm: doc._primary_term,
      source: doc._source as Record<string, unknown>,
    };
  });
}
