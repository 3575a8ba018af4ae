import type { Queryable } from './pool';

/** Which of these user ids name a row in users. */
export async function existingUserIds(db: Queryable, ids: readonly number[]): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>('SELECT id FROM users WHERE id = ANY($1::int[])', [ids]);
  return rows.map((row) => row.id);
}

/** Which of these device ids name a row in devices. */
export async function existingDeviceIds(db: Queryable, ids: readonly string[]): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM devices WHERE id = ANY($1::varchar[])', [ids]);
  return rows.map((row) => row.id);
}
