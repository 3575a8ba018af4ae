import type { Pool } from 'pg';
import type { Device, NewDevice, NewUser, User } from '../contract/schemas';

// The SQL of the users and devices routes (http/users-devices-routes.ts).

const USER_COLUMNS = 'id, name, age, created_at';
const DEVICE_COLUMNS = 'id, type, name, created_at';

export async function insertUser(pool: Pool, user: NewUser): Promise<User> {
  const { rows } = await pool.query<User>(`INSERT INTO users (name, age) VALUES ($1, $2) RETURNING ${USER_COLUMNS}`, [
    user.name,
    user.age ?? null,
  ]);
  return rows[0] as User;
}

export async function findUser(pool: Pool, id: number): Promise<User | undefined> {
  const { rows } = await pool.query<User>(`SELECT ${USER_COLUMNS} FROM users WHERE id = $1`, [id]);
  return rows[0];
}

/** The stored device, or undefined when one with its id exists already. */
export async function insertDevice(pool: Pool, device: NewDevice): Promise<Device | undefined> {
  const { rows } = await pool.query<Device>(
    `INSERT INTO devices (id, type, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING ${DEVICE_COLUMNS}`,
    [device.id, device.type ?? null, device.name ?? null],
  );
  return rows[0];
}

export async function findDevice(pool: Pool, id: string): Promise<Device | undefined> {
  const { rows } = await pool.query<Device>(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE id = $1`, [id]);
  return rows[0];
}
