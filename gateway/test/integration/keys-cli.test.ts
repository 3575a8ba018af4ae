import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { hashApiKey } from '../../src/auth/api-keys';
import { UsageError, parseKeysCommand, runKeysCommand, type KeysCommand } from '../../src/cli/keys-command';
import { PROJECT_ROOT } from '../../src/paths';
import { createTestDatabase, type TestDatabase } from '../helpers/database';

// `npm run keys -- create|revoke|list`: the command's logic against a real database, and the built
// entry point as a process, whose output scripts rely on (the key is the last line of stdout).

const KEYS_JS = path.join(PROJECT_ROOT, 'dist', 'gateway', 'src', 'cli', 'keys.js');
const KEY_LINE = /^mgk_[A-Za-z0-9_-]{43}$/;

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

async function run(argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runKeysCommand(
    parseKeysCommand(argv),
    db.pool,
    { out: (line) => out.push(line), err: (line) => err.push(line) },
    30_000,
  );
  return { code, out, err };
}

describe('parseKeysCommand', () => {
  it.each<[string[], KeysCommand]>([
    [['create', '--name', 'fleet', '--scope', 'ingest'], { command: 'create', name: 'fleet', scope: 'ingest' }],
    [
      ['create', '--scope=admin', '--name=ops.team@example'],
      { command: 'create', name: 'ops.team@example', scope: 'admin' },
    ],
    [['revoke', '--name', 'fleet'], { command: 'revoke', name: 'fleet' }],
    [['list'], { command: 'list' }],
  ])('reads %j', (argv, expected) => {
    expect(parseKeysCommand(argv)).toEqual(expected);
  });

  it.each([
    [[]],
    [['rotate']],
    [['create', '--name', 'fleet']],
    [['create', '--name', 'fleet', '--scope', 'root']],
    [['create', '--scope', 'ingest']],
    [['create', '--name', 'has space', '--scope', 'ingest']],
    [['create', '--name', '-dash-first', '--scope', 'ingest']],
    [['create', '--name', 'x'.repeat(101), '--scope', 'ingest']],
    [['revoke']],
    [['revoke', '--name', 'fleet', '--scope', 'admin']],
    [['list', '--name', 'fleet']],
    [['list', 'extra']],
    [['list', '--verbose']],
  ])('refuses %j with the usage', (argv) => {
    expect(() => parseKeysCommand(argv)).toThrow(UsageError);
    expect(() => parseKeysCommand(argv)).toThrow(/usage: npm run keys/);
  });
});

