import { setTimeout as sleep } from 'node:timers/promises';

// The one way the tests wait for something: ask again until it has happened, and fail naming
// what never did. A test never waits a fixed time and hopes.

/**
 * Calls `probe` every `everyMs` until it returns something other than `undefined` or `false`,
 * and returns that; throws naming `what` once `timeoutMs` has passed.
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 120_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
