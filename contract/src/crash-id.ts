import { randomBytes } from 'node:crypto';

// Kept free of other imports: the core handler (run by the kernel once per crash, where start-up
// time is the crashing process's wait) imports it alone through '@podmortem/contract/crash-id'.

/** UUIDv7 in its canonical lower-case text form. */
export const CRASH_ID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$';

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
