import { crashIndexFor, decodeCrashMessage, type CrashEvent } from '@podmortem/contract';

// One Kafka record value → a crash event and the monthly index it belongs in, or the reason it can
// never be indexed (for the dead-letter headers). Pure: no I/O, never throws on bad input.

export type DecodedRecord =
  | { ok: true; event: CrashEvent; index: string }
  | { ok: false; code: 'PM_ERR_RECORD_NOT_JSON' | 'PM_ERR_RECORD_INVALID'; error: string };

/** Dead-letter headers stay small whatever the record held. */
export const MAX_ERROR_TEXT = 1000;

export function truncateError(text: string): string {
  return text.length <= MAX_ERROR_TEXT ? text : `${text.slice(0, MAX_ERROR_TEXT - 1)}…`;
}

export function decodeRecord(value: Buffer | null, alias: string): DecodedRecord {
  const decoded = decodeCrashMessage(value);
  if (!decoded.ok) {
    const first = decoded.errors[0] ?? '(record): invalid';
    const code = first.startsWith('(record):') ? 'PM_ERR_RECORD_NOT_JSON' : 'PM_ERR_RECORD_INVALID';
    return { ok: false, code, error: truncateError(decoded.errors.join('; ')) };
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
