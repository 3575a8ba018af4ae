import { createHash, randomBytes } from 'node:crypto';
import type { Pool } from 'pg';
import { sqlState } from '../db/sqlstate';

/** `ingest` may post metrics; `admin` may do everything, ingest included. */
export const SCOPES = ['ingest', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who a valid key belongs to; the key itself is never kept. */
export interface ApiKeyPrincipal {
  readonly id: number;
  readonly name: string;
  readonly scope: Scope;
}

export interface ApiKeyListing {
  readonly name: string;
  readonly scope: Scope;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
  readonly lastUsedAt: Date | null;
}

const KEY_PREFIX = 'mgk_';
/** `mgk_` and 32 random bytes in base64url (43 characters). */
const KEY_PATTERN = /^mgk_[A-Za-z0-9_-]{43}$/;
/** As the migration's CHECK: printable, no spaces, so that `keys list` stays one row per key. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/;

export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** Whether `key` has the shape of a key we issue; anything else is refused without a query. */
export function isWellFormedApiKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

export function isValidKeyName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** SHA-256 of the key: what is stored and looked up, so a comparison never involves the secret. */
export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

export class DuplicateKeyNameError extends Error {
  constructor(readonly keyName: string) {
    super(`an API key named ${JSON.stringify(keyName)} exists already (revoked keys keep their names)`);
    this.name = 'DuplicateKeyNameError';
  }
}

const UNIQUE_VIOLATION = '23505';

/** Stores a new key's hash and returns the key, which exists nowhere else from then on. */
export async function createApiKey(pool: Pool, name: string, scope: Scope): Promise<{ key: string; id: number }> {
  const key = generateApiKey();
  try {
    const { rows } = await pool.query<{ id: number }>(
      'INSERT INTO api_keys (name, scope, key_hash) VALUES ($1, $2, $3) RETURNING id',
      [name, scope, hashApiKey(key)],
    );
    return { key, id: (rows[0] as { id: number }).id };
  } catch (error) {
    if (sqlState(error) === UNIQUE_VIOLATION) throw new DuplicateKeyNameError(name);
    throw error;
  }
}

/** Revokes the key named `name`; says whether there was one, and when it was (or already had been) revoked. */
export async function revokeApiKey(
  pool: Pool,
  name: string,
): Promise<{ found: false } | { found: true; revokedAt: Date; already: boolean }> {
  const { rows } = await pool.query<{ revoked_at: Date; already: boolean }>(
    // now() is the transaction's start: a key revoked by this statement has revoked_at = now() exactly.
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE name = $1
     RETURNING revoked_at, revoked_at <> now() AS already`,
    [name],
  );
  const row = rows[0];
  return row === undefined ? { found: false } : { found: true, revokedAt: row.revoked_at, already: row.already };
}

export async function listApiKeys(pool: Pool): Promise<ApiKeyListing[]> {
  const { rows } = await pool.query<{
    name: string;
    scope: Scope;
    created_at: Date;
    revoked_at: Date | null;
    last_used_at: Date | null;
  }>('SELECT name, scope, created_at, revoked_at, last_used_at FROM api_keys ORDER BY created_at, id');
  return rows.map((row) => ({
    name: row.name,
    scope: row.scope,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
  }));
}

/**
 * The active key with this hash, if any, marking it used. One statement: the authenticator calls it
 * once per key per cache period, so last_used_at is as precise as AUTH_CACHE_TTL_MS.
 */
export async function findActiveApiKey(pool: Pool, keyHash: Buffer): Promise<ApiKeyPrincipal | undefined> {
  const { rows } = await pool.query<ApiKeyPrincipal>(
    `UPDATE api_keys SET last_used_at = now()
      WHERE key_hash = $1 AND revoked_at IS NULL
      RETURNING id, name, scope`,
    [keyHash],
  );
  return rows[0];
}
