import {
  ANALYZER_FIELDS,
  isRemovedDumpStatus,
  type AnalysisRecord,
  type CrashEvent,
  type DumpRemoval,
} from '@podmortem/contract';

// How a crash record and its analysis records meet in one Elasticsearch document (`_id` = crash
// id, in the monthly index its id's time names) without scripts (docs/architecture.md §3),
// whichever arrives first and however often:
//
// - the analyzer owns the fields of `analysis` named by ANALYZER_FIELDS, the collector all others;
// - a crash record is first a `create` of the whole event (the crash came first); when a document
//   is there already it is read (one mget per chunk) and, when it is this very crash (same time,
//   namespace, pod uid and node: crashIdentityMismatch), an `update` whose partial `doc` is the
//   event without the analyzer's fields, conditional on the sequence number read (its analysis,
//   if any, is kept; Elasticsearch merges objects deeply, so `analysis.modules` and `build_id`
//   still arrive);
// - a crash record whose id is held by another crash is a duplicate: never written (the first
//   crash of an id keeps it), dead-lettered and counted; a placeholder of another crash (made by
//   an analysis ahead of its crash) is replaced by the crash, its analysis counted as a duplicate;
// - an analysis record is written after reading the document (one mget per chunk): a `create`
//   of a document holding only the crash id, time, namespace and analysis when there is none, else
//   an `index` of the document read with the analyzer's fields replaced, conditional on its
//   sequence number, and nothing when the document's analysis is as new or newer (`analyzed_at`)
//   or when the document is another crash of the same id (a duplicate, dead-lettered).
//   A concurrent write (a crash record, another member after a rebalance) fails the condition with
//   409 and the record is read and planned again.
//
// - a dump removal is planned like an analysis: a `create` of a placeholder holding the crash id,
//   time, namespace and the removal's `dump` when there is no document, else an `index` of the
//   document read with the removal's fields merged into `dump`, conditional on its sequence
//   number, and nothing when the document's dump is removed already (the first removal stands);
// - a crash record merged into a document whose dump is removed keeps the removal: a crash
//   delivered again never makes a deleted or expired dump 'stored' again.
//
// So the document ends as the crash event's collector fields plus the newest analysis's fields,
// in any order of arrival; before any analysis it is the crash event as the collector sent it; and
// no record of another crash (another namespace, another time) ever reaches it.

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

/** What a record says of the crash it belongs to: enough to tell two crashes of one id apart. */
export interface CrashIdentity {
  '@timestamp': string;
  kubernetes?: { namespace: string; pod: { uid: string } };
  collector?: { node: string };
}

function pathOf(source: Fields, path: string[]): unknown {
  let v: unknown = source;
  for (const key of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Fields)[key];
  }
  return v;
}

/**
 * How a stored document (crash or placeholder) and a record of the same id differ as crashes,
 * or undefined when they are one crash: the same time, namespace and pod uid, and the same node
 * where both name one (a placeholder names none).
 */
export function crashIdentityMismatch(existing: Fields, incoming: CrashIdentity): string | undefined {
  const differences: string[] = [];
  const text = (v: unknown) => (v === undefined ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v));
  const storedAt = pathOf(existing, ['@timestamp']);
  if (typeof storedAt !== 'string' || Date.parse(storedAt) !== Date.parse(incoming['@timestamp']))
    differences.push(`@timestamp ${text(storedAt)} stored, ${incoming['@timestamp']} sent`);
  const pairs: [string, unknown, unknown][] = [
    ['namespace', pathOf(existing, ['kubernetes', 'namespace']), incoming.kubernetes?.namespace],
    ['pod uid', pathOf(existing, ['kubernetes', 'pod', 'uid']), incoming.kubernetes?.pod.uid],
  ];
  const storedNode = pathOf(existing, ['collector', 'node']);
  if (storedNode !== undefined && incoming.collector !== undefined)
    pairs.push(['node', storedNode, incoming.collector.node]);
  for (const [what, stored, sent] of pairs) {
    if (stored !== sent) differences.push(`${what} ${text(stored)} stored, ${text(sent)} sent`);
  }
  return differences.length > 0 ? differences.join('; ') : undefined;
}

/** A placeholder (an analysis ahead of its crash) has no schema_version: it is no crash yet. */
function isPlaceholder(source: Fields): boolean {
  return source.schema_version === undefined;
}

export type CrashPlan =
  | {
      kind: 'write';
      operation: BulkOperation;
      /** A placeholder of another crash is replaced. */ replaces?: string;
    }
  | { kind: 'duplicate'; reason: string };

/** A crash's first write: the whole event, only if no document has the id yet. */
export function crashCreateOperation(item: CrashItem): BulkOperation {
  return { action: 'create', meta: { _index: item.index, _id: item.id }, body: item.document };
}

interface CrashItem {
  id: string;
  index: string;
  document: CrashEvent;
}

