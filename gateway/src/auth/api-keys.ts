import { createHash, randomBytes } from 'node:crypto';
import { SCOPES, insertApiKey, type Scope } from '../db/api-keys';
import type { Queryable } from '../db/pool';
import { sqlState } from '../db/sqlstate';

// The SQL and the row types are db/api-keys.ts; its callers (keys CLI, access control) import them from here.
export {
  SCOPES,
  findActiveApiKey,
  listApiKeys,
  revokeApiKey,
  type ApiKeyListing,
  type ApiKeyPrincipal,
  type Scope,
} from '../db/api-keys';

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
export async function createApiKey(pool: Queryable, name: string, scope: Scope): Promise<{ key: string; id: number }> {
  const key = generateApiKey();
  try {
    return { key, id: await insertApiKey(pool, name, scope, hashApiKey(key)) };
  } catch (error) {
    if (sqlState(error) === UNIQUE_VIOLATION) throw new DuplicateKeyNameError(name);
    throw error;
  }
}
