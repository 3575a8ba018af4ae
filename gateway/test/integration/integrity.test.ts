import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { sqlState } from '../../src/db/sqlstate';
import { createTestDatabase, onCitus, type TestDatabase } from '../helpers/database';
import { until } from '../helpers/until';

// Referential integrity is PostgreSQL's, for every writer: migration 0002 replaced the per-row foreign
// keys with one check per statement, and these tests hold it to what the foreign keys guaranteed.

let db: TestDatabase;

const COLUMNS = 'user_id, device_id, talked_time, microphone_used, speaker_used, time_recorded';

async function insert(userId: number, deviceId: string | null = null): Promise<void> {
  await db.pool.query(`INSERT INTO user_metrics (${COLUMNS}) VALUES ($1, $2, 1, true, false, now())`, [
    userId,
    deviceId,
  ]);
}

async function copyRows(client: PoolClient, rows: string[]): Promise<void> {
  await pipeline(Readable.from([rows.join('')]), client.query(copyFrom(`COPY user_metrics (${COLUMNS}) FROM STDIN`)));
}

/**
 * The SQLSTATE of a COPY's refusal, as the gateway reads it. Citus reports a worker's refusal of a COPY
 * row with XX000 and the worker's message, from which sqlState() recovers the constraint's code
 * (db/sqlstate.ts); on one server the code is PostgreSQL's own.
 */
async function copyRefusal(client: PoolClient, rows: string[]): Promise<string | undefined> {
  const error: unknown = await copyRows(client, rows).then(
    () => new Error('the COPY was not refused'),
    (refusal: unknown) => refusal,
  );
  expect(error).toMatchObject({ code: onCitus() ? 'XX000' : sqlState(error) });
  return sqlState(error);
}

