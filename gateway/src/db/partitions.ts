import { escapeIdentifier, escapeLiteral, type Pool, type PoolClient } from 'pg';
import type { Queryable } from './pool';

// The partitions of user_metrics (range on time_recorded, migration 0007), made and dropped by the
// gateway itself so that nothing else (pg_partman, pg_cron) has to be installed.
//
// Partitions cover intervals aligned on Monday 1970-01-05 00:00 UTC: with 1h, 6h or 1d they start
// on the hour or at midnight UTC, with 7d on Mondays. A wanted interval that an existing partition
// covers in part (the one migration 0007 made of the old table ends at a UTC midnight) is made of
// the parts that no partition covers.
//
// Every step takes a transaction-level advisory lock, so gateways that maintain at the same time
// take turns, and each sees what the one before made. A partition is made as a plain table, filled
// with its rows from the default partition if any are there, then attached: ATTACH takes only SHARE
// UPDATE EXCLUSIVE on user_metrics (COPY goes on), and ACCESS EXCLUSIVE on the default partition
// while it checks that none of its rows belongs to the new range (writes routed to the default
// partition wait that long). Dropping a partition for retention detaches it first, which takes
// ACCESS EXCLUSIVE on user_metrics for a moment: every step runs with lock_timeout, and a step
// that cannot have its locks in time is left for the next run instead of holding writers up.

const PARENT = 'user_metrics';
const DEFAULT_PARTITION = 'user_metrics_default';
const MAINTENANCE_LOCK_KEY = 0x6d67_7074; // 'mgpt'
const ALIGNMENT_MS = Date.UTC(1970, 0, 5);

export interface PartitionInfo {
  readonly name: string;
  /** Inclusive lower bound; null: MINVALUE (the partition made of the table before 0007). */
  readonly from: Date | null;
  /** Exclusive upper bound; null for the default partition. */
  readonly to: Date | null;
  readonly isDefault: boolean;
  /** Table, indexes and TOAST. */
  readonly bytes: number;
}

interface PartitionRow {
  name: string;
  from: Date | null;
  to: Date | null;
  is_default: boolean;
  bytes: string;
}

/** The partitions of user_metrics, oldest first, the default partition last. */
export async function listPartitions(db: Queryable): Promise<PartitionInfo[]> {
  // The bounds as pg_get_expr prints them carry their UTC offset, so the casts are exact whatever
  // the session's TimeZone.
  const { rows } = await db.query<PartitionRow>(
    `SELECT c.relname AS name,
            (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS "from",
            (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS "to",
            pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_default,
            user_metrics_partition_bytes(c.oid)::text AS bytes
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = $1::regclass
      ORDER BY is_default, "from" NULLS FIRST`,
    [PARENT],
  );
  return rows.map((row) => ({
    name: row.name,
    from: row.from,
    to: row.to,
    isDefault: row.is_default,
    bytes: Number(row.bytes),
  }));
}

export interface PartitionOverview {
  readonly partitions: readonly PartitionInfo[];
  /** The oldest time_recorded kept, null without rows. */
  readonly oldest: Date | null;
}

/** The partitions and the oldest time_recorded (read from the front of each partition's unique index). */
export async function partitionOverview(db: Queryable): Promise<PartitionOverview> {
  const partitions = await listPartitions(db);
  const { rows } = await db.query<{ oldest: Date | null }>(`SELECT min(time_recorded) AS oldest FROM ${PARENT}`);
  return { partitions, oldest: rows[0]?.oldest ?? null };
}

export interface MaintenanceSettings {
  /** Length of one partition, ms (PARTITION_INTERVAL). */
  readonly intervalMs: number;
  /** Partitions made ahead of the current one (PARTITION_PREMAKE). */
  readonly premake: number;
  /** Partitions entirely older than this (ms before now) are dropped; undefined: kept (RETENTION). */
  readonly retentionMs?: number;
  /** lock_timeout of each step. */
  readonly lockTimeoutMs: number;
}

export interface MaintenanceOutcome {
  /** Partitions made, and how many rows each took from the default partition. */
  readonly created: { readonly name: string; readonly movedRows: number; readonly ms: number }[];
  readonly dropped: string[];
}

interface Range {
  readonly from: number;
  readonly to: number;
}

/** The start of the interval that holds `ms`. */
export function intervalStart(ms: number, intervalMs: number): number {
  return ALIGNMENT_MS + Math.floor((ms - ALIGNMENT_MS) / intervalMs) * intervalMs;
}

/** The parts of `wanted` that no partition covers. */
export function uncovered(wanted: Range, partitions: readonly PartitionInfo[]): Range[] {
  const taken = partitions
    .filter((p) => !p.isDefault)
    .map((p) => ({ from: p.from?.getTime() ?? -Infinity, to: p.to?.getTime() ?? Infinity }))
    .filter((p) => p.from < wanted.to && p.to > wanted.from)
    .sort((a, b) => a.from - b.from);
  const parts: Range[] = [];
  let cursor = wanted.from;
  for (const p of taken) {
    if (p.from > cursor) parts.push({ from: cursor, to: p.from });
    cursor = Math.max(cursor, p.to);
  }
  if (cursor < wanted.to) parts.push({ from: cursor, to: wanted.to });
  return parts;
}

