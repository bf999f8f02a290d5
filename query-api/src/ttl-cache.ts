// A small map whose entries expire, bounded in size: the short-lived memory of TokenReview and
// SubjectAccessReview answers and of the namespaces in the index. Concurrent look-ups of the
// same key share one promise, so a burst of requests costs the Kubernetes API one review.

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
      if (this.entries.size >= this.maxEntries) this.evict(now);
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

  private evict(now: number): void {
    for (const [k, e] of this.entries) if (e.expires <= now) this.entries.delete(k);
    // Still full: drop the oldest (a Map iterates in insertion order).
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
  }
}
