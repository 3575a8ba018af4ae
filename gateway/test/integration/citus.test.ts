import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Client, type Pool } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { createMetricsWriter } from '../../src/db/metrics-writer';
import { sqlState } from '../../src/db/sqlstate';
import { listPartitions, maintainPartitions } from '../../src/db/partitions';
import { Batcher } from '../../src/ingest/batcher';
import { encodeMetricRow } from '../../src/ingest/copy-encode';
import { replaySpool } from '../../src/spool/replay';
import { Spool } from '../../src/spool/spool';
import { describeOnCitus, startCitusCluster, type CitusCluster } from '../helpers/citus-cluster';
import { createTestPool, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, request, startTestGateway } from '../helpers/gateway';
import { testLogger } from '../helpers/logger';
import { metric } from '../helpers/metric';
import { numberedMetric } from '../helpers/numbered-metrics';
import { until } from '../helpers/until';

// The gateway on a Citus cluster (issue 12): a coordinator and two workers on loopback, the same
// migrations (0008 distributes the tables because the citus extension is there), the same gateway.

const USERS = 20;
const DEVICE = 'citus-device';
const DAY_MS = 86_400_000;

let cluster: CitusCluster;
let pool: Pool;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

/** A COPY row as the gateway encodes it. */
const row = (userId: number, talkedTime: number, timeRecorded = '2026-01-01T00:00:00Z'): string =>
  encodeMetricRow(
    { user_id: userId, talked_time: talkedTime, microphone_used: true, speaker_used: false, time_recorded: 0 },
    timeRecorded,
    '2026-01-02T00:00:00.000Z',
  );

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, params);
  return rows[0]?.n ?? -1;
}

/** The ports of the workers that hold the shards of these users. */
async function nodesOf(userIds: readonly number[]): Promise<number[]> {
  const { rows } = await pool.query<{ port: number }>(
    `SELECT DISTINCT p.nodeport AS port FROM unnest($1::int[]) AS u (id),
            LATERAL (SELECT nodeport FROM pg_dist_shard_placement
                      WHERE shardid = get_shard_id_for_distribution_column('user_metrics', u.id)) AS p
      ORDER BY 1`,
    [userIds],
  );
  return rows.map((r) => r.port);
}

