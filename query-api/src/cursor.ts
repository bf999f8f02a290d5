import { isCrashId } from '@podmortem/contract';
import { PM_ERR_BAD_CURSOR } from './errors.ts';

// The search cursor: Elasticsearch's search_after values of the last hit of a page (the crash's
// time in epoch ms and its id, the sort of every search), as opaque base64url JSON. A cursor is
// decoded strictly: anything but what encodeCursor makes is a 400, never a query.

export type SortValues = [number, string];

export const CURSOR_PATTERN = '^[A-Za-z0-9_-]{1,200}$';

export function encodeCursor(sort: SortValues): string {
  return Buffer.from(JSON.stringify({ v: 1, t: sort[0], id: sort[1] })).toString('base64url');
}

export function decodeCursor(cursor: string): SortValues {
  if (!new RegExp(CURSOR_PATTERN).test(cursor)) throw PM_ERR_BAD_CURSOR();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw PM_ERR_BAD_CURSOR();
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw PM_ERR_BAD_CURSOR();
  const { v, t, id } = value as Record<string, unknown>;
  if (Object.keys(value).length !== 3 || v !== 1) throw PM_ERR_BAD_CURSOR();
  if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0) throw PM_ERR_BAD_CURSOR();
  if (typeof id !== 'string' || !isCrashId(id)) throw PM_ERR_BAD_CURSOR();
  return [t, id];
}

/** The sort values Elasticsearch returned for a hit, checked before they are handed out. */
export function sortValuesOf(sort: unknown): SortValues | undefined {
  if (!Array.isArray(sort) || sort.length !== 2) return undefined;
  const [t, id] = sort as unknown[];
  if (typeof t !== 'number' || typeof id !== 'string') return undefined;
  return [t, id];
}