/** user_metrics_pYYYYMMDD_HHMM, from the partition's start in UTC. */
export function partitionName(fromMs: number): string {
  const iso = new Date(fromMs).toISOString(); // 2026-12-03T06:00:00.000Z
  return `${PARENT}_p${iso.slice(0, 10).replaceAll('-', '')}_${iso.slice(11, 13)}${iso.slice(14, 16)}`;
}

/** One step in a transaction of its own, under the maintenance lock and lock_timeout. */
async function step<T>(pool: Pool, lockTimeoutMs: number, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let failed: Error | undefined;
  try {
    await client.query('BEGIN');
    // On Citus (migration 0008) a step's ATTACH follows a DELETE over every shard of the default
    // partition, and with foreign keys to reference tables Citus wants both on one connection per
    // node; and its locks are taken on the workers too, over connections that get lock_timeout only
    // from a SET LOCAL that Citus is told to pass on (set_config is not). On plain PostgreSQL the
    // citus settings are unused placeholders.
    await client.query(
      `SET LOCAL citus.multi_shard_modify_mode = 'sequential';
       SET LOCAL citus.propagate_set_commands = 'local';
       SET LOCAL lock_timeout = ${Math.trunc(lockTimeoutMs)}`,
    );
    await client.query('SELECT pg_advisory_xact_lock($1)', [MAINTENANCE_LOCK_KEY]);
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    failed = error instanceof Error ? error : new Error(String(error));
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release(failed);
  }
}

/** The starts of the intervals that rows in the default partition belong to. */
async function intervalsInDefault(db: Queryable, intervalMs: number): Promise<number[]> {
  const { rows } = await db.query<{ start: string }>(
    `SELECT DISTINCT ($1::float8 + floor((extract(epoch FROM time_recorded) * 1000 - $1::float8) / $2::float8) * $2::float8)::bigint::text AS start
       FROM ${DEFAULT_PARTITION}`,
    [ALIGNMENT_MS, intervalMs],
  );
  return rows.map((row) => Number(row.start)).sort((a, b) => a - b);
}

/** Makes the partition for `range`, moving its rows out of the default partition; returns how many moved. */
async function createPartition(client: PoolClient, name: string, range: Range): Promise<number> {
  const table = escapeIdentifier(name);
  const from = new Date(range.from).toISOString();
  const to = new Date(range.to).toISOString();
  // ATTACH would take this lock anyway; taking it first keeps a writer from adding a row of the range
  // to the default partition between the move and the ATTACH (which would then fail).
  await client.query(`LOCK TABLE ${DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE`);
  await client.query(`CREATE TABLE ${table} (LIKE ${PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
  const moved = await client.query(
    `WITH moved AS (DELETE FROM ${DEFAULT_PARTITION} WHERE time_recorded >= $1 AND time_recorded < $2 RETURNING *)
     INSERT INTO ${table} SELECT * FROM moved`,
    [from, to],
  );
  await client.query(
    `ALTER TABLE ${PARENT} ATTACH PARTITION ${table} FOR VALUES FROM (${escapeLiteral(from)}) TO (${escapeLiteral(to)})`,
  );
  await client.query('SELECT user_metrics_guard_partition($1::regclass)', [name]);
  return moved.rowCount ?? 0;
}

/**
 * Makes the partitions from the current interval to `premake` ahead and those that rows in the
 * default partition need (moving the rows into them), then drops the partitions entirely older than
 * the retention. Steps already done by another gateway are skipped.
 */
export async function maintainPartitions(
  pool: Pool,
  settings: MaintenanceSettings,
  now: number = Date.now(),
): Promise<MaintenanceOutcome> {
  const { intervalMs, lockTimeoutMs } = settings;
  const current = intervalStart(now, intervalMs);
  const starts = new Set<number>();
  for (let i = 0; i <= settings.premake; i++) starts.add(current + i * intervalMs);
  for (const start of await intervalsInDefault(pool, intervalMs)) starts.add(start);

  const created: MaintenanceOutcome['created'] = [];
  for (const start of [...starts].sort((a, b) => a - b)) {
    const made = await step(pool, lockTimeoutMs, async (client) => {
      const done: MaintenanceOutcome['created'] = [];
      for (const range of uncovered({ from: start, to: start + intervalMs }, await listPartitions(client))) {
        const began = performance.now();
        const name = partitionName(range.from);
        const movedRows = await createPartition(client, name, range);
        done.push({ name, movedRows, ms: Math.round(performance.now() - began) });
      }
      return done;
    });
    created.push(...made);
  }

  const dropped: string[] = [];
  if (settings.retentionMs !== undefined) {
    const cutoff = now - settings.retentionMs;
    const expired = (await listPartitions(pool)).filter((p) => p.to !== null && p.to.getTime() <= cutoff);
    for (const partition of expired) {
      const gone = await step(pool, lockTimeoutMs, async (client) => {
        // Another gateway may have dropped it meanwhile.
        const { rows } = await client.query('SELECT to_regclass($1) AS t', [partition.name]);
        if (rows[0]?.t == null) return false;
        const table = escapeIdentifier(partition.name);
        await client.query(`ALTER TABLE ${PARENT} DETACH PARTITION ${table}`);
        await client.query(`DROP TABLE ${table}`);
        return true;
      });
      if (gone) dropped.push(partition.name);
    }
  }
  return { created, dropped };
}
