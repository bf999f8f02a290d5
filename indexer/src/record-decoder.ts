import {
  crashIndexFor,
  decodeAnalysisMessage,
  decodeCrashMessage,
  type AnalysisRecord,
  type CrashEvent,
  type MessageDecoding,
  type MessageProblem,
} from '@podmortem/contract';
import type { IndexerErrorCode } from './errors.ts';

// One Kafka record value → a crash event (or an analysis record) and the monthly index of the
// crash, or the reason it can never be indexed (for the dead-letter headers). Pure: no I/O, never throws on bad input.

export type DecodedRecord =
  { ok: true; event: CrashEvent; index: string } | { ok: false; code: RecordErrorCode; error: string };
export type DecodedAnalysis =
  { ok: true; record: AnalysisRecord; index: string } | { ok: false; code: RecordErrorCode; error: string };

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

/** A decoded message and the monthly index its `@timestamp` names, or why it has none. */
function withIndex<T extends { '@timestamp': string }>(
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
  try {
    return { ok: true, value: decoded.value, index: crashIndexFor(decoded.value['@timestamp'], alias) };
  } catch (err) {
    // The schema's date-time format and Date's parser disagree on a few exotic forms.
    return { ok: false, code: 'PM_ERR_RECORD_INVALID', error: `data.@timestamp: ${(err as Error).message}` };
  }
}

export function decodeRecord(value: Buffer | null, alias: string): DecodedRecord {
  const decoded = withIndex(decodeCrashMessage(value), alias);
  return decoded.ok ? { ok: true, event: decoded.value, index: decoded.index } : decoded;
}

/** An analysis record, in the index of its crash's month (the record carries the crash's time). */
export function decodeAnalysis(value: Buffer | null, alias: string): DecodedAnalysis {
  const decoded = withIndex(decodeAnalysisMessage(value), alias);
  return decoded.ok ? { ok: true, record: decoded.value, index: decoded.index } : decoded;
}
