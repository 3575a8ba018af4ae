import { readdir, stat, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/dev-postgres';
import { postJson, postNdjson } from '../helpers/gateway';
import { testLogger } from '../helpers/logger';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process';
import { numberedMetric } from '../helpers/numbered-metrics';
import { until } from '../helpers/until';

// An outage is absorbed on disk, not in memory: PostgreSQL is stopped for OUTAGE_MS under a steady
// wait=false load (bulk and single). Every request is answered 202 (no 429: the spool has room), the
// gateway's memory stays flat while its spool grows, and once PostgreSQL is back every acknowledged
// row is stored exactly once. Rows for a user the gateway never saw cannot be checked during the
// outage: they are spooled and checked when written (a real user's rows stored, a missing user's rows
// in rejected_metrics). The test runs a PostgreSQL of its own, and the gateway as a real process so
// that its RSS is its own.

const OUTAGE_MS = Number(process.env.MG_TEST_OUTAGE_MS ?? 120_000);
const BULK_LINES = 250;
/** Each bulk client sends a body this often: about 2 x 250 x 10 = 5k rows/s. */
const BULK_EVERY_MS = 100;

let dataDir: string;
let spoolDir: string;
let server: EmbeddedPostgres;
let gateway: GatewayProcess | undefined;
let gatewayUrl: string;

const metric = (n: number, userId = 1) => numberedMetric(n, { userId, scale: 1000 });

async function query<T>(sql: string): Promise<T[]> {
  const client = new Client({ connectionString: gatewayUrl });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
}

async function spoolBytes(): Promise<number> {
  let bytes = 0;
  for (const name of await readdir(spoolDir)) {
    if (name.endsWith('.spool')) bytes += (await stat(path.join(spoolDir, name))).size;
  }
  return bytes;
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'mg-disk-outage-'));
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'mg-disk-outage-spool-'));
  server = await startEmbeddedPostgres({ dataDir, logger: testLogger });
  gatewayUrl = server.url.replace(/\/postgres$/, '/gateway');
  const admin = new Client({ connectionString: server.url });
  await admin.connect();
  await admin.query('CREATE DATABASE gateway');
  await admin.end();
  gateway = await startGatewayProcess({
    DATABASE_URL: gatewayUrl,
    SPOOL_DIR: spoolDir,
    BUFFER_MAX_ROWS: '2000',
    BATCH_MAX_ROWS: '500',
    LOG_LEVEL: 'warn',
  });
  await query(`INSERT INTO users (id, name) VALUES (1, 'one'), (2, 'two')`);
}, 60_000);

afterAll(async () => {
  gateway?.child.kill('SIGKILL');
  await gateway?.exited;
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
  await rm(spoolDir, { recursive: true, force: true });
});

it(
  `absorbs a ${OUTAGE_MS / 1000} s outage on disk: no 429, flat memory, every acknowledged row stored once`,
  async () => {
    const running = gateway as GatewayProcess;
    const acknowledged: number[] = [];
    const refused: string[] = [];
    let next = 0;
    let loading = true;
    const bulkClient = async (): Promise<void> => {
      while (loading) {
        const first = next;
        next += BULK_LINES;
        const lines = Array.from({ length: BULK_LINES }, (_, i) => JSON.stringify(metric(first + i)));
        const started = Date.now();
        const response = await postNdjson(`${running.url}/v1/metrics/bulk?wait=false`, lines.join('\n'));
        if (response.status === 202) for (let i = 0; i < BULK_LINES; i++) acknowledged.push(first + i);
        else refused.push(`${response.status} ${JSON.stringify(response.body).slice(0, 200)}`);
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, BULK_EVERY_MS - (Date.now() - started))));
      }
    };
    const singleClient = async (): Promise<void> => {
      while (loading) {
        const n = next++;
        const response = await postJson(`${running.url}/v1/metrics?wait=false`, metric(n));
        if (response.status === 202) acknowledged.push(n);
        else refused.push(`${response.status} ${JSON.stringify(response.body).slice(0, 200)}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    const load = Promise.all([bulkClient(), bulkClient(), singleClient()]);
    await new Promise((resolve) => setTimeout(resolve, 2000));

    const rssBefore = await rssBytes(running.child.pid as number);
    await server.stop();
    const outageStarted = Date.now();
    // A user PostgreSQL has but the gateway never looked up, and one that does not exist: neither can be
    // checked now, so both are spooled; the check happens when they are written.
    expect(await postJson(`${running.url}/v1/metrics?wait=false`, metric(1, 2))).toMatchObject({
      status: 202,
    });
    expect(await postJson(`${running.url}/v1/metrics?wait=false`, metric(1, 999))).toMatchObject({
      status: 202,
    });
    let rssMost = rssBefore;
    while (Date.now() - outageStarted < OUTAGE_MS) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      rssMost = Math.max(rssMost, await rssBytes(running.child.pid as number));
    }
    const spooledDuringOutage = await spoolBytes();
    const acknowledgedDuringOutage = acknowledged.length;
    server = await startEmbeddedPostgres({ dataDir, port: server.port, logger: testLogger });
    const backAt = Date.now();
    loading = false;
    await load;

    const total = acknowledged.length;
    const drainStarted = Date.now();
    await until(
      async () => (await query<{ n: number }>('SELECT count(*)::int AS n FROM user_metrics'))[0]?.n === total + 1,
      'every acknowledged row stored',
      180_000,
    );
    const drainedMs = Date.now() - drainStarted;
    const [stored] = await query<{ n: number; distinct: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT talked_time)::int AS distinct FROM user_metrics WHERE user_id = 1`,
    );
    const [late] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM user_metrics WHERE user_id = 2`);
    const [orphan] = await query<{ n: number }>(
      `SELECT count(*)::int AS n FROM rejected_metrics WHERE (payload->>'user_id')::int = 999`,
    );
    const process_ = { spoolMiB: spooledDuringOutage / 2 ** 20, rssGrowthMiB: (rssMost - rssBefore) / 2 ** 20 };
    testLogger.info(
      {
        ...process_,
        outageMs: Date.now() - outageStarted - (Date.now() - backAt),
        spoolGrowthRowsPerSecond: Math.round(acknowledgedDuringOutage / (OUTAGE_MS / 1000)),
        replayRowsPerSecond: Math.round(total / (drainedMs / 1000)),
        acknowledged: total,
      },
      'outage on disk: measured',
    );

    expect(refused).toEqual([]);
    expect(stored).toEqual({ n: total, distinct: total });
    expect(late?.n).toBe(1);
    expect(orphan?.n).toBe(1);
    expect(spooledDuringOutage).toBeGreaterThan(2 ** 20);
    // The buffer holds 2000 rows; everything else of the outage waited on disk.
    expect(rssMost - rssBefore).toBeLessThan(150 * 2 ** 20);
  },
  OUTAGE_MS + 300_000,
);
