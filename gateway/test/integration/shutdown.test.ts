import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postNdjson } from '../helpers/gateway';

// The real process: SIGTERM stops intake, flushes every buffered row, closes and exits 0.
const MAIN = path.join(PROJECT_ROOT, 'dist', 'gateway', 'src', 'main.js');

let db: TestDatabase;

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first (npm test does)`);
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
});

afterAll(async () => {
  await db?.drop();
});

function startProcess(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, DATABASE_URL: db.url, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${output}`)), 20_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /"url":"(http:\/\/[^"]+)"/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1] as string, output: () => output });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code}:\n${output}`));
    });
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)));
}

it('flushes every buffered row on SIGTERM and exits 0', async () => {
  // Rows stay buffered: batches are only cut when full or after a minute.
  const { child, url, output } = await startProcess({ BATCH_MAX_WAIT_MS: '60000', BATCH_MAX_ROWS: '100000' });
  const rows = 3000;
  const body = Array.from({ length: rows }, (_, i) =>
    JSON.stringify({
      user_id: 1,
      talked_time: i,
      microphone_used: true,
      speaker_used: true,
      time_recorded: 1_700_000_000_000 + i,
    }),
  ).join('\n');
  const response = await postNdjson(`${url}/v1/metrics/bulk?wait=false`, body);
  expect(response).toMatchObject({ status: 202, body: { accepted: rows } });
  const { rows: before } = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics');
  expect(before[0].n).toBe(0);

  const exited = exitOf(child);
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  const { rows: after } = await db.pool.query(
    'SELECT count(*)::int AS n, sum(talked_time)::bigint AS total FROM user_metrics',
  );
  expect(after[0]).toEqual({ n: rows, total: String((rows * (rows - 1)) / 2) });
  expect(output()).toContain('"lostRows":0');
});

it('stops with a message naming the variable when the configuration is bad', async () => {
  await expect(startProcess({ BATCH_MAX_ROWS: 'lots' })).rejects.toThrow(/exited with 1[\s\S]*BATCH_MAX_ROWS/);
});
