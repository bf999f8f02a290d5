// A small map whose entries expire, bounded in size: the short-lived memory of TokenReview and
// SubjectAccessReview answers and of the namespaces in the index. Concurrent look-ups of the
// same key share one promise, so a burst of requests costs the Kubernetes API one review.

/**
 * Makes room for one more entry in a map bounded at `max`: the expired entries go, then, while
 * still full, the oldest (a Map iterates in insertion order).
 */
export function makeRoom<V>(map: Map<string, V>, max: number, expired: (value: V) => boolean): void {
  for (const [k, v] of map) if (expired(v)) map.delete(k);
  for (const k of map.keys()) {
    if (map.size < max) break;
    map.delete(k);
  }
}

export class TtlCache<V> {
  private readonly entries = new Map<string, { value: Promise<V>; expires: number }>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(params: { ttlMs: number; maxEntries?: number; now?: () => number }) {
    this.ttlMs = params.ttlMs;
    this.maxEntries = params.maxEntries ?? 10_000;
    this.now = params.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached value, or load()'s; a failed load is not kept. */
  get(key: string, load: () => Promise<V>): Promise<V> {
    const now = this.now();
    const hit = this.entries.get(key);
    if (hit && hit.expires > now) return hit.value;
    if (hit) this.entries.delete(key);
    const value = load();
    if (this.ttlMs > 0) {
      if (this.entries.size >= this.maxEntries)
        makeRoom(this.entries, this.maxEntries, (e) => e.expires <= now);
      this.entries.set(key, { value, expires: now + this.ttlMs });
      value.catch(() => {
        if (this.entries.get(key)?.value === value) this.entries.delete(key);
      });
    }
    return value;
  }

  clear(): void {
    this.entries.clear();
  }
}
