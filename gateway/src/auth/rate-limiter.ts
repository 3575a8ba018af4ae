import { performance } from 'node:perf_hooks';

export interface RateLimit {
  /** Requests per second, sustained. */
  readonly ratePerSecond: number;
  /** Requests that may come at once after a quiet period: the bucket's size. */
  readonly burst: number;
  /**
   * Buckets kept at most; past it the least recently used is forgotten (it starts full again when its
   * key returns). Unset: no bound, for keys that are few by construction (API key ids).
   */
  readonly maxKeys?: number;
}

export type RateDecision = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterSeconds: number };

/**
 * One token bucket per key (an API key's id, a client address), in memory. A bucket starts full,
 * refills at `ratePerSecond` up to `burst`, and each request takes one token. A gateway's limit is its
 * own (N gateways allow N times the rate).
 */
export class TokenBucketLimiter<K> {
  private readonly buckets = new Map<K, { tokens: number; updatedAt: number }>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = () => performance.now(),
  ) {}

  take(key: K): RateDecision {
    const { ratePerSecond, burst, maxKeys } = this.limit;
    const now = this.now();
    const bucket = this.buckets.get(key) ?? { tokens: burst, updatedAt: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.updatedAt) / 1000) * ratePerSecond);
    bucket.updatedAt = now;
    if (maxKeys === undefined) {
      this.buckets.set(key, bucket);
    } else {
      // Re-inserted, so that the map's order is least recently used first.
      this.buckets.delete(key);
      this.buckets.set(key, bucket);
      if (this.buckets.size > maxKeys) this.buckets.delete(this.buckets.keys().next().value as K);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / ratePerSecond)) };
  }
}
