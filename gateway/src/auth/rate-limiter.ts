import { performance } from 'node:perf_hooks';

export interface RateLimit {
  /** Requests per second, sustained. */
  readonly ratePerSecond: number;
  /** Requests that may come at once after a quiet period: the bucket's size. */
  readonly burst: number;
}

export type RateDecision = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterSeconds: number };

/**
 * One token bucket per API key, in memory. A bucket starts full, refills at `ratePerSecond` up to
 * `burst`, and each request takes one token. Buckets exist only for authenticated keys, so there are
 * as many as there are keys in use; a gateway's limit is its own (N gateways allow N times the rate).
 */
export class KeyRateLimiter {
  private readonly buckets = new Map<number, { tokens: number; updatedAt: number }>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = () => performance.now(),
  ) {}

  take(keyId: number): RateDecision {
    const { ratePerSecond, burst } = this.limit;
    const now = this.now();
    const bucket = this.buckets.get(keyId) ?? { tokens: burst, updatedAt: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.updatedAt) / 1000) * ratePerSecond);
    bucket.updatedAt = now;
    this.buckets.set(keyId, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / ratePerSecond)) };
  }
}
