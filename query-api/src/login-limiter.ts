import { makeRoom } from './ttl-cache.ts';

// The limit before authentication: the TokenReviews an address may cause, counted per client
// address in a fixed window. A review in flight counts until its answer, and a refused token
// counts for the rest of the window, so an address guessing tokens at volume — in parallel too —
// costs the Kubernetes API at most `max` TokenReviews per window; past that it is answered 429
// before its token is looked at. Tokens already known are answered from the cache and cost
// nothing here; successful callers are limited afterwards, per user, by the routes' rate limit.

export interface LoginLimiterParams {
  max: number;
  windowMs: number;
  /** Addresses tracked at once; the oldest windows are dropped first beyond it. */
  maxAddresses?: number;
  now?: () => number;
}

interface Window {
  failures: number;
  inFlight: number;
  endsAt: number;
}

export class LoginLimiter {
  private readonly windows = new Map<string, Window>();
  private readonly params: Required<LoginLimiterParams>;

  constructor(params: LoginLimiterParams) {
    this.params = { maxAddresses: 100_000, now: Date.now, ...params };
  }

  /**
   * Reserves a review for `address`: 0 when it may go ahead (then `release` it once answered),
   * else the milliseconds until the address may try again.
   */
  reserve(address: string): number {
    const w = this.current(address) ?? this.open(address);
    if (w.failures + w.inFlight >= this.params.max) return Math.max(1, w.endsAt - this.params.now());
    w.inFlight += 1;
    return 0;
  }

  release(address: string): void {
    const w = this.current(address);
    if (w && w.inFlight > 0) w.inFlight -= 1;
  }

  /** A review of `address` refused its token. */
  failed(address: string): void {
    (this.current(address) ?? this.open(address)).failures += 1;
  }

  get size(): number {
    return this.windows.size;
  }

  private current(address: string): Window | undefined {
    const w = this.windows.get(address);
    if (w === undefined) return undefined;
    if (w.endsAt > this.params.now()) return w;
    this.windows.delete(address);
    return undefined;
  }

  private open(address: string): Window {
    const now = this.params.now();
    if (this.windows.size >= this.params.maxAddresses)
      makeRoom(this.windows, this.params.maxAddresses, (w) => w.endsAt <= now);
    const w = { failures: 0, inFlight: 0, endsAt: now + this.params.windowMs };
    this.windows.set(address, w);
    return w;
  }
}
