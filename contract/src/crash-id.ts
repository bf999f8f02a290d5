import { randomBytes } from 'node:crypto';
import { CRASH_ID_PATTERN } from './crash-event.ts';

const crashIdRe = new RegExp(CRASH_ID_PATTERN);

/** A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so ids sort by time. */
export function newCrashId(nowMs: number = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(nowMs, 0, 6);
  b[6] = 0x70 | ((b[6] ?? 0) & 0x0f);
  b[8] = 0x80 | ((b[8] ?? 0) & 0x3f);
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function isCrashId(value: string): boolean {
  return crashIdRe.test(value);
}

/** The millisecond timestamp a crash id was made at. */
export function crashIdTime(id: string): number {
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
