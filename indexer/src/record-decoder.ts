import {
  crashIdTime,
  crashIndexForId,
  decodeAnalysisMessage,
  decodeCrashMessage,
  decodeDumpRemovalMessage,
  type AnalysisRecord,
  type CrashEvent,
  type DumpRemoval,
  type MessageDecoding,
  type MessageProblem,
} from '@podmortem/contract';
import type { IndexerErrorCode } from './errors.ts';

// One Kafka record value → a crash event (or an analysis record) and the monthly index of the
// crash (by its id's time), or the reason it can never be indexed (for the dead-letter headers). Pure: no I/O, never throws on bad input.

export type DecodedRecord =
  { ok: true; event: CrashEvent; index: string } | { ok: false; code: RecordErrorCode; error: string };
export type DecodedAnalysis =
  { ok: true; record: AnalysisRecord; index: string } | { ok: false; code: RecordErrorCode; error: string };

export type DecodedRemoval =
  { ok: true; record: DumpRemoval; index: string } | { ok: false; code: RecordErrorCode; error: string };

type RecordErrorCode = Extract<IndexerErrorCode, 'PM_ERR_RECORD_NOT_JSON' | 'PM_ERR_RECORD_INVALID'>;

const CODE_OF_PROBLEM: Record<MessageProblem, RecordErrorCode> = {
  'not-json': 'PM_ERR_RECORD_NOT_JSON',
  invalid: 'PM_ERR_RECORD_INVALID',
};

/** Dead-letter headers stay small whatever the record held. */
export const MAX_ERROR_TEXT = 1000;

export function truncateError(text: string): string {
  return text.length <= MAX_ERROR_TEXT ? text : `${text.slice(0, MAX_ERROR_TEXT - 1)}…`;
}

/**
 * A decoded message and the monthly index its crash id's time names (the one index of that id,
 * whatever time the record carries: docs/architecture.md §3), or why it has none.
 */
function withIndex<T extends { crash: { id: string }; '@timestamp': string }>(
  decoded: MessageDecoding<T>,
  alias: string,
): { ok: true; value: T; index: string } | { ok: false; code: RecordErrorCode; error: string } {
  if (!decoded.ok) {
    return {
      ok: false,
      code: CODE_OF_PROBLEM[decoded.problem],
      error: truncateError(decoded.errors.join('; ')),
    };
  }
  // The schema's date-time format and Date's parser disagree on a few exotic forms.
  if (Number.isNaN(Date.parse(decoded.value['@timestamp'])))
    return { ok: false, code: 'PM_ERR_RECORD_INVALID', error: 'data.@timestamp: not a time' };
  const index = crashIndexForId(decoded.value.crash.id, alias);
  if (index === undefined) {
    return {
      ok: false,
      code: 'PM_ERR_RECORD_INVALID',
      error: `data.crash.id: its time (${new Date(crashIdTime(decoded.value.crash.id)).toISOString()}) names no monthly index`,
    };
  }
  return { ok: true, value: decoded.value, index };
}

export function decodeRecord(value: Buffer | null, alias: string): DecodedRecord {
  const decoded = withIndex(decodeCrashMessage(value), alias);
  return decoded.ok ? { ok: true, event: decoded.value, index: decoded.index } : decoded;
}

/** An analysis record, in the index of its crash (by the crash id's time, as the crash's). */
export function decodeAnalysis(value: Buffer | null, alias: string): DecodedAnalysis {
  const decoded = withIndex(decodeAnalysisMessage(value), alias);
  return decoded.ok ? { ok: true, record: decoded.value, index: decoded.index } : decoded;
}

/** A dump removal, in the index of its crash. */
export function decodeRemoval(value: Buffer | null, alias: string): DecodedRemoval {
  const decoded = withIndex(decodeDumpRemovalMessage(value), alias);
  return decoded.ok ? { ok: true, record: decoded.value, index: decoded.index } : decoded;
}
