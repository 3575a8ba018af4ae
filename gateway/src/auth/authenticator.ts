import type { Logger } from 'pino';
import { AppError } from '../contract/errors';
import { hashApiKey, isWellFormedApiKey, type ApiKeyPrincipal } from './api-keys';
import { ConcurrencyLimit } from './concurrency-limit';
import type { RateDecision } from './rate-limiter';

export interface AuthenticatorOptions {
  /** The active key with this SHA-256, if any (findActiveApiKey on the pool). */
  readonly lookup: (keyHash: Buffer) => Promise<ApiKeyPrincipal | undefined>;
  /**
   * How long an answer of `lookup` is trusted when no change to the key is heard of (forget); a
   * revoked key stops working within this even then. 0: every request asks.
   */
  readonly ttlMs: number;
  readonly logger: Logger;
  /** Unknown keys remembered at most; the oldest are forgotten first. */
  readonly maxUnknownKeys?: number;
  /** Lookups running at once at most; LOOKUPS_WAITING_PER_SLOT times as many wait, more get 429. Unset: no limit. */
  readonly maxConcurrentLookups?: number;
  readonly now?: () => number;
}

/** How many lookups may wait for each slot of maxConcurrentLookups before the next one is refused. */
export const LOOKUPS_WAITING_PER_SLOT = 64;

/** checkedAt of an entry whose first lookup is still running. */
const NEVER = -Infinity;

/**
 * One cached answer for one key hash. `checkedAt` is when PostgreSQL last confirmed it; `pending` is
 * the lookup in flight, shared by every request with this key while it runs.
 */
interface Entry {
  principal: ApiKeyPrincipal | undefined;
  checkedAt: number;
  pending: Promise<ApiKeyPrincipal | undefined> | undefined;
}

/**
 * Resolves API keys to their owners with at most one query per key per `ttlMs`. Valid keys are few
 * (one entry each, never evicted); unknown keys are remembered too, so that a client repeating a bad
 * key costs no query, but only up to `maxUnknownKeys` of them. `forget` drops a key that changed
 * (revoked, say: api-key-changes.ts hears of it from PostgreSQL), so that its next request asks again.
 *
 * A key not known to be valid is looked up only if the caller's `admitLookup` allows it (a budget per
 * client address), and at most `maxConcurrentLookups` lookups run at once: a flood of random keys
 * cannot take the pool's connections from the writer.
 *
 * When a re-check fails (PostgreSQL down), the last answer is kept for another `ttlMs` rather than
 * refusing every client: a revocation cannot be written while PostgreSQL is down either. A key never
 * seen before cannot be checked then, and its request fails (503 from the error handler).
 */
export class ApiKeyAuthenticator {
  private readonly known = new Map<string, Entry>();
  private readonly unknown = new Map<string, Entry>();
  private readonly maxUnknownKeys: number;
  private readonly now: () => number;
  private readonly lookups: ConcurrencyLimit | undefined;
  /** Counts forget calls: a lookup that started before one may have read what the change replaced. */
  private generation = 0;

  constructor(private readonly options: AuthenticatorOptions) {
    this.maxUnknownKeys = options.maxUnknownKeys ?? 10_000;
    this.now = options.now ?? Date.now;
    const slots = options.maxConcurrentLookups;
    this.lookups = slots === undefined ? undefined : new ConcurrencyLimit(slots, slots * LOOKUPS_WAITING_PER_SLOT);
  }

  /**
   * The key's owner, or undefined for an unknown or revoked key. Throws 429 `overloaded` when the key
   * would need a lookup that `admitLookup` or the limit on concurrent lookups refuses.
   */
  async authenticate(key: string, admitLookup?: () => RateDecision): Promise<ApiKeyPrincipal | undefined> {
    if (!isWellFormedApiKey(key)) return undefined;
    const hash = hashApiKey(key);
    const id = hash.toString('hex');
    const entry = this.known.get(id) ?? this.unknown.get(id);
    if (entry !== undefined && this.now() - entry.checkedAt < this.options.ttlMs) return entry.principal;
    if (entry?.pending !== undefined) return entry.pending;
    // A key that was valid is re-checked whoever sends it (valid keys are few); any other key costs
    // the sender's budget.
    const wasValid = entry?.principal !== undefined;
    if (!wasValid && admitLookup !== undefined) {
      const decision = admitLookup();
      if (!decision.allowed) {
        throw new AppError(
          'overloaded',
          'too many lookups of unknown API keys from this address (AUTH_LOOKUP_RATE_PER_ADDRESS); retry later',
          { retryAfterSeconds: decision.retryAfterSeconds },
        );
      }
    }
    if (this.lookups?.full === true) {
      // A valid key's re-check can wait for a quieter moment; its answer stands meanwhile.
      if (wasValid) return entry.principal;
      throw new AppError('overloaded', 'too many API key lookups at once (AUTH_LOOKUP_CONCURRENCY); retry later');
    }
    return this.check(id, hash, entry);
  }

  /** Drops what is cached for the key with this SHA-256 (hex), so that its next request asks PostgreSQL. */
  forget(keyHashHex: string): void {
    this.generation++;
    this.known.delete(keyHashHex);
    this.unknown.delete(keyHashHex);
  }

  /** Drops every cached answer: after changes that may not have been heard of (a lost connection). */
  forgetAll(): void {
    this.generation++;
    this.known.clear();
    this.unknown.clear();
  }

  private check(id: string, hash: Buffer, known: Entry | undefined): Promise<ApiKeyPrincipal | undefined> {
    const entry = known ?? this.file(id, { principal: undefined, checkedAt: NEVER, pending: undefined });
    const startedAt = this.now();
    const generation = this.generation;
    const lookup = (): Promise<ApiKeyPrincipal | undefined> => this.options.lookup(hash);
    entry.pending = (this.lookups === undefined ? lookup() : this.lookups.run(lookup)).then(
      (principal) => {
        entry.pending = undefined;
        // A key forgotten meanwhile may have changed after this lookup read it: this request has its
        // answer, but it is not kept (the entry stays out of date, so the next request asks again).
        if (generation !== this.generation) return principal;
        entry.principal = principal;
        entry.checkedAt = startedAt;
        this.file(id, entry);
        return principal;
      },
      (error: unknown) => {
        entry.pending = undefined;
        if (entry.checkedAt === NEVER) {
          if (this.unknown.get(id) === entry) this.unknown.delete(id);
          throw error;
        }
        // Keep the last answer for another period instead of asking on every request meanwhile.
        entry.checkedAt = startedAt;
        this.options.logger.warn(
          { err: error, apiKey: entry.principal?.name },
          'API key re-check failed; the last answer is kept for another AUTH_CACHE_TTL_MS',
        );
        return entry.principal;
      },
    );
    return entry.pending;
  }

  /** Puts the entry in the map its answer belongs to; a key can move between them, on revocation say. */
  private file(id: string, entry: Entry): Entry {
    if (entry.principal === undefined) {
      this.known.delete(id);
      if (!this.unknown.has(id) && this.unknown.size >= this.maxUnknownKeys) {
        const oldest = this.unknown.keys().next().value;
        if (oldest !== undefined) this.unknown.delete(oldest);
      }
      this.unknown.set(id, entry);
    } else {
      this.unknown.delete(id);
      this.known.set(id, entry);
    }
    return entry;
  }
}
