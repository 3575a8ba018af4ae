import { appendFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson } from '../helpers/gateway';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process';
import { numberedMetric } from '../helpers/numbered-metrics';
import { until } from '../helpers/until';

// kill -9 the gateway: a 201/200 (wait=true) means committed, so every such row is in the database
// at once; a 202 (wait=false) means spooled to disk, so every such row is there after a restart,
// replayed from the spool, and none twice.

let db: TestDatabase;
let spoolDir: string;
const running: GatewayProcess[] = [];

const metric = (n: number) => numberedMetric(n);

async function stored(): Promise<{ rows: number; distinct: number }> {
  const { rows } = await db.pool.query<{ rows: number; distinct: number }>(
    'SELECT count(*)::int AS rows, count(DISTINCT talked_time)::int AS distinct FROM user_metrics',
  );
  return rows[0] as { rows: number; distinct: number };
}

async function spoolFiles(): Promise<string[]> {
  return (await readdir(spoolDir)).filter((name) => name.endsWith('.spool'));
}

async function start(env: Record<string, string> = {}): Promise<GatewayProcess> {
  const gateway = await startGatewayProcess({ DATABASE_URL: db.url, SPOOL_DIR: spoolDir, LOG_LEVEL: 'warn', ...env });
  running.push(gateway);
  return gateway;
}

async function kill9(gateway: GatewayProcess): Promise<void> {
  gateway.child.kill('SIGKILL');
  expect(await gateway.exited).toBe('SIGKILL');
}

beforeEach(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'mg-crash-'));
});

afterEach(async () => {
  for (const gateway of running.splice(0)) {
    if (gateway.child.exitCode === null && gateway.child.signalCode === null) gateway.child.kill('SIGKILL');
    await gateway.exited;
  }
  await db?.drop();
  await rm(spoolDir, { recursive: true, force: true });
});

it('keeps every 202-acknowledged row through kill -9 and a restart, none twice', async () => {
  // Full batches commit at once; the rest would wait a minute in memory.
  const first = await start({ BATCH_MAX_ROWS: '100', BATCH_MAX_WAIT_MS: '60000' });
  const singles = await Promise.all(
    Array.from({ length: 250 }, (_, i) => postJson(`${first.url}/v1/metrics?wait=false`, metric(i))),
  );
  expect(singles.every((response) => response.status === 202)).toBe(true);
  const body = Array.from({ length: 1030 }, (_, i) => JSON.stringify(metric(1000 + i))).join('\n');
  expect(await postNdjson(`${first.url}/v1/metrics/bulk?wait=false`, body)).toMatchObject({
    status: 202,
    body: { accepted: 1030 },
  });
  // 12 full batches commit; the last 80 rows would wait a minute, in memory and in the spool.
  await until(async () => (await stored()).rows >= 1200, '1200 rows stored before the kill', 15_000);
  await kill9(first);
  expect((await stored()).rows).toBe(1200);
  const files = await spoolFiles();
  expect(files.length).toBeGreaterThan(0);
  // An append torn by the crash (no newline) was never acknowledged and must be skipped.
  await appendFile(path.join(spoolDir, files[files.length - 1] as string), '999999\t1\t\\N\t77777');

  const second = await start();
  // The spool is replayed before the gateway listens.
  expect(await stored()).toEqual({ rows: 1280, distinct: 1280 });
  second.child.kill('SIGTERM');
  expect(await second.exited).toBe(0);
  expect(await spoolFiles()).toEqual([]);
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM spool_commits');
  expect(rows[0].n).toBe(0);
});

it('has every 201-acknowledged row committed when the gateway is killed under load', async () => {
  const gateway = await start();
  const acknowledged: number[] = [];
  let next = 0;
  let stop = false;
  const client = async (): Promise<void> => {
    while (!stop) {
      const n = next++;
      try {
        const response = await postJson(`${gateway.url}/v1/metrics`, metric(n));
        if (response.status === 201) acknowledged.push(n);
      } catch {
        return; // the connection died with the process
      }
    }
  };
  const clients = Array.from({ length: 16 }, client);
  // Kill it mid-stream, once some requests have been acknowledged (however slow the machine is).
  const deadline = Date.now() + 15_000;
  await until(() => acknowledged.length >= 50 || Date.now() > deadline, '50 acknowledged rows, or 15 s', 20_000);
  await kill9(gateway);
  stop = true;
  await Promise.all(clients);

  expect(acknowledged.length).toBeGreaterThan(0);
  const { rows } = await db.pool.query<{ t: number }>('SELECT talked_time AS t FROM user_metrics');
  const committed = new Set(rows.map((row) => row.t));
  expect(acknowledged.filter((n) => !committed.has(n))).toEqual([]);
  expect(rows.length).toBe(committed.size);
});

it('refuses to share a spool directory with a running gateway', async () => {
  await start();
  await expect(start()).rejects.toThrow(/spool directory .* is in use by process/);
});
