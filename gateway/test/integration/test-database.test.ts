import { Client, type Pool } from 'pg';
import { withClient } from '../../src/db/dev-postgres';
import { createTestDatabase, testServerUrl, type TestDatabase } from '../helpers/database';

async function tableExists(pool: Pool, table: string): Promise<boolean> {
  const result = await pool.query<{ found: string | null }>('SELECT to_regclass($1) AS found', [table]);
  return result.rows[0]?.found != null;
}

async function databaseExists(name: string): Promise<boolean> {
  return withClient(testServerUrl(), async (client) => {
    const result = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return result.rows.length === 1;
  });
}

describe('createTestDatabase', () => {
  const databases: TestDatabase[] = [];

  async function create(options?: { migrated?: boolean }): Promise<TestDatabase> {
    const database = await createTestDatabase(options);
    databases.push(database);
    return database;
  }

  afterAll(async () => {
    await Promise.all(databases.map((database) => database.drop()));
  });

  test('gives each call a database of its own, cloned from the migrated template', async () => {
    const [first, second] = await Promise.all([create(), create()]);
    if (!first || !second) throw new Error('expected two databases');

    expect(first.name).toMatch(/^mg_t_/);
    expect(first.name).not.toBe(second.name);
    for (const database of [first, second]) {
      const result = await database.pool.query<{ name: string }>('SELECT current_database() AS name');
      expect(result.rows[0]?.name).toBe(database.name);
      expect(await tableExists(database.pool, 'user_metrics')).toBe(true);
    }

    await first.pool.query(`INSERT INTO users (name) VALUES ('only in the first')`);
    const inSecond = await second.pool.query('SELECT * FROM users');
    expect(inSecond.rows).toEqual([]);
  });

  test('gives an empty database with migrated: false', async () => {
    const database = await create({ migrated: false });

    expect(await tableExists(database.pool, 'user_metrics')).toBe(false);
    expect(await tableExists(database.pool, 'pgmigrations')).toBe(false);
  });

  test('drop() ends the pool and removes the database, even with other sessions on it', async () => {
    const database = await create();
    await database.pool.query('SELECT 1');
    const otherSession = new Client({ connectionString: database.url });
    otherSession.on('error', () => undefined); // the drop terminates it
    await otherSession.connect();
    expect(await databaseExists(database.name)).toBe(true);

    await database.drop();

    expect(await databaseExists(database.name)).toBe(false);
    expect(database.pool.ended).toBe(true);
    await otherSession.end().catch(() => undefined);
  });
});
