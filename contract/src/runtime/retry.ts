import { setTimeout as sleep } from 'node:timers/promises';
import { isRetriable, RetriesExhaustedError } from './errors.ts';

// The one retry helper: exponential backoff with full jitter, defaults in one object, a typed
// "retries exhausted" error, and errors that are not retriable thrown at once.

/**
 * How a service waits a failure out: attempts, backoff, and which errors are worth another
 * attempt. Each service builds its policies once, from its configuration, with retryPolicy().
 */
export interface RetryPolicy {
  /** Attempts after the first; Infinity retries until the signal aborts. */
  retries: number;
  initialMs: number;
  maxMs: number;
  factor: number;
  /** 0 = no jitter, 1 = full jitter (a delay anywhere in [0, backoff]). */
  jitter: number;
  retriable: (err: unknown) => boolean;
}

export interface RetryOptions extends RetryPolicy {
  signal?: AbortSignal;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

export const retryDefaults: Readonly<RetryPolicy> = Object.freeze({
  retries: 5,
  initialMs: 100,
  maxMs: 30_000,
  factor: 2,
  jitter: 1,
  retriable: isRetriable,
});

/** The defaults with a service's own settings over them. */
export function retryPolicy(settings: Partial<RetryPolicy> = {}): RetryPolicy {
  return { ...retryDefaults, ...settings };
}

export function backoffDelay(
  attempt: number,
  o: Pick<RetryOptions, 'initialMs' | 'maxMs' | 'factor' | 'jitter'>,
  random = Math.random,
): number {
  const ceiling = Math.min(o.maxMs, o.initialMs * o.factor ** (attempt - 1));
  return Math.round(ceiling * (1 - o.jitter * random()));
}

export async function retry<T>(
  what: string,
  fn: (attempt: number) => Promise<T>,
  options: Partial<RetryOptions> = {},
): Promise<T> {
  const o: RetryOptions = { ...retryDefaults, ...options };
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      o.signal?.throwIfAborted();
      if (!o.retriable(err)) throw err;
      if (attempt > o.retries) throw new RetriesExhaustedError(what, attempt, err);
      const delayMs = backoffDelay(attempt, o);
      o.onRetry?.(err, attempt, delayMs);
      await sleep(delayMs, undefined, o.signal ? { signal: o.signal } : undefined);
    }
  }
}
