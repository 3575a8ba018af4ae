import { randomUUID } from 'node:crypto';
import { metricsPageQuery } from '../../src/db/metrics-reads';
import { createMetricsWriter } from '../../src/db/metrics-writer';
import { encodeMetricRow } from '../../src/ingest/copy-encode';
import type { Metric } from '../../src/ingest/schema';
import { createTestDatabase, createTestPool, partitionOfRow, type TestDatabase } from '../helpers/database';

// user_metrics partitioned by time_recorded (migration 0007): the writer's plain-COPY fast path and
// its fall-back for repeats, rows outside every partition, the reference checks on partitions, and
// reads that touch only the partitions they need.

let db: TestDatabase;
const DAY = 86_400_000;
const today = Date.UTC(2026, 0, 10);

function row(userId: number, timeMs: number, eventId?: string): string {
  const metric: Metric = {
    user_id: userId,
    talked_time: 1,
    microphone_used: true,
    speaker_used: false,
    time_recorded: timeMs,
    ...(eventId === undefined ? {} : { event_id: eventId }),
  };
  return encodeMetricRow(metric, new Date(timeMs).toISOString(), new Date().toISOString());
}

interface StoredRow {
  user_id: number;
  time: string;
  event_id: string | null;
  partition: string;
}

async function stored(): Promise<StoredRow[]> {
  const { rows } = await db.pool.query<StoredRow>(
    `SELECT user_id, to_char(time_recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') AS time, event_id,
            tableoid::regclass::text AS partition
       FROM user_metrics ORDER BY time_recorded, user_id, event_id`,
  );
  return rows.map((r) => ({ ...r, partition: partitionOfRow(r.partition) }));
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) SELECT g, 'user ' || g FROM generate_series(1, 3) g`);
  // Two daily partitions; everything else goes to the default partition.
  for (const day of [today, today + DAY]) {
    const name = `user_metrics_test_${new Date(day).toISOString().slice(0, 10).replaceAll('-', '')}`;
    await db.pool.query(
      `CREATE TABLE ${name} PARTITION OF user_metrics FOR VALUES FROM ('${new Date(day).toISOString()}') TO ('${new Date(day + DAY).toISOString()}')`,
    );
    await db.pool.query('SELECT user_metrics_guard_partition($1::regclass)', [name]);
  }
});

beforeEach(async () => {
  await db.pool.query('TRUNCATE user_metrics');
});

afterAll(async () => {
  await db?.drop();
});

it('stores a retried event once, in a batch that mixes new rows, repeats and rows without an event_id, across partitions', async () => {
  const writer = createMetricsWriter(db.pool);
  const [a, b, c, d] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
  await writer.write([row(1, today + 1000, a), row(2, today + DAY + 1000, b)]);
  // The retry repeats a and b (each in its own partition); c, d and the row without an id are new.
  // The same event_id at another time_recorded is another event (the key includes time_recorded).
  await writer.write([
    row(1, today + 1000, a),
    row(3, today + 2000, c),
    row(2, today + DAY + 1000, b),
    row(3, today + DAY + 5000),
    row(1, today + 3 * DAY, d),
    row(1, today + 3 * DAY, d),
    row(1, today + 5000, a),
  ]);
  expect(await stored()).toEqual([
    { user_id: 1, time: '2026-01-10T00:00:01', event_id: a, partition: 'user_metrics_test_20260110' },
    { user_id: 3, time: '2026-01-10T00:00:02', event_id: c, partition: 'user_metrics_test_20260110' },
    { user_id: 1, time: '2026-01-10T00:00:05', event_id: a, partition: 'user_metrics_test_20260110' },
    { user_id: 2, time: '2026-01-11T00:00:01', event_id: b, partition: 'user_metrics_test_20260111' },
    { user_id: 3, time: '2026-01-11T00:00:05', event_id: null, partition: 'user_metrics_test_20260111' },
    { user_id: 1, time: '2026-01-13T00:00:00', event_id: d, partition: 'user_metrics_default' },
  ]);
});

it('writes a batch without repeats with one COPY straight into user_metrics, no staging', async () => {
  const stagingTables = async (): Promise<number> => {
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pg_class WHERE relname = 'user_metrics_staging'`,
    );
    return rows[0].n;
  };
  const pool = createTestPool({ connectionString: db.url, max: 1 });
  try {
    const before = await stagingTables();
    await createMetricsWriter(pool).write([
      row(1, today + 1, randomUUID()),
      row(2, today + 2, randomUUID()),
      row(3, today + 3),
    ]);
    // The staging path would have made a temporary table on the writer's new connection.
    expect(await stagingTables()).toBe(before);
    expect(await stored()).toHaveLength(3);
  } finally {
    await pool.end();
  }
});

it('stores a row far in the past and one 23 hours in the future', async () => {
  const writer = createMetricsWriter(db.pool);
  const future = Date.now() + 23 * 3_600_000;
  await writer.write([row(1, Date.UTC(1971, 5, 1), randomUUID()), row(1, future, randomUUID())]);
  const rows = await stored();
  expect(rows.map((r) => r.time)).toEqual(['1971-06-01T00:00:00', new Date(future).toISOString().slice(0, 19)]);
});

it('refuses an orphan written straight into a partition, as through user_metrics', async () => {
  const insert = (table: string, time: string) =>
    db.pool.query(
      `INSERT INTO ${table} (id, user_id, talked_time, microphone_used, speaker_used, time_recorded)
       OVERRIDING SYSTEM VALUE VALUES (-1, 999, 1, true, true, $1)`,
      [time],
    );
  for (const [table, time] of [
    ['user_metrics', '2026-01-10T12:00:00Z'],
    ['user_metrics_test_20260110', '2026-01-10T12:00:00Z'],
    ['user_metrics_default', '2030-01-01T00:00:00Z'],
  ] as const) {
    await expect(insert(table, time)).rejects.toMatchObject({ code: '23503' });
  }
  expect(await stored()).toEqual([]);
});

it('reads a user\u2019s time range from the partitions that hold it only', async () => {
  const query = metricsPageQuery({ userId: 1, from: '2026-01-10T06:00:00Z', to: '2026-01-10T12:00:00Z', limit: 10 });
  const { rows } = await db.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${query.text}`, query.values);
  const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
  expect(plan).toContain('user_metrics_test_20260110');
  expect(plan).not.toContain('user_metrics_test_20260111');
  expect(plan).not.toContain('user_metrics_default');
});
