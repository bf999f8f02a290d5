import {
  crashIndexFor,
  decodeCrashMessage,
  type CrashEvent,
  type CrashMessageProblem,
} from '@podmortem/contract';
import type { IndexerErrorCode } from './errors.ts';

// One Kafka record value → a crash event and the monthly index it belongs in, or the reason it can
// never be indexed (for the dead-letter headers). Pure: no I/O, never throws on bad input.

export type DecodedRecord =
  { ok: true; event: CrashEvent; index: string } | { ok: false; code: RecordErrorCode; error: string };

type RecordErrorCode = Extract<IndexerErrorCode, 'PM_ERR_RECORD_NOT_JSON' | 'PM_ERR_RECORD_INVALID'>;

const CODE_OF_PROBLEM: Record<CrashMessageProblem, RecordErrorCode> = {
  'not-json': 'PM_ERR_RECORD_NOT_JSON',
  invalid: 'PM_ERR_RECORD_INVALID',
};

/** Dead-letter headers stay small whatever the record held. */
export const MAX_ERROR_TEXT = 1000;

export function truncateError(text: string): string {
  return text.length <= MAX_ERROR_TEXT ? text : `${text.slice(0, MAX_ERROR_TEXT - 1)}…`;
}

export function decodeRecord(value: Buffer | null, alias: string): DecodedRecord {
  const decoded = decodeCrashMessage(value);
  if (!decoded.ok) {
    return {
      ok: false,
      code: CODE_OF_PROBLEM[decoded.problem],
      error: truncateError(decoded.errors.join('; ')),
    };
  }
  let index: string;
  try {
    index = crashIndexFor(decoded.value['@timestamp'], alias);
  } catch (err) {
    // The schema's date-time format and Date's parser disagree on a few exotic forms.
    return { ok: false, code: 'PM_ERR_RECORD_INVALID', error: `data.@timestamp: ${(err as Error).message}` };
  }
  return { ok: true, event: decoded.value, index };
}
