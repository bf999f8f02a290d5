import { ANALYZER_FIELDS, type AnalysisRecord, type CrashEvent } from '@podmortem/contract';

// How a crash record and its analysis records meet in one Elasticsearch document (`_id` = crash
// id) without scripts (docs/architecture.md §3), whichever arrives first and however often:
//
// - the analyzer owns the fields of `analysis` named by ANALYZER_FIELDS, the collector all others;
// - a crash record is an `update` whose `upsert` is the whole event (the crash came first) and
//   whose partial `doc` is the event without the analyzer's fields (the document exists: its
//   analysis, if any, is kept; Elasticsearch merges objects deeply, so `analysis.modules` and
//   `build_id` still arrive);
// - an analysis record is written after reading the document (one mget per chunk): a `create`
//   of a document holding only the crash id, time, namespace and analysis when there is none, else
//   an `index` of the document read with the analyzer's fields replaced, conditional on its
//   sequence number, and nothing when the document's analysis is as new or newer (`analyzed_at`).
//   A concurrent write (a crash record, another member after a rebalance) fails the condition with
//   409 and the analysis is read and planned again.
//
// So the document ends as the crash event's collector fields plus the newest analysis's fields,
// in any order of arrival; before any analysis it is the crash event as the collector sent it.

export type BulkAction = 'update' | 'create' | 'index';

export interface BulkOperation {
  action: BulkAction;
  meta: {
    _index: string;
    _id: string;
    retry_on_conflict?: number;
    if_seq_no?: number;
    if_primary_term?: number;
  };
  body: unknown;
}

type Fields = Record<string, unknown>;

const analyzerFields = new Set<string>(ANALYZER_FIELDS);

/** The fields of an `analysis` object that are not the analyzer's. */
function collectorPart(analysis: unknown): Fields {
  if (typeof analysis !== 'object' || analysis === null) return {};
  return Object.fromEntries(Object.entries(analysis).filter(([k]) => !analyzerFields.has(k)));
}

/** A crash event as the partial doc merged into an existing document: no analyzer field. */
export function crashPartOf(event: CrashEvent): Fields {
  const { analysis, ...rest } = event;
  const kept = collectorPart(analysis);
  return Object.keys(kept).length > 0 ? { ...rest, analysis: kept } : rest;
}

/**
 * Conflicts of a crash's update with a concurrent write are retried by Elasticsearch itself: the
 * update is read-merge-write on the shard, and a repeat merges the same partial doc again.
 */
const CRASH_UPDATE_RETRIES = 3;

export function crashOperation(item: { id: string; index: string; document: CrashEvent }): BulkOperation {
  return {
    action: 'update',
    meta: { _index: item.index, _id: item.id, retry_on_conflict: CRASH_UPDATE_RETRIES },
    body: { doc: crashPartOf(item.document), upsert: item.document },
  };
}

/** The document an mget found, with what a conditional write needs. */
export interface ExistingDocument {
  seqNo: number;
  primaryTerm: number;
  source: Fields;
}

export type AnalysisPlan =
  | { kind: 'write'; operation: BulkOperation }
  /** `stale`: the document's analysis is newer; `noop`: it is this very analysis (re-delivery). */
  | { kind: 'skip'; result: 'stale' | 'noop' };

/** Milliseconds since the epoch of an analysis's `analyzed_at`; NaN when absent or not a time. */
function analyzedAt(analysis: unknown): number {
  if (typeof analysis !== 'object' || analysis === null || !('analyzed_at' in analysis)) return NaN;
  return typeof analysis.analyzed_at === 'string' ? Date.parse(analysis.analyzed_at) : NaN;
}

export function planAnalysis(
  record: AnalysisRecord,
  index: string,
  existing: ExistingDocument | undefined,
): AnalysisPlan {
  const meta = { _index: index, _id: record.crash.id };
  if (!existing) {
    const placeholder = {
      '@timestamp': record['@timestamp'],
      crash: record.crash,
      ...(record.kubernetes ? { kubernetes: record.kubernetes } : {}),
      analysis: record.analysis,
    };
    return { kind: 'write', operation: { action: 'create', meta, body: placeholder } };
  }
  const current = analyzedAt(existing.source.analysis);
  const incoming = Date.parse(record.analysis.analyzed_at);
  if (incoming < current) return { kind: 'skip', result: 'stale' };
  if (incoming === current) return { kind: 'skip', result: 'noop' };
  const merged = {
    ...existing.source,
    analysis: { ...collectorPart(existing.source.analysis), ...record.analysis },
  };
  return {
    kind: 'write',
    operation: {
      action: 'index',
      meta: { ...meta, if_seq_no: existing.seqNo, if_primary_term: existing.primaryTerm },
      body: merged,
    },
  };
}

/**
 * The analyses of a chunk to write: per document, the newest (the last of equals); the others
 * could only lose against it, and two writes of one document in one bulk would conflict.
 */
export function newestPerDocument<T extends { index: string; record: AnalysisRecord }>(
  items: T[],
): { newest: T[]; superseded: T[] } {
  const byDocument = new Map<string, T>();
  const superseded: T[] = [];
  for (const item of items) {
    const key = `${item.index}/${item.record.crash.id}`;
    const seen = byDocument.get(key);
    if (!seen) {
      byDocument.set(key, item);
      continue;
    }
    const older = Date.parse(item.record.analysis.analyzed_at) < Date.parse(seen.record.analysis.analyzed_at);
    superseded.push(older ? item : seen);
    if (!older) byDocument.set(key, item);
  }
  return { newest: [...byDocument.values()], superseded };
}