/** A crash record against the document its create found (or none: created again). */
export function planCrash(item: CrashItem, existing: ExistingDocument | undefined): CrashPlan {
  if (!existing) return { kind: 'write', operation: crashCreateOperation(item) };
  const meta = {
    _index: item.index,
    _id: item.id,
    if_seq_no: existing.seqNo,
    if_primary_term: existing.primaryTerm,
  };
  const mismatch = crashIdentityMismatch(existing.source, item.document);
  if (mismatch === undefined)
    return {
      kind: 'write',
      operation: {
        action: 'update',
        meta,
        body: { doc: keepingRemoval(crashPartOf(item.document), existing.source) },
      },
    };
  if (isPlaceholder(existing.source))
    return { kind: 'write', operation: { action: 'index', meta, body: item.document }, replaces: mismatch };
  return {
    kind: 'duplicate',
    reason: `crash id ${item.id} is held in ${item.index} by another crash: ${mismatch}`,
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
  /** The document is another crash of the same id: the analysis is not merged. */
  | { kind: 'duplicate'; reason: string }
  /** `stale`: the document's analysis is newer; `noop`: it is this very analysis (re-delivery). */
  | { kind: 'skip'; result: 'stale' | 'noop' };

/** Milliseconds since the epoch of an analysis's `analyzed_at`; NaN when absent or not a time. */
function analyzedAt(analysis: unknown): number {
  if (typeof analysis !== 'object' || analysis === null || !('analyzed_at' in analysis)) return NaN;
  return typeof analysis.analyzed_at === 'string' ? Date.parse(analysis.analyzed_at) : NaN;
}

/**
 * How a record that carries one part of a crash's document (an analysis, a dump removal) is
 * merged: with no document yet, a placeholder of the crash's identity and the part (the crash
 * fills in the rest when it comes); on a document of another crash of the same id, not at all;
 * else what `merge` makes of the document read — a skip, or the document to write back,
 * conditional on the version read so a concurrent writer makes this one read again.
 */
function planPart<Skip extends string>(
  record: AnalysisRecord | DumpRemoval,
  index: string,
  existing: ExistingDocument | undefined,
  part: Fields,
  merge: (source: Fields) => { write: Fields } | { skip: Skip },
):
  | { kind: 'write'; operation: BulkOperation }
  | { kind: 'duplicate'; reason: string }
  | { kind: 'skip'; result: Skip } {
  const meta = { _index: index, _id: record.crash.id };
  if (!existing) {
    const placeholder = {
      '@timestamp': record['@timestamp'],
      crash: record.crash,
      ...(record.kubernetes ? { kubernetes: record.kubernetes } : {}),
      ...part,
    };
    return { kind: 'write', operation: { action: 'create', meta, body: placeholder } };
  }
  const mismatch = crashIdentityMismatch(existing.source, record);
  if (mismatch !== undefined)
    return {
      kind: 'duplicate',
      reason: `crash id ${record.crash.id} is held in ${index} by another crash: ${mismatch}`,
    };
  const merged = merge(existing.source);
  if ('skip' in merged) return { kind: 'skip', result: merged.skip };
  return {
    kind: 'write',
    operation: {
      action: 'index',
      meta: { ...meta, if_seq_no: existing.seqNo, if_primary_term: existing.primaryTerm },
      body: merged.write,
    },
  };
}

export function planAnalysis(
  record: AnalysisRecord,
  index: string,
  existing: ExistingDocument | undefined,
): AnalysisPlan {
  return planPart<'stale' | 'noop'>(record, index, existing, { analysis: record.analysis }, (source) => {
    const current = analyzedAt(source.analysis);
    const incoming = Date.parse(record.analysis.analyzed_at);
    if (incoming < current) return { skip: 'stale' };
    if (incoming === current) return { skip: 'noop' };
    return { write: { ...source, analysis: { ...collectorPart(source.analysis), ...record.analysis } } };
  });
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

/** The removal fields of a document's dump, when its dump is removed. */
function removalOf(source: Fields): Fields | undefined {
  const dump = pathOf(source, ['dump']);
  if (typeof dump !== 'object' || dump === null) return undefined;
  const d = dump as Fields;
  if (typeof d.status !== 'string' || !isRemovedDumpStatus(d.status)) return undefined;
  return Object.fromEntries(
    ['status', 'reason', 'removed_at', 'removed_by'].filter((k) => d[k] !== undefined).map((k) => [k, d[k]]),
  );
}

/** A crash's partial doc that leaves an earlier removal of the dump in place. */
function keepingRemoval(part: Fields, existing: Fields): Fields {
  const removal = removalOf(existing);
  if (!removal) return part;
  return { ...part, dump: { ...(part.dump as Fields), ...removal } };
}

export type RemovalPlan =
  | { kind: 'write'; operation: BulkOperation }
  | { kind: 'duplicate'; reason: string }
  /** `noop`: the document's dump is removed already (re-delivery, or removed twice). */
  | { kind: 'skip'; result: 'noop' };

export function planRemoval(
  record: DumpRemoval,
  index: string,
  existing: ExistingDocument | undefined,
): RemovalPlan {
  return planPart<'noop'>(record, index, existing, { dump: record.dump }, (source) => {
    if (removalOf(source)) return { skip: 'noop' };
    const dump = pathOf(source, ['dump']);
    const stored = typeof dump === 'object' && dump !== null ? (dump as Fields) : {};
    return { write: { ...source, dump: { ...stored, ...record.dump } } };
  });
}