describe('runKeysCommand', () => {
  it('creates a key, prints it once as the last line, and stores only its hash', async () => {
    const { code, out, err } = await run(['create', '--name', 'fleet', '--scope', 'ingest']);
    expect({ code, err }).toEqual({ code: 0, err: [] });
    const key = out.at(-1) as string;
    expect(key).toMatch(KEY_LINE);
    expect(out.slice(0, -1).join('\n')).not.toContain(key);
    const { rows } = await db.pool.query(`SELECT scope, key_hash FROM api_keys WHERE name = 'fleet'`);
    expect(rows).toEqual([{ scope: 'ingest', key_hash: hashApiKey(key) }]);
    const stored = await db.pool.query(`SELECT * FROM api_keys`);
    expect(JSON.stringify(stored.rows)).not.toContain(key.slice(4));
  });

  it('creates a different key every time, and refuses a name that is taken', async () => {
    const first = await run(['create', '--name', 'a1', '--scope', 'admin']);
    const second = await run(['create', '--name', 'a2', '--scope', 'admin']);
    expect(first.out.at(-1)).not.toBe(second.out.at(-1));
    const again = await run(['create', '--name', 'a1', '--scope', 'ingest']);
    expect(again.code).toBe(1);
    expect(again.err.join('\n')).toMatch(/"a1" exists already/);
    expect(again.out).toEqual([]);
  });

  it('lists names, scopes and dates, never keys or hashes', async () => {
    const created = await run(['create', '--name', 'listed', '--scope', 'ingest']);
    const key = created.out.at(-1) as string;
    const { code, out } = await run(['list']);
    expect(code).toBe(0);
    expect(out[0]).toMatch(/^NAME +SCOPE +CREATED +LAST USED +REVOKED$/);
    const row = out.find((line) => line.startsWith('listed '));
    expect(row).toMatch(/^listed +ingest +\d{4}-\d\d-\d\dT[\d:.]+Z +- +-$/);
    const listing = out.join('\n');
    expect(listing).not.toContain(key);
    expect(listing).not.toContain(key.slice(4, 20));
    expect(listing).not.toContain(hashApiKey(key).toString('hex'));
    expect(listing).not.toContain(hashApiKey(key).toString('base64'));
  });

  it('revokes a key by name, says so again on a repeat, and fails for a name it does not know', async () => {
    await run(['create', '--name', 'to-revoke', '--scope', 'ingest']);
    const revoked = await run(['revoke', '--name', 'to-revoke']);
    expect(revoked.code).toBe(0);
    expect(revoked.out.join('\n')).toMatch(
      /"to-revoke" revoked; running gateways refuse it at once \(within 30000 ms, AUTH_CACHE_TTL_MS, if one is reconnecting/,
    );
    const { rows } = await db.pool.query(`SELECT revoked_at FROM api_keys WHERE name = 'to-revoke'`);
    expect(rows[0].revoked_at).toBeInstanceOf(Date);

    const repeated = await run(['revoke', '--name', 'to-revoke']);
    expect(repeated.code).toBe(0);
    expect(repeated.out.join('\n')).toMatch(/was already revoked at/);
    const again = await db.pool.query(`SELECT revoked_at FROM api_keys WHERE name = 'to-revoke'`);
    expect(again.rows[0].revoked_at).toEqual(rows[0].revoked_at);

    const listed = (await run(['list'])).out.find((line) => line.startsWith('to-revoke '));
    expect(listed).toMatch(/ \d{4}-\d\d-\d\dT[\d:.]+Z$/);

    const unknown = await run(['revoke', '--name', 'never-created']);
    expect(unknown).toEqual({ code: 1, out: [], err: ['no API key named "never-created"'] });
  });

  it('says to migrate first when the database has no api_keys table', async () => {
    const empty = await createTestDatabase({ migrated: false });
    try {
      const err: string[] = [];
      const code = await runKeysCommand(
        { command: 'list' },
        empty.pool,
        { out: () => undefined, err: (line) => err.push(line) },
        0,
      );
      expect(code).toBe(1);
      expect(err.join('\n')).toMatch(/npm run migrate/);
    } finally {
      await empty.drop();
    }
  });
});

describe('the keys command as a process', () => {
  const execFileAsync = promisify(execFile);
  const keys = (args: string[]) =>
    execFileAsync(process.execPath, [KEYS_JS, ...args], {
      env: { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: '' },
      timeout: 20_000,
    });

  beforeAll(() => {
    if (!existsSync(KEYS_JS)) throw new Error(`${KEYS_JS} is missing: run "npm run build" first (npm test does)`);
  });

  it('prints the new key as the last line of stdout and nothing on stderr; list and revoke work', async () => {
    const created = await keys(['create', '--name', 'process-key', '--scope', 'admin']);
    const lines = created.stdout.trimEnd().split('\n');
    expect(lines.at(-1)).toMatch(KEY_LINE);
    expect(created.stderr).toBe('');

    const listed = await keys(['list']);
    expect(listed.stdout).toMatch(/^process-key +admin /m);
    expect(listed.stdout).not.toContain(lines.at(-1) as string);

    const revoked = await keys(['revoke', '--name', 'process-key']);
    expect(revoked.stdout).toMatch(/revoked/);
  });

  it('exits 2 with the usage on a bad command line, before touching any database', async () => {
    await expect(keys(['create', '--name', 'x'])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/create needs --scope[\s\S]*usage: npm run keys/),
    });
  });

  it('exits 1 when the key to revoke does not exist', async () => {
    await expect(keys(['revoke', '--name', 'nobody'])).rejects.toMatchObject({
      code: 1,
      stderr: 'no API key named "nobody"\n',
    });
  });
});
