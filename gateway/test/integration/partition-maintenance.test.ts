import { Writable } from 'node:stream';
import { listPartitions, maintainPartitions, type MaintenanceSettings } from '../../src/db/partitions';
import { PartitionMaintenance } from '../../src/lifecycle/partition-maintenance';
import { createLogger } from '../../src/logger';
import { createTestDatabase, createTestPool, rowsByPartition, type TestDatabase } from '../helpers/database';
import type { StatsSnapshot } from '../../src/contract/schemas';
import { postNdjson, request, startTestGateway } from '../helpers/gateway';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus-text';
import { metric } from '../helpers/metric';

// Partition maintenance (db/partitions.ts, lifecycle/partition-maintenance.ts): partitions made
// ahead, rows that landed in the default partition moved into partitions of their own, retention
// that drops whole partitions only, and gateways that maintain at the same time.

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NOW = Date.UTC(2026, 0, 10, 12); // 2026-01-10T12:00Z
const DAILY: MaintenanceSettings = { intervalMs: DAY, premake: 2, lockTimeoutMs: 5000 };

let db: TestDatabase;

async function partitions(): Promise<string[]> {
  return (await listPartitions(db.pool)).map((p) => p.name);
}

async function insertAt(...times: string[]): Promise<void> {
  await db.pool.query(
    `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
     SELECT 1, 1, true, true, t FROM unnest($1::timestamptz[]) AS t`,
    [times],
  );
}

beforeEach(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
});

afterEach(async () => {
  await db.drop();
});

it('makes the current partition and PARTITION_PREMAKE ahead, once however often it runs', async () => {
  expect(await partitions()).toEqual(['user_metrics_default']);
  const first = await maintainPartitions(db.pool, DAILY, NOW);
  expect(first.created.map((c) => c.name)).toEqual([
    'user_metrics_p20260110_0000',
    'user_metrics_p20260111_0000',
    'user_metrics_p20260112_0000',
  ]);
  expect(await maintainPartitions(db.pool, DAILY, NOW)).toEqual({ created: [], dropped: [] });
  const later = await maintainPartitions(db.pool, DAILY, NOW + DAY);
  expect(later.created.map((c) => c.name)).toEqual(['user_metrics_p20260113_0000']);

  const hourly = await maintainPartitions(db.pool, { ...DAILY, intervalMs: 6 * HOUR, premake: 1 }, NOW + 4 * DAY);
  expect(hourly.created.map((c) => c.name)).toEqual(['user_metrics_p20260114_1200', 'user_metrics_p20260114_1800']);

  // A partition made by maintenance checks references like the others.
  await expect(
    db.pool.query(
      `INSERT INTO user_metrics_p20260110_0000 (id, user_id, talked_time, microphone_used, speaker_used, time_recorded)
       VALUES (1, 999, 1, true, true, '2026-01-10T13:00:00Z')`,
    ),
  ).rejects.toMatchObject({ code: '23503' });
});

it('moves the rows that landed in the default partition into partitions made for them', async () => {
  await maintainPartitions(db.pool, DAILY, NOW);
  // Far in the past, beyond the partitions made ahead, and one in a partition that exists.
  await insertAt('1999-12-31T23:59:59Z', '1999-12-31T00:00:00Z', '2026-01-20T10:00:00Z', '2026-01-10T13:00:00Z');
  expect(await rowsByPartition(db.pool)).toEqual({ user_metrics_default: 3, user_metrics_p20260110_0000: 1 });

  const outcome = await maintainPartitions(db.pool, DAILY, NOW);
  expect(outcome.created.map(({ name, movedRows }) => ({ name, movedRows }))).toEqual([
    { name: 'user_metrics_p19991231_0000', movedRows: 2 },
    { name: 'user_metrics_p20260120_0000', movedRows: 1 },
  ]);
  expect(await rowsByPartition(db.pool)).toEqual({
    user_metrics_p19991231_0000: 2,
    user_metrics_p20260110_0000: 1,
    user_metrics_p20260120_0000: 1,
  });
});

it('drops only partitions entirely older than RETENTION, never the default one, and deletes no row', async () => {
  await maintainPartitions(db.pool, DAILY, NOW - 5 * DAY); // 01-05 .. 01-07
  await maintainPartitions(db.pool, DAILY, NOW); // 01-10 .. 01-12
  await insertAt('2026-01-05T01:00:00Z', '2026-01-07T23:00:00Z', '2026-01-10T00:30:00Z', '2020-01-01T00:00:00Z');
  // Three days: everything before 2026-01-07T12:00Z goes; the partition of 01-07 holds a newer time.
  const outcome = await maintainPartitions(db.pool, { ...DAILY, retentionMs: 3 * DAY }, NOW);
  expect(outcome.dropped).toEqual([
    'user_metrics_p20200101_0000',
    'user_metrics_p20260105_0000',
    'user_metrics_p20260106_0000',
  ]);
  expect(await rowsByPartition(db.pool)).toEqual({ user_metrics_p20260107_0000: 1, user_metrics_p20260110_0000: 1 });
  expect(await partitions()).toEqual([
    'user_metrics_p20260107_0000',
    'user_metrics_p20260110_0000',
    'user_metrics_p20260111_0000',
    'user_metrics_p20260112_0000',
    'user_metrics_default',
  ]);
});

