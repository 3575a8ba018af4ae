import type { Pool, PoolClient } from 'pg';
import { DEMO_DEVICES, DEMO_USERS, type DemoDevice, type DemoUser } from './demo-data';

export interface SeedCounts {
  /** Users inserted by this call (0 when they were all there already). */
  users: number;
  /** Devices inserted by this call. */
  devices: number;
}

// Explicit ids, so the demo users are the same rows everywhere; existing rows are left alone.
const INSERT_USERS = `
  INSERT INTO users (id, name, age)
  SELECT * FROM unnest($1::int[], $2::text[], $3::int[])
  ON CONFLICT (id) DO NOTHING`;

// Inserting explicit ids does not advance the identity sequence; move it past the highest id so that
// users created later through the API do not collide. Never move it backwards: ids handed out before
// (even to users deleted since) stay unused.
const ADVANCE_USER_ID_SEQUENCE = `
  SELECT setval(seq, greatest((SELECT max(id) FROM users), pg_sequence_last_value(seq), 1))
  FROM CAST(pg_get_serial_sequence('users', 'id') AS regclass) AS seq`;

const INSERT_DEVICES = `
  INSERT INTO devices (id, type, name)
  SELECT * FROM unnest($1::varchar[], $2::text[], $3::text[])
  ON CONFLICT (id) DO NOTHING`;

/**
 * Inserts the demo users and devices that are missing, in one transaction. Safe to run any number of
 * times and from several processes at once.
 */
export async function seedDemoData(pool: Pool): Promise<SeedCounts> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    try {
      const counts = await insertDemoRows(client, DEMO_USERS, DEMO_DEVICES);
      await client.query('COMMIT');
      return counts;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {
        broken = true; // the connection is in an unknown state: do not hand it back to the pool
      });
      throw error;
    }
  } finally {
    client.release(broken);
  }
}

async function insertDemoRows(
  client: PoolClient,
  users: readonly DemoUser[],
  devices: readonly DemoDevice[],
): Promise<SeedCounts> {
  // Held until commit. It conflicts with the lock every INSERT takes, so a user created through the API
  // meanwhile waits and then draws its id from the advanced sequence instead of colliding with a demo
  // id; concurrent seeders queue up too. Reads and foreign-key checks against users are not blocked.
  await client.query('LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE');
  const insertedUsers = await client.query(INSERT_USERS, [
    users.map((user) => user.id),
    users.map((user) => user.name),
    users.map((user) => user.age),
  ]);
  await client.query(ADVANCE_USER_ID_SEQUENCE);
  const insertedDevices = await client.query(INSERT_DEVICES, [
    devices.map((device) => device.id),
    devices.map((device) => device.type),
    devices.map((device) => device.name),
  ]);
  return { users: insertedUsers.rowCount ?? 0, devices: insertedDevices.rowCount ?? 0 };
}

/** True when there are no users and no devices: a fresh database that start-up may seed. */
export async function databaseIsEmpty(pool: Pool): Promise<boolean> {
  const result = await pool.query<{ empty: boolean }>(
    `SELECT NOT EXISTS (SELECT 1 FROM users) AND NOT EXISTS (SELECT 1 FROM devices) AS empty`,
  );
  return result.rows[0]?.empty === true;
}
