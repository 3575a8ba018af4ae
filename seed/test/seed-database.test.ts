import { createTestDatabase } from '../../gateway/test/helpers/database';
import { DEMO_DEVICES, DEMO_USERS, databaseIsEmpty, seedDemoData } from '../../gateway/src/db/demo-data';

type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>;

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

beforeEach(async () => {
  // Each test starts from a fresh, migrated database: no rows, identity back at 1.
  await db.pool.query('TRUNCATE users, devices RESTART IDENTITY CASCADE');
});

async function createUserThroughApi(name: string): Promise<number> {
  const result = await db.pool.query<{ id: number }>('INSERT INTO users (name) VALUES ($1) RETURNING id', [name]);
  return result.rows[0]!.id;
}

describe('seedDemoData', () => {
  it('inserts 100 users and 60 devices once, then nothing', async () => {
    expect(await databaseIsEmpty(db.pool)).toBe(true);
    expect(await seedDemoData(db.pool)).toEqual({ users: 100, devices: 60 });
    expect(await databaseIsEmpty(db.pool)).toBe(false);
    expect(await seedDemoData(db.pool)).toEqual({ users: 0, devices: 0 });
  });

  it('stores the demo rows as they are defined', async () => {
    await seedDemoData(db.pool);
    const users = await db.pool.query('SELECT id, name, age FROM users ORDER BY id');
    expect(users.rows).toEqual(DEMO_USERS.map((user) => ({ ...user })));
    const devices = await db.pool.query('SELECT id, type, name FROM devices ORDER BY id');
    const expected = [...DEMO_DEVICES].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    expect(devices.rows).toEqual(expected.map((device) => ({ ...device })));
  });

  it('moves the user id sequence past the demo users, so the next user created gets 101', async () => {
    await seedDemoData(db.pool);
    expect(await createUserThroughApi('x')).toBe(101);
  });

  it('never moves the sequence backwards when run again', async () => {
    await seedDemoData(db.pool);
    expect(await createUserThroughApi('first')).toBe(101);
    expect(await createUserThroughApi('second')).toBe(102);
    await db.pool.query('DELETE FROM users WHERE id > 100');
    expect(await seedDemoData(db.pool)).toEqual({ users: 0, devices: 0 });
    expect(await createUserThroughApi('third')).toBe(103);
  });

  it('fills in only what is missing and leaves existing rows alone', async () => {
    await seedDemoData(db.pool);
    await db.pool.query("UPDATE users SET name = 'Renamed' WHERE id = 2");
    await db.pool.query('DELETE FROM users WHERE id = 5');
    await db.pool.query('DELETE FROM devices WHERE id = $1', [DEMO_DEVICES[0]!.id]);
    expect(await seedDemoData(db.pool)).toEqual({ users: 1, devices: 1 });
    const renamed = await db.pool.query('SELECT name FROM users WHERE id = 2');
    expect(renamed.rows[0]).toEqual({ name: 'Renamed' });
  });

  it('seeds around users that were created before it ran', async () => {
    expect(await createUserThroughApi('early')).toBe(1);
    expect(await seedDemoData(db.pool)).toEqual({ users: 99, devices: 60 });
    expect(await createUserThroughApi('late')).toBe(101);
  });

  it('inserts each row once when two processes seed at the same time', async () => {
    const results = await Promise.all([seedDemoData(db.pool), seedDemoData(db.pool)]);
    expect(results.reduce((sum, counts) => sum + counts.users, 0)).toBe(100);
    expect(results.reduce((sum, counts) => sum + counts.devices, 0)).toBe(60);
    expect(await createUserThroughApi('x')).toBe(101);
  });
});

describe('databaseIsEmpty', () => {
  it('is false once there is a user or a device', async () => {
    expect(await databaseIsEmpty(db.pool)).toBe(true);
    await db.pool.query("INSERT INTO devices (id) VALUES ('id100-aa-100-AbCdEfGhI')");
    expect(await databaseIsEmpty(db.pool)).toBe(false);
    await db.pool.query('TRUNCATE devices CASCADE');
    await createUserThroughApi('only');
    expect(await databaseIsEmpty(db.pool)).toBe(false);
  });
});
