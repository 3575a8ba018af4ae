import type { Queryable } from './pool';

// The statements on api_keys (migration 0003); generating and hashing keys is auth/api-keys.ts.

/** `ingest` may post metrics; `admin` may do everything, ingest included. As the migration's CHECK. */
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

/** Stores a new key's hash; returns its id. A name that exists already fails with SQLSTATE 23505. */
export async function insertApiKey(db: Queryable, name: string, scope: Scope, keyHash: Buffer): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    'INSERT INTO api_keys (name, scope, key_hash) VALUES ($1, $2, $3) RETURNING id',
    [name, scope, keyHash],
  );
  return (rows[0] as { id: number }).id;
}

/** Revokes the key named `name`; says whether there was one, and when it was (or already had been) revoked. */
export async function revokeApiKey(
  db: Queryable,
  name: string,
): Promise<{ found: false } | { found: true; revokedAt: Date; already: boolean }> {
  const { rows } = await db.query<{ revoked_at: Date; already: boolean }>(
    // now() is the transaction's start: a key revoked by this statement has revoked_at = now() exactly.
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE name = $1
     RETURNING revoked_at, revoked_at <> now() AS already`,
    [name],
  );
  const row = rows[0];
  return row === undefined ? { found: false } : { found: true, revokedAt: row.revoked_at, already: row.already };
}

export async function listApiKeys(db: Queryable): Promise<ApiKeyListing[]> {
  const { rows } = await db.query<{
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
export async function findActiveApiKey(db: Queryable, keyHash: Buffer): Promise<ApiKeyPrincipal | undefined> {
  const { rows } = await db.query<ApiKeyPrincipal>(
    `UPDATE api_keys SET last_used_at = now()
      WHERE key_hash = $1 AND revoked_at IS NULL
      RETURNING id, name, scope`,
    [keyHash],
  );
  return rows[0];
}

/** Where migration 0005's trigger announces every change to api_keys: the key's SHA-256 in hex, or '' for all. */
export const API_KEY_CHANGES_CHANNEL = 'api_key_changes';

/** Asks for those announcements on `client`, a connection kept for them alone. */
export async function listenForApiKeyChanges(client: Queryable): Promise<void> {
  await client.query(`LISTEN ${API_KEY_CHANGES_CHANNEL}`);
}
