import { parseArgs } from 'node:util';
import type { Pool } from 'pg';
import {
  DuplicateKeyNameError,
  createApiKey,
  isScope,
  isValidKeyName,
  listApiKeys,
  revokeApiKey,
  type Scope,
} from '../auth/api-keys';
import { sqlState } from '../db/sqlstate';

export const KEYS_USAGE = `usage: npm run keys -- <command>
  create --name NAME --scope ingest|admin   create a key; it is printed once, as the last line
  revoke --name NAME                        revoke a key; running gateways refuse it at once
  list                                      every key's name, scope and dates (never the key)
NAME: letters, digits and . _ @ -, at most 100 characters. ingest may post metrics; admin may do everything.`;

export type KeysCommand =
  | { readonly command: 'create'; readonly name: string; readonly scope: Scope }
  | { readonly command: 'revoke'; readonly name: string }
  | { readonly command: 'list' };

export class UsageError extends Error {
  constructor(message: string) {
    super(`${message}\n${KEYS_USAGE}`);
    this.name = 'UsageError';
  }
}

/** The command `argv` asks for (arguments after `npm run keys --`), checked before any database is opened. */
export function parseKeysCommand(argv: readonly string[]): KeysCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { name: { type: 'string' }, scope: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { positionals, values } = parsed;
  const [command, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  const name = (): string => {
    if (values.name === undefined) throw new UsageError(`${command} needs --name NAME`);
    if (!isValidKeyName(values.name)) throw new UsageError(`--name ${JSON.stringify(values.name)} is not a valid name`);
    return values.name;
  };
  const refuse = (option: 'name' | 'scope'): void => {
    if (values[option] !== undefined) throw new UsageError(`${command} takes no --${option}`);
  };
  switch (command) {
    case 'create': {
      const scope = values.scope;
      if (scope === undefined || !isScope(scope)) throw new UsageError('create needs --scope ingest or --scope admin');
      return { command, name: name(), scope };
    }
    case 'revoke':
      refuse('scope');
      return { command, name: name() };
    case 'list':
      refuse('name');
      refuse('scope');
      return { command };
    default:
      throw new UsageError(command === undefined ? 'no command given' : `unknown command ${JSON.stringify(command)}`);
  }
}

const UNDEFINED_TABLE = '42P01';

export interface KeysCommandIo {
  /** A line of the report (stdout). */
  readonly out: (line: string) => void;
  /** A line saying why the command failed (stderr). */
  readonly err: (line: string) => void;
}

/**
 * Runs a parsed command, writing its report line by line; returns the exit code. `create` writes the
 * new key as its very last line of output, so scripts can take it with `tail -n 1`.
 */
export async function runKeysCommand(
  command: KeysCommand,
  pool: Pool,
  { out, err }: KeysCommandIo,
  cacheTtlMs: number,
): Promise<number> {
  try {
    switch (command.command) {
      case 'create': {
        const { key } = await createApiKey(pool, command.name, command.scope);
        out(`API key ${JSON.stringify(command.name)} created with scope ${command.scope}.`);
        out('It is shown this once and stored only as a hash; send it as "Authorization: Bearer <key>":');
        out(key);
        return 0;
      }
      case 'revoke': {
        const revoked = await revokeApiKey(pool, command.name);
        if (!revoked.found) {
          err(`no API key named ${JSON.stringify(command.name)}`);
          return 1;
        }
        out(
          revoked.already
            ? `API key ${JSON.stringify(command.name)} was already revoked at ${revoked.revokedAt.toISOString()}`
            : `API key ${JSON.stringify(command.name)} revoked; running gateways refuse it at once ` +
                `(within ${cacheTtlMs} ms, AUTH_CACHE_TTL_MS, if one is reconnecting to PostgreSQL)`,
        );
        return 0;
      }
      case 'list': {
        const keys = await listApiKeys(pool);
        if (keys.length === 0) {
          out('no API keys yet: npm run keys -- create --name NAME --scope ingest|admin');
          return 0;
        }
        const date = (value: Date | null): string => value?.toISOString() ?? '-';
        const header = ['NAME', 'SCOPE', 'CREATED', 'LAST USED', 'REVOKED'];
        const table = [
          header,
          ...keys.map((key) => [key.name, key.scope, date(key.createdAt), date(key.lastUsedAt), date(key.revokedAt)]),
        ];
        const widths = header.map((_, column) => Math.max(...table.map((row) => (row[column] ?? '').length)));
        for (const row of table)
          out(
            row
              .map((cell, column) => cell.padEnd(widths[column] ?? 0))
              .join('  ')
              .trimEnd(),
          );
        return 0;
      }
    }
  } catch (error) {
    if (error instanceof DuplicateKeyNameError) {
      err(error.message);
      return 1;
    }
    if (sqlState(error) === UNDEFINED_TABLE) {
      err('the api_keys table does not exist: run "npm run migrate" (or start the gateway) first');
      return 1;
    }
    throw error;
  }
}
