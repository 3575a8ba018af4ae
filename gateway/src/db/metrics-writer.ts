import type { Pool, PoolClient } from 'pg';
import { COPY_COLUMNS, hasEventId } from './copy-row';
import { copyRows } from './copy';
import { recordSpoolCommits, type SpoolRange } from './spool-commits';
import { sqlState } from './sqlstate';

const COLUMN_LIST = COPY_COLUMNS.join(', ');
const STAGING_TABLE = 'user_metrics_staging';

// Rows with an event_id must not be stored twice. The unique key (time_recorded, user_id, event_id)
// refuses a repeat, so a batch is first written with one plain COPY, the fastest way in; repeats are
// rare (a client's retry), and only a batch whose COPY meets one (23505) is written again the slow
// way: its rows with an event_id are copied into a session-local staging table and moved with
// ON CONFLICT DO NOTHING in the same transaction.
const CREATE_STAGING = `
  CREATE TEMP TABLE IF NOT EXISTS ${STAGING_TABLE} (
    user_id integer, device_id varchar(255), talked_time double precision, microphone_used boolean,
    speaker_used boolean, voice_sentiment double precision, time_recorded timestamptz, event_id uuid,
    received_at timestamptz
  ) ON COMMIT DELETE ROWS`;
const MOVE_STAGED = `
  INSERT INTO user_metrics (${COLUMN_LIST})
  SELECT ${COLUMN_LIST} FROM ${STAGING_TABLE}
  ON CONFLICT (time_recorded, user_id, event_id) DO NOTHING`;
const UNIQUE_VIOLATION = '23505';

export interface RejectedRow {
  readonly receivedAt: string;
  readonly payload: Record<string, unknown>;
  readonly reason: string;
}

/**
 * What a caller keeps between attempts to write the same rows. When a connection breaks after COMMIT
 * was sent, nobody knows whether the rows were stored; the transaction id of the last attempt lets
 * the next attempt ask PostgreSQL (txid_status) instead of storing them a second time.
 */
export interface WriteAttempts {
  lastTransactionId?: string;
}

/**
 * Writes encoded rows into user_metrics, and refused rows into rejected_metrics. The spool ranges of
 * the rows, if any, are recorded in spool_commits in the same transaction, so a replay of the spool
 * after a crash skips them.
 */
export interface MetricsWriter {
  /** Stores all rows in one transaction, or none of them (then the error says why). */
  write(rows: readonly string[], spooled?: readonly SpoolRange[], attempts?: WriteAttempts): Promise<void>;
  reject(rows: readonly RejectedRow[], spooled?: readonly SpoolRange[]): Promise<void>;
}

/** Thrown while an earlier attempt's transaction is still open on a broken connection. */
class EarlierAttemptUnresolved extends Error {
  constructor(transactionId: string) {
    super(`transaction ${transactionId} of an earlier attempt is still in progress`);
    this.name = 'EarlierAttemptUnresolved';
  }
}

export function createMetricsWriter(pool: Pool): MetricsWriter {
  const clientsWithStaging = new WeakSet<PoolClient>();

  async function withClient(work: (client: PoolClient) => Promise<void>): Promise<void> {
    const client = await pool.connect();
    try {
      await work(client);
      client.release();
    } catch (error) {
      // After a failed COPY or transaction the connection's state is not known: close it.
      client.release(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
  }

  /** Whether the transaction of an earlier attempt committed; throws while that is not known yet. */
  async function committedEarlier(attempts: WriteAttempts): Promise<boolean> {
    const transactionId = attempts.lastTransactionId;
    if (transactionId === undefined) return false;
    const { rows } = await pool.query<{ status: string | null }>('SELECT txid_status($1) AS status', [transactionId]);
    const status = rows[0]?.status;
    if (status === 'in progress') throw new EarlierAttemptUnresolved(transactionId);
    attempts.lastTransactionId = undefined;
    return status === 'committed';
  }

  async function write(
    rows: readonly string[],
    spooled: readonly SpoolRange[] = [],
    attempts: WriteAttempts = {},
  ): Promise<void> {
    if (await committedEarlier(attempts)) return;
    const plain: string[] = [];
    const idempotent: string[] = [];
    for (const row of rows) (hasEventId(row) ? idempotent : plain).push(row);

    /** One transaction that names itself (for committedEarlier() on a retry), runs `body` and commits. */
    const transaction = (body: (client: PoolClient) => Promise<void>) =>
      withClient(async (client) => {
        // One round trip: the transaction starts and names itself. On Citus (migration 0008) it also
        // writes the shards of each worker over one connection: a batch spread over 32 shards on as
        // many connections, each prepared and committed, stored 100,000 rows in 12 s instead of 2.7 s
        // (docs/operations.md, "Citus"); on plain PostgreSQL the setting is an unused placeholder.
        const [, named] = (await client.query(
          "BEGIN; SELECT txid_current()::text AS id, set_config('citus.multi_shard_modify_mode', 'sequential', true)",
        )) as unknown as [unknown, { rows: { id: string }[] }];
        attempts.lastTransactionId = named.rows[0]?.id;
        await body(client);
        if (spooled.length > 0) await recordSpoolCommits(client, spooled);
        await client.query('COMMIT');
        attempts.lastTransactionId = undefined;
      });

    if (idempotent.length > 0) {
      try {
        await transaction((client) => copyRows(client, `user_metrics (${COLUMN_LIST})`, rows));
        return;
      } catch (error) {
        if (sqlState(error) !== UNIQUE_VIOLATION) throw error;
        // The server refused the COPY: that transaction is rolled back, not in doubt.
        attempts.lastTransactionId = undefined;
      }
    }
    await transaction(async (client) => {
      if (plain.length > 0) await copyRows(client, `user_metrics (${COLUMN_LIST})`, plain);
      if (idempotent.length > 0) {
        if (!clientsWithStaging.has(client)) {
          await client.query(CREATE_STAGING);
          clientsWithStaging.add(client);
        }
        await copyRows(client, `${STAGING_TABLE} (${COLUMN_LIST})`, idempotent);
        await client.query(MOVE_STAGED);
      }
    });
  }

  async function reject(rows: readonly RejectedRow[], spooled: readonly SpoolRange[] = []): Promise<void> {
    if (rows.length === 0) return;
    await withClient(async (client) => {
      if (spooled.length > 0) await client.query('BEGIN');
      await client.query(
        `INSERT INTO rejected_metrics (received_at, payload, reason)
         SELECT * FROM unnest($1::timestamptz[], $2::jsonb[], $3::text[])`,
        [rows.map((r) => r.receivedAt), rows.map((r) => JSON.stringify(r.payload)), rows.map((r) => r.reason)],
      );
      if (spooled.length > 0) {
        await recordSpoolCommits(client, spooled);
        await client.query('COMMIT');
      }
    });
  }

  return { write, reject };
}