it('gives a run up when its locks do not come within lock_timeout, says so, and does it at the next run', async () => {
  const logged: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged.push(chunk.toString('utf8'));
      done();
    },
  });
  const maintenance = new PartitionMaintenance({
    pool: db.pool,
    settings: { ...DAILY, lockTimeoutMs: 200 },
    everyMs: 3_600_000,
    logger: createLogger('warn', sink),
    now: () => NOW,
  });
  // A long reader of the default partition: making a partition needs it alone, and must not queue
  // writers behind it for longer than lock_timeout.
  const reader = await db.pool.connect();
  try {
    await reader.query('BEGIN');
    await reader.query('LOCK TABLE user_metrics_default IN ACCESS SHARE MODE');
    const began = Date.now();
    expect(await maintenance.run()).toBeUndefined();
    expect(Date.now() - began).toBeLessThan(5000);
    expect(await partitions()).toEqual(['user_metrics_default']);
    expect(logged.join('')).toContain('partition maintenance failed');
  } finally {
    await reader.query('ROLLBACK');
    reader.release();
  }
  expect((await maintenance.run())?.created.map((c) => c.name)).toEqual([
    'user_metrics_p20260110_0000',
    'user_metrics_p20260111_0000',
    'user_metrics_p20260112_0000',
  ]);
});

it('lets two gateways maintain at the same time: each partition is made once and no run fails', async () => {
  await insertAt('2025-06-01T00:00:00Z', '2025-06-02T00:00:00Z');
  const pools = [1, 2].map(() => createTestPool({ connectionString: db.url, max: 2 }));
  try {
    const outcomes = await Promise.all(
      pools.flatMap((pool) => [1, 2].map(() => maintainPartitions(pool, { ...DAILY, premake: 5 }, NOW))),
    );
    const made = outcomes.flatMap((o) => o.created.map((c) => c.name)).sort();
    expect(made).toHaveLength(8);
    expect(new Set(made).size).toBe(8);
    expect(await rowsByPartition(db.pool)).toEqual({ user_metrics_p20250601_0000: 1, user_metrics_p20250602_0000: 1 });
  } finally {
    await Promise.all(pools.map((pool) => pool.end()));
  }
});

it('at start-up: two gateways make the partitions ahead, and store a row 23 h ahead and one from 1990', async () => {
  const env = { PARTITION_INTERVAL: '1d', PARTITION_PREMAKE: '1', RETENTION: 'off' };
  const [one, two] = await Promise.all([startTestGateway(db, env), startTestGateway(db, env)]);
  try {
    const today = new Date().toISOString().slice(0, 10).replaceAll('-', '');
    const names = await partitions();
    expect(names).toContain(`user_metrics_p${today}_0000`);
    expect(names).toHaveLength(3);
    const ahead = new Date(Date.now() + 23 * HOUR).toISOString();
    const body = [metric({ time_recorded: ahead }), metric({ time_recorded: '1990-05-01T00:00:00Z' })]
      .map((m) => JSON.stringify(m))
      .join('\n');
    expect(await postNdjson(`${one.url}/v1/metrics/bulk`, body)).toMatchObject({ body: { accepted: 2 } });
    await two.partitions.run();
    const stored = await rowsByPartition(db.pool);
    expect(stored).toMatchObject({ user_metrics_p19900501_0000: 1 });
    expect(Object.values(stored).reduce((a, b) => a + b, 0)).toBe(2);
  } finally {
    await Promise.all([one.stop(), two.stop()]);
  }
});

it('shows the partitions, their sizes and the oldest time kept on /metrics and /v1/stats', async () => {
  const gateway = await startTestGateway(db, { PARTITION_PREMAKE: '1' });
  try {
    const body = [metric({ time_recorded: '2001-02-03T04:05:06Z' }), metric({ time_recorded: Date.now() })]
      .map((m) => JSON.stringify(m))
      .join('\n');
    expect(await postNdjson(`${gateway.url}/v1/metrics/bulk`, body)).toMatchObject({ body: { accepted: 2 } });
    const names = await partitions(); // current, one ahead, default
    expect(names).toHaveLength(3);

    const families = parsePrometheusText(await (await fetch(`${gateway.url}/metrics`)).text());
    expect(sampleValue(families, 'metrics_gateway_partitions')).toBe(3);
    for (const name of names) {
      expect(sampleValue(families, 'metrics_gateway_partition_bytes', { partition: name })).toBeGreaterThan(0);
    }
    expect(sampleValue(families, 'metrics_gateway_oldest_time_recorded_seconds')).toBe(
      Date.parse('2001-02-03T04:05:06Z') / 1000,
    );

    const stats = await request<StatsSnapshot>(`${gateway.url}/v1/stats`);
    expect(stats.body.partitions).toMatchObject({
      count: 3,
      oldest_time_recorded: '2001-02-03T04:05:06.000Z',
      list: names.map((name) => ({ name })),
    });
    expect(stats.body.partitions?.list.at(-1)).toMatchObject({ name: 'user_metrics_default', to: null });
    expect(stats.body.partitions?.total_bytes).toBe(stats.body.partitions?.list.reduce((s, p) => s + p.bytes, 0));
  } finally {
    await gateway.stop();
  }
});