describeOnCitus('citus.test.ts', 'the gateway on a Citus coordinator with two workers is not tested')(
  'on Citus',
  () => {
    beforeAll(async () => {
      const began = performance.now();
      cluster = await startCitusCluster();
      testLogger.info({ ms: Math.round(performance.now() - began) }, 'citus cluster started');
      pool = createTestPool({ connectionString: cluster.url, max: 4 });
      pool.on('error', () => undefined);
      const db: TestDatabase = { name: 'metrics', url: cluster.url, pool, drop: () => pool.end() };
      gateway = await startTestGateway(db, { ACK_TIMEOUT_MS: '1500' });
      await pool.query(`INSERT INTO users (id, name) SELECT g, 'user ' || g FROM generate_series(1, $1::int) g`, [
        USERS,
      ]);
      await pool.query(`INSERT INTO devices (id) VALUES ($1)`, [DEVICE]);
    }, 120_000);

    afterAll(async () => {
      await gateway?.stop();
      await pool?.end();
      await cluster?.stop();
    }, 60_000);

    it('distributes user_metrics and its partitions by user_id, users and devices as reference tables, with foreign keys', async () => {
      const { rows } = await pool.query<{ table: string; method: string; key: string | null }>(
        `SELECT logicalrelid::text AS table, partmethod AS method, column_to_column_name(logicalrelid, partkey) AS key
         FROM pg_dist_partition ORDER BY 1`,
      );
      const byTable = new Map(rows.map((r) => [r.table, r]));
      expect(byTable.get('users')).toMatchObject({ method: 'n' });
      expect(byTable.get('devices')).toMatchObject({ method: 'n' });
      expect(byTable.get('user_metrics')).toMatchObject({ method: 'h', key: 'user_id' });
      for (const partition of await listPartitions(pool)) {
        expect(byTable.get(partition.name)).toMatchObject({ method: 'h', key: 'user_id' });
      }
      const keys = await pool.query<{ name: string }>(
        `SELECT conname AS name FROM pg_constraint WHERE conrelid = 'user_metrics'::regclass AND contype IN ('f', 'p') ORDER BY 1`,
      );
      expect(keys.rows.map((r) => r.name)).toEqual([
        'user_metrics_device_id_fkey',
        'user_metrics_pkey',
        'user_metrics_user_id_fkey',
      ]);
    });

    it('stores one metric and a bulk body through the coordinator, on both workers, and reads them back', async () => {
      const single = metric({ user_id: 1, device_id: DEVICE, talked_time: 7 });
      expect(await postJson(`${gateway.url}/v1/metrics`, single)).toMatchObject({ status: 201 });
      const lines = Array.from({ length: 200 }, (_, i) =>
        JSON.stringify(metric({ user_id: (i % USERS) + 1, talked_time: i })),
      );
      const bulk = await postNdjson(`${gateway.url}/v1/metrics/bulk`, `${lines.join('\n')}\n`);
      expect(bulk).toMatchObject({ status: 200, body: { accepted: 200, rejected: 0 } });
      expect(await count('user_metrics')).toBe(201);
      expect(await nodesOf(Array.from({ length: USERS }, (_, i) => i + 1))).toHaveLength(2);

      // A per-user read goes to one shard; the summary too.
      const page = await request(`${gateway.url}/v1/users/1/metrics?limit=100`);
      expect(page.status).toBe(200);
      expect(page.body.items).toHaveLength(11);
      expect(await request(`${gateway.url}/v1/users/1/summary`)).toMatchObject({
        status: 200,
        body: {
          count: 11,
          total_talked_time: 7 + [0, 20, 40, 60, 80, 100, 120, 140, 160, 180].reduce((a, b) => a + b),
        },
      });
    });

    it('stores a retried event once, in one request and across requests', async () => {
      const eventId = '018f2b5e-7c3a-7d41-9a6b-2c4d6e8f0a1b';
      const event = metric({ user_id: 2, talked_time: 42, event_id: eventId });
      for (let i = 0; i < 2; i++) expect((await postJson(`${gateway.url}/v1/metrics`, event)).status).toBe(201);
      const body = `${[event, event, metric({ user_id: 3, talked_time: 43 })].map((m) => JSON.stringify(m)).join('\n')}\n`;
      expect((await postNdjson(`${gateway.url}/v1/metrics/bulk`, body)).status).toBe(200);
      expect(await count('user_metrics WHERE event_id = $1', [eventId])).toBe(1);
      expect(await count('user_metrics WHERE user_id = 3 AND talked_time = 43')).toBe(1);
    });

    it('refuses orphans (gateway 422, a COPY straight to the coordinator 23503) and cascades deletes', async () => {
      expect(await postJson(`${gateway.url}/v1/metrics`, metric({ user_id: 999 }))).toMatchObject({
        status: 422,
        body: { error: 'unknown_reference' },
      });
      const client = await pool.connect();
      try {
        const copy = (rows: string[]) =>
          pipeline(
            Readable.from([rows.join('')]),
            client.query(
              copyFrom(
                'COPY user_metrics (user_id, device_id, talked_time, microphone_used, speaker_used, time_recorded) FROM STDIN',
              ),
            ),
          );
        // Citus reports the worker's refusal with SQLSTATE XX000; sqlState() recovers 23503.
        const refusal = (rows: string[]) => copy(rows).then(() => 'stored', sqlState);
        expect(await refusal(['4\t\\N\t1\tt\tf\t2026-01-01Z\n', '404\t\\N\t1\tt\tf\t2026-01-01Z\n'])).toBe('23503');
        expect(await refusal(['4\tghost\t1\tt\tf\t2026-01-01Z\n'])).toBe('23503');
        await copy([`4\t${DEVICE}\t1\tt\tf\t2026-01-01Z\n`, `5\t${DEVICE}\t1\tt\tf\t2026-01-01Z\n`]);
      } finally {
        client.release();
      }
      expect(await count('user_metrics WHERE user_id = 4')).toBe(1 + 10);
      await pool.query('DELETE FROM users WHERE id = 4');
      expect(await count('user_metrics WHERE user_id = 4')).toBe(0);
      await pool.query('DELETE FROM devices WHERE id = $1', [DEVICE]);
      expect(await count('user_metrics WHERE device_id IS NOT NULL')).toBe(0);
      expect(await count('user_metrics WHERE user_id = 5')).toBe(1 + 10);
      await pool.query(`INSERT INTO devices (id) VALUES ($1)`, [DEVICE]);
    });

    it('lets no orphan in when a user is deleted while its metrics are being inserted, in either order', async () => {
      await pool.query(`INSERT INTO users (id, name) VALUES (40, 'forty'), (41, 'forty-one')`);
      const settled = <T>(promise: Promise<T>) => {
        const state = { done: false };
        void promise.then(
          () => (state.done = true),
          () => (state.done = true),
        );
        return state;
      };
      const session = new Client({ connectionString: cluster.url });
      await session.connect();
      try {
        // An insert in flight: the delete waits for it on the workers, then cascades to its rows.
        await session.query('BEGIN');
        await session.query(`INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
                             SELECT 40, g, true, false, '2026-01-01Z' FROM generate_series(1, 100) g`);
        const deleting = pool.query('DELETE FROM users WHERE id = 40');
        const deleted = settled(deleting);
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(deleted.done).toBe(false);
        await session.query('COMMIT');
        await deleting;
        expect(await count('user_metrics WHERE user_id = 40')).toBe(0);

        // A delete in flight: the insert waits for it, then is refused.
        await session.query('BEGIN');
        await session.query('DELETE FROM users WHERE id = 41');
        const inserting = pool
          .query(
            `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
                  VALUES (41, 1, true, false, '2026-01-01Z')`,
          )
          .then(() => 'stored', sqlState);
        const inserted = settled(inserting);
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(inserted.done).toBe(false);
        await session.query('COMMIT');
        expect(await inserting).toBe('23503');
        expect(await count('user_metrics WHERE user_id = 41')).toBe(0);
      } finally {
        await session.end();
      }
    });

    it('answers a lost COMMIT from the coordinator: a committed two-phase transaction is not written again', async () => {
      const writer = createMetricsWriter(pool);
      const users = [6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
      const rows = users.map((userId) => row(userId, 601));
      expect(await nodesOf(users)).toHaveLength(2); // both workers: a two-phase commit
      const committed = new Client({ connectionString: cluster.url });
      await committed.connect();
      try {
        const [, named] = (await committed.query('BEGIN; SELECT txid_current()::text AS id')) as unknown as [
          unknown,
          { rows: { id: string }[] },
        ];
        await pipeline(
          Readable.from([rows.join('')]),
          committed.query(
            copyFrom(
              `COPY user_metrics (user_id, device_id, talked_time, microphone_used, speaker_used, voice_sentiment, time_recorded, event_id, received_at) FROM STDIN`,
            ),
          ),
        );
        await committed.query('COMMIT');
        // The retry after a COMMIT whose answer was lost asks txid_status on the coordinator.
        await writer.write(rows, [], { lastTransactionId: named.rows[0]?.id as string });
        expect(await count('user_metrics WHERE talked_time = 601')).toBe(users.length);

        const [, rolledBack] = (await committed.query('BEGIN; SELECT txid_current()::text AS id')) as unknown as [
          unknown,
          { rows: { id: string }[] },
        ];
        await committed.query('ROLLBACK');
        await writer.write([row(6, 602), row(7, 602)], [], { lastTransactionId: rolledBack.rows[0]?.id as string });
        expect(await count('user_metrics WHERE talked_time = 602')).toBe(2);
      } finally {
        await committed.end();
      }
      // Nothing left prepared on the workers.
      for (const url of cluster.workerUrls) {
        const worker = new Client({ connectionString: url });
        await worker.connect();
        const { rows: prepared } = await worker.query('SELECT gid FROM pg_prepared_xacts');
        await worker.end();
        expect(prepared).toEqual([]);
      }
    });

    it('writes a batch over one connection per worker: one prepared transaction each, however many shards', async () => {
      const notices: string[] = [];
      const logged = createTestPool({
        connectionString: cluster.url,
        max: 1,
        options: '-c citus.log_remote_commands=on',
      });
      logged.on('connect', (client) => client.on('notice', (notice) => notices.push(notice.message ?? '')));
      try {
        const users = Array.from({ length: 16 }, (_, i) => i + 5);
        await createMetricsWriter(logged).write(users.map((userId) => row(userId, 901)));
      } finally {
        await logged.end();
      }
      expect(await count('user_metrics WHERE talked_time = 901')).toBe(16);
      expect(notices.filter((message) => message.startsWith('issuing PREPARE TRANSACTION'))).toHaveLength(2);
    });

    it('replays a spool: skips the ranges committed with their rows, stores the rest once', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-citus-replay-'));
      try {
        const spool = await Spool.open({ dir, segmentBytes: 600, logger: testLogger });
        for (let n = 1; n <= 10; n++) await spool.append([row((n % 3) + 9, 700 + n)]);
        await spool.close();
        // Rows 3..5 committed before the crash, with their spool range, in one distributed transaction.
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await client.query(`INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
                            SELECT n % 3 + 9, 700 + n, true, false, '2026-01-01Z' FROM generate_series(3, 5) n`);
          await client.query('INSERT INTO spool_commits (spool_id, first_seq, last_seq) VALUES ($1, 3, 5)', [spool.id]);
          await client.query('COMMIT');
        } finally {
          client.release();
        }
        const batcher = new Batcher({
          batchMaxRows: 4,
          batchMaxWaitMs: 1,
          bufferMaxRows: 100,
          flushConcurrency: 2,
          writer: createMetricsWriter(pool),
          logger: testLogger,
        });
        const result = await replaySpool(dir, pool, batcher, testLogger);
        expect(result).toMatchObject({ replayed: 7, alreadyCommitted: 3 });
        const { rows } = await pool.query<{ t: number }>(
          'SELECT talked_time AS t FROM user_metrics WHERE talked_time BETWEEN 701 AND 710 ORDER BY 1',
        );
        expect(rows.map((r) => r.t)).toEqual([701, 702, 703, 704, 705, 706, 707, 708, 709, 710]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('makes, fills and drops partitions of the distributed table', async () => {
      const old = '2020-03-01T12:00:00Z';
      await pool.query(
        `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
                      SELECT g % 10 + 11, 800, true, false, $1 FROM generate_series(1, 30) g`,
        [old],
      );
      expect(await count('user_metrics_default WHERE talked_time = 800')).toBe(30);
      const settings = { intervalMs: DAY_MS, premake: 1, lockTimeoutMs: 5000 };
      const made = await maintainPartitions(pool, settings);
      expect(made.created).toContainEqual(
        expect.objectContaining({ name: 'user_metrics_p20200301_0000', movedRows: 30 }),
      );
      expect(await count('user_metrics_default')).toBe(0);
      expect(await count('user_metrics_p20200301_0000')).toBe(30);
      const { rows } = await pool.query(
        `SELECT colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'user_metrics'::regclass) AS colocated
         FROM pg_dist_partition WHERE logicalrelid = 'user_metrics_p20200301_0000'::regclass`,
      );
      expect(rows).toEqual([{ colocated: true }]);
      // Its size (/metrics, /v1/stats, the status page) is that of its shards on the workers, not of the
      // coordinator's empty shell.
      let shardBytes = 0;
      for (const url of cluster.workerUrls) {
        const worker = new Client({ connectionString: url });
        await worker.connect();
        // Citus hides shards from pg_class unless asked.
        await worker.query(`SET citus.show_shards_for_app_name_prefixes = '*'`);
        const { rows: sizes } = await worker.query<{ bytes: string | null }>(
          `SELECT sum(pg_total_relation_size(oid))::text AS bytes FROM pg_class
            WHERE relkind = 'r' AND relname ~ '^user_metrics_p20200301_0000_[0-9]+$'`,
        );
        await worker.end();
        shardBytes += Number(sizes[0]?.bytes ?? 0);
      }
      const listed = (await listPartitions(pool)).find((partition) => partition.name === 'user_metrics_p20200301_0000');
      expect(shardBytes).toBeGreaterThan(0);
      expect(listed?.bytes).toBe(shardBytes);
      const retention = await maintainPartitions(pool, { ...settings, retentionMs: Date.now() - Date.UTC(2021, 0, 1) });
      expect(retention.dropped).toEqual(['user_metrics_p20200301_0000']);
      expect(await count('user_metrics WHERE talked_time = 800')).toBe(0);
    });

    it('with the worker of a user stopped: wait=true answers 503, wait=false is spooled, nothing acknowledged is lost', async () => {
      const userId = 30; // rows of its own
      await pool.query(`INSERT INTO users (id, name) VALUES ($1, 'outage')`, [userId]);
      const [port] = await nodesOf([userId]);
      const index = cluster.workerUrls.findIndex((url) => url.includes(`:${port}/`));
      const acknowledged: number[] = [];
      const unavailable: number[] = [];
      let next = 10_000;
      let running = true;
      const send = async (): Promise<void> => {
        while (running) {
          const n = next++;
          const wait = n % 2 === 0;
          const response = await postJson(
            `${gateway.url}/v1/metrics${wait ? '' : '?wait=false'}`,
            numberedMetric(n, { userId, scale: 1000 }),
          );
          if (response.status === 201 || response.status === 202) acknowledged.push(n);
          else if (response.status === 503 || response.status === 429) unavailable.push(n);
          else throw new Error(`unexpected ${response.status}: ${JSON.stringify(response.body)}`);
        }
      };
      const load = Promise.all(Array.from({ length: 4 }, send));
      await new Promise((resolve) => setTimeout(resolve, 300));
      await cluster.stopWorker(index);
      const down = await postJson(`${gateway.url}/v1/metrics`, numberedMetric(1_000_000, { userId, scale: 1000 }));
      expect(down.status).toBe(503);
      expect(
        (await postJson(`${gateway.url}/v1/metrics?wait=false`, numberedMetric(1_000_001, { userId, scale: 1000 })))
          .status,
      ).toBe(202);
      acknowledged.push(1_000_001);
      await cluster.startWorker(index);
      let probe = 2_000_000;
      await until(
        async () =>
          (await postJson(`${gateway.url}/v1/metrics`, numberedMetric(probe++, { userId, scale: 1000 }))).status ===
          201,
        'a probe stored',
        30_000,
      );
      running = false;
      await load;
      await gateway.batcher.drain();

      expect(unavailable.length).toBeGreaterThan(0);
      const { rows } = await pool.query<{ t: number }>('SELECT talked_time AS t FROM user_metrics WHERE user_id = $1', [
        userId,
      ]);
      const stored = rows.map((r) => r.t);
      expect(stored.length).toBe(new Set(stored).size);
      const storedSet = new Set(stored);
      expect(acknowledged.filter((n) => !storedSet.has(n / 1000))).toEqual([]);
      expect(await count('rejected_metrics')).toBe(0);
    }, 90_000);
  },
);