async function metricsOf(userId: number): Promise<{ device_id: string | null }[]> {
  const { rows } = await db.pool.query('SELECT device_id FROM user_metrics WHERE user_id = $1 ORDER BY id', [userId]);
  return rows;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) SELECT g, 'user ' || g FROM generate_series(1, 10) g`);
  await db.pool.query(`INSERT INTO devices (id) VALUES ('dev-a'), ('dev-b'), ('dev-c')`);
});

afterAll(async () => {
  await db?.drop();
});

it('has no per-row foreign keys left on user_metrics (on Citus, the two foreign keys of 0008)', async () => {
  const { rows } = await db.pool.query(
    `SELECT confrelid::regclass::text AS refers_to FROM pg_constraint
      WHERE conrelid = 'user_metrics'::regclass AND contype = 'f' ORDER BY 1`,
  );
  // Migration 0008 puts the foreign keys back on Citus: 0002's statement triggers would run per shard.
  expect(rows).toEqual(onCitus() ? [{ refers_to: 'devices' }, { refers_to: 'users' }] : []);
});

it('refuses an INSERT naming a missing user or device, with SQLSTATE 23503', async () => {
  await expect(insert(999)).rejects.toMatchObject({ code: '23503', detail: expect.stringContaining('(999)') });
  await expect(insert(1, 'no-such-device')).rejects.toMatchObject({
    code: '23503',
    detail: expect.stringContaining('no-such-device'),
  });
  await insert(1, 'dev-a');
  expect(await metricsOf(1)).toEqual([{ device_id: 'dev-a' }]);
});

it('refuses a whole multi-row INSERT and a whole COPY when one row is an orphan', async () => {
  await expect(
    db.pool.query(
      `INSERT INTO user_metrics (${COLUMNS}) VALUES (2, null, 1, true, true, now()), (404, null, 1, true, true, now())`,
    ),
  ).rejects.toMatchObject({ code: '23503' });
  const client = await db.pool.connect();
  try {
    const good = '2\tdev-b\t1\tt\tf\t2024-01-01T00:00:00Z\n';
    expect(await copyRefusal(client, [good, good, '404\t\\N\t1\tt\tf\t2024-01-01T00:00:00Z\n'])).toBe('23503');
    expect(await copyRefusal(client, [good, '2\tghost\t1\tt\tf\t2024-01-01T00:00:00Z\n'])).toBe('23503');
    await copyRows(client, [good, good]);
  } finally {
    client.release();
  }
  expect(await metricsOf(2)).toEqual([{ device_id: 'dev-b' }, { device_id: 'dev-b' }]);
});

it('refuses an UPDATE that points a metric at a missing user or device', async () => {
  await insert(3, 'dev-a');
  // Citus refuses any change of the distribution column itself (0A000: a row cannot move to another
  // shard), before a foreign key is looked at.
  await expect(db.pool.query('UPDATE user_metrics SET user_id = 777 WHERE user_id = 3')).rejects.toMatchObject({
    code: onCitus() ? '0A000' : '23503',
  });
  await expect(db.pool.query(`UPDATE user_metrics SET device_id = 'gone' WHERE user_id = 3`)).rejects.toMatchObject({
    code: '23503',
  });
  await db.pool.query(`UPDATE user_metrics SET device_id = 'dev-b' WHERE user_id = 3`);
  expect(await metricsOf(3)).toEqual([{ device_id: 'dev-b' }]);
});

it('deletes the metrics of a deleted user (cascade) and keeps the others', async () => {
  await insert(4);
  await insert(4, 'dev-c');
  await insert(5);
  await db.pool.query('DELETE FROM users WHERE id = 4');
  expect(await metricsOf(4)).toEqual([]);
  expect(await metricsOf(5)).toHaveLength(1);
});

it('sets device_id to null when a device is deleted', async () => {
  await insert(6, 'dev-c');
  await db.pool.query(`DELETE FROM devices WHERE id = 'dev-c'`);
  expect(await metricsOf(6)).toEqual([{ device_id: null }]);
});

it('refuses to change a referenced key or to truncate a referenced table', async () => {
  await insert(7);
  await expect(db.pool.query('UPDATE users SET id = 70 WHERE id = 7')).rejects.toMatchObject({ code: '23503' });
  await db.pool.query('UPDATE users SET id = 80 WHERE id = 8'); // unreferenced: allowed, as with a foreign key
  // On Citus the refusal is the foreign key's, in Citus's words.
  const referenced = onCitus()
    ? /cannot truncate a table referenced in a foreign key constraint/
    : /user_metrics references it/;
  await expect(db.pool.query('TRUNCATE users')).rejects.toThrow(referenced);
  await expect(db.pool.query('TRUNCATE devices')).rejects.toThrow(referenced);
});

/**
 * Resolves once the session of `client` waits for a lock, so that the interleaving under test really
 * happens: a fixed sleep is too short on a loaded machine and the statements then simply run in turn.
 */
async function waitingForLock(client: PoolClient): Promise<void> {
  const pid = (client as unknown as { processID: number }).processID;
  // On Citus the statement may wait on any node, in a session that carries the coordinator session's
  // global pid (node id * 10^10 + pid); citus_stat_activity shows the sessions of every node.
  const activity = onCitus()
    ? `SELECT wait_event_type FROM citus_stat_activity WHERE global_pid % 10000000000 = $1 AND wait_event_type = 'Lock'`
    : `SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`;
  const waiting = async (): Promise<boolean> => (await db.pool.query(activity, [pid])).rows.length > 0;
  await until(waiting, `session ${pid} waits for a lock`, 10_000);
}

it('lets no orphan in when a user is deleted while its metrics are being inserted', async () => {
  // The inserting transaction locks the user FOR KEY SHARE: the delete waits, then cascades.
  const inserter = await db.pool.connect();
  const deleter = await db.pool.connect();
  try {
    await inserter.query('BEGIN');
    await inserter.query(`INSERT INTO user_metrics (${COLUMNS}) VALUES (9, null, 1, true, true, now())`);
    const deleting = deleter.query('DELETE FROM users WHERE id = 9');
    await waitingForLock(deleter);
    await inserter.query('COMMIT');
    await deleting;
    expect(await metricsOf(9)).toEqual([]);

    // The other order: the delete commits first, and the insert that waited for it is refused.
    await deleter.query('BEGIN');
    await deleter.query('DELETE FROM users WHERE id = 10');
    const inserting = inserter.query(`INSERT INTO user_metrics (${COLUMNS}) VALUES (10, null, 1, true, true, now())`);
    await waitingForLock(inserter);
    await deleter.query('COMMIT');
    await expect(inserting).rejects.toMatchObject({ code: '23503' });
    expect(await metricsOf(10)).toEqual([]);
  } finally {
    inserter.release();
    deleter.release();
  }
});
