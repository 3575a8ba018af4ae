import type { Logger } from 'pino';
import { hashApiKey, isWellFormedApiKey, type ApiKeyPrincipal } from './api-keys';

export interface AuthenticatorOptions {
  /** The active key with this SHA-256, if any (findActiveApiKey on the pool). */
  readonly lookup: (keyHash: Buffer) => Promise<ApiKeyPrincipal | undefined>;
  /** How long an answer of `lookup` is trusted; a revoked key stops working within this. 0: every request asks. */
  readonly ttlMs: number;
  readonly logger: Logger;
  /** Unknown keys remembered at most; the oldest are forgotten first. */
  readonly maxUnknownKeys?: number;
  readonly now?: () => number;
}

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
 * key costs no query, but only up to `maxUnknownKeys` of them.
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

  constructor(private readonly options: AuthenticatorOptions) {
    this.maxUnknownKeys = options.maxUnknownKeys ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  async authenticate(key: string): Promise<ApiKeyPrincipal | undefined> {
    if (!isWellFormedApiKey(key)) return undefined;
    const hash = hashApiKey(key);
    const id = hash.toString('base64');
    const entry = this.known.get(id) ?? this.unknown.get(id);
    if (entry !== undefined && this.now() - entry.checkedAt < this.options.ttlMs) return entry.principal;
    if (entry?.pending !== undefined) return entry.pending;
    return this.check(id, hash, entry);
  }

  private check(id: string, hash: Buffer, known: Entry | undefined): Promise<ApiKeyPrincipal | undefined> {
    const entry = known ?? this.file(id, { principal: undefined, checkedAt: NEVER, pending: undefined });
    const startedAt = this.now();
    entry.pending = this.options.lookup(hash).then(
      (principal) => {
        entry.pending = undefined;
        entry.principal = principal;
        entry.checkedAt = startedAt;
        this.file(id, entry);
        return principal;
      },
      (error: unknown) => {
        entry.pending = undefined;
        if (entry.checkedAt === NEVER) {
          this.unknown.delete(id);
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
