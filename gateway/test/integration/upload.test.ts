import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { createApiKey } from '../../src/auth/api-keys';
import type { Gateway } from '../../src/gateway';
import { PROJECT_ROOT } from '../../src/paths';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { startTestGateway } from '../helpers/gateway';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process';
import { metricLine, uploadCapturing } from '../../../tools/upload/test/upload-capturing';

// `npm run upload` against real gateways: a gzip file with bad lines, in chunks whose boundaries fall
// next to the bad lines, checked against the summary, FILE.rejects and the table; the built command;
// and a gateway killed after a 429 part-way, whose untaken rows must be sent again. What the command
// does with each kind of answer (partial ones, older gateways, retries): tools/upload/test/upload.test.ts.

const UPLOAD_CLI = path.join(PROJECT_ROOT, 'dist', 'tools', 'upload', 'cli.js');
const DEVICE = 'upload-test-device';

let db: TestDatabase;
let gateway: Gateway;
let dir: string;

/** A valid metric whose talked_time is its line number in the file, so that stored rows name their lines. */
const good = (line: number) => metricLine(line, line % 2 === 0 ? DEVICE : null);

/** Runs the built command (dist/, as `npm run upload` does) and resolves with its exit code and output. */
function runCli(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    if (!existsSync(UPLOAD_CLI)) throw new Error(`${UPLOAD_CLI} is missing: run "npm run build" first (npm test does)`);
    const child = spawn(process.execPath, [UPLOAD_CLI, ...args], {
      env: { ...process.env, METRICS_GATEWAY_KEY: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  await db.pool.query(`INSERT INTO devices (id) VALUES ($1)`, [DEVICE]);
  gateway = await startTestGateway(db, { BULK_MAX_LINE_BYTES: '1024' });
  dir = await mkdtemp(path.join(os.tmpdir(), 'mg-upload-'));
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('against a real gateway', () => {
  it('uploads a gzip file in chunks, writes the refused lines with their file line numbers, stores the rest', async () => {
    const LINES = 2600;
    const bad: Record<number, string> = {
      1: '{"user_id": 1, "talk_time": 3}', // the very first line
      999: 'not json',
      1000: JSON.stringify({ ...JSON.parse(good(1000)), talked_time: -1 }), // last line of chunk 1
      1001: JSON.stringify({ ...JSON.parse(good(1001)), user_id: 424242 }), // first line of chunk 2
      1500: `{"user_id": 1, "pad": "${'x'.repeat(2000)}"}`, // longer than BULK_MAX_LINE_BYTES
      2001: JSON.stringify({ ...JSON.parse(good(2001)), time_recorded: '2024-02-30T10:00:00Z' }),
      2600: '{"user_id": ', // the last line, without a newline
    };
    const blank = new Set([5, 1002, 2002]);
    const lines: string[] = [];
    for (let line = 1; line <= LINES; line++) lines.push(bad[line] ?? (blank.has(line) ? '' : good(line)));
    lines[41] = `${lines[41]}\r`; // CRLF on line 42
    const file = path.join(dir, 'metrics.ndjson.gz');
    await writeFile(file, gzipSync(lines.join('\n')));
    await writeFile(`${file}.rejects`, 'left by an earlier upload\n');

    const result = await uploadCapturing([file, '--url', gateway.url, '--chunk-lines', '1000']);

    const stored = LINES - Object.keys(bad).length - blank.size;
    expect(result.exitCode).toBe(1);
    expect(result.summary).toMatchObject({
      lines: LINES,
      rows: LINES - blank.size,
      accepted: stored,
      rejected: 7,
      rejectedBy: { validation_failed: 3, invalid_json: 2, unknown_reference: 1, payload_too_large: 1 },
      requests: 3,
      retries: 0,
      rejectsFile: `${file}.rejects`,
    });
    expect(result.summary.notUploaded).toBeUndefined();
    expect(result.out).toContain(
      `metrics.ndjson.gz: ${(LINES - blank.size).toLocaleString('en-US')} rows in 3 requests`,
    );
    expect(result.out).toMatch(/accepted {2}2,590\n/);
    expect(result.out).toMatch(
      /rejected {6}7 {2}\(validation_failed 3, invalid_json 2, .*\) {2}-> .*metrics\.ndjson\.gz\.rejects/,
    );
    expect(result.err).toMatch(/2,597 rows {2}[\d.]+ KiB \/ [\d.]+ KiB \(100%\) {2}[\d,]+ rows\/s {2}ETA 0:00/);

    const rejects = (await readFile(`${file}.rejects`, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(rejects.map((r) => [r.line, r.error])).toEqual([
      [1, 'validation_failed'],
      [999, 'invalid_json'],
      [1000, 'validation_failed'],
      [1001, 'unknown_reference'],
      [1500, 'payload_too_large'],
      [2001, 'validation_failed'],
      [2600, 'invalid_json'],
    ]);
    expect(rejects[2].details).toEqual([{ path: '/talked_time', message: 'must be >= 0' }]);
    expect(rejects[3].details).toEqual([{ path: '/user_id', message: 'no user with id 424242' }]);

    const { rows } = await db.pool.query<{ talked_time: number }>(
      'SELECT talked_time FROM user_metrics ORDER BY talked_time',
    );
    const expected: number[] = [];
    for (let line = 1; line <= LINES; line++) if (bad[line] === undefined && !blank.has(line)) expected.push(line);
    expect(rows.map((row) => row.talked_time)).toEqual(expected);
    expect(expected).toHaveLength(stored);
  });

  it('runs as a command: exit 0 and no .rejects file for a clean file, the key from METRICS_GATEWAY_KEY', async () => {
    const secured = await startTestGateway(db, { AUTH_REQUIRED: 'true' });
    try {
      const { key } = await createApiKey(db.pool, 'uploader', 'ingest');
      const file = path.join(dir, 'clean.ndjson');
      await writeFile(file, `${Array.from({ length: 30 }, (_, i) => good(10_001 + i)).join('\n')}\n`);
      await writeFile(`${file}.rejects`, 'stale\n');

      const refused = await runCli([file, '--url', secured.url, '--retries', '0']);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toMatch(/NOT UPLOADED: line 1 and every one after it \(401 unauthorized: /);
      expect(refused.stdout).toContain(`--start-line 1`);

      const done = await runCli([file, '--url', secured.url, '--chunk-lines', '7'], { METRICS_GATEWAY_KEY: key });
      expect(done.stderr).toMatch(/30 rows .*\(100%\)/);
      expect(done.stdout).toMatch(
        /^clean\.ndjson: 30 rows in 5 requests, [\d.]+ s \([\d,]+ rows\/s\)\n {2}accepted {2}30\n {2}rejected {2} 0\n$/,
      );
      expect(done.code).toBe(0);
      expect(existsSync(`${file}.rejects`)).toBe(false);
      const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics WHERE talked_time > 10000');
      expect(rows[0].n).toBe(30);
    } finally {
      await secured.stop();
    }
  });

  it('answers a usage error with exit status 2', async () => {
    expect((await runCli([])).code).toBe(2);
    const missing = await runCli([path.join(dir, 'no-such-file.ndjson')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no-such-file\.ndjson/);
  });
});

describe('a gateway killed after answering 429 part-way (issue 8)', () => {
  const running: GatewayProcess[] = [];
  const spoolDirs: string[] = [];

  async function startProcess(env: Record<string, string>): Promise<GatewayProcess> {
    const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'mg-upload-spool-'));
    spoolDirs.push(spoolDir);
    const started = await startGatewayProcess({ DATABASE_URL: db.url, SPOOL_DIR: spoolDir, LOG_LEVEL: 'warn', ...env });
    running.push(started);
    return started;
  }

  afterEach(async () => {
    for (const started of running.splice(0)) {
      if (started.child.exitCode === null && started.child.signalCode === null) started.child.kill('SIGKILL');
      await started.exited;
    }
    for (const spoolDir of spoolDirs.splice(0)) await rm(spoolDir, { recursive: true, force: true });
  });

  it('sends again every line whose rows were not durable, so that none is lost, and says they may be stored twice', async () => {
    const LINES = 3000;
    const FIRST = 50_000; // talked_time of line 1: apart from the other tests' rows
    const file = path.join(dir, 'killed.ndjson');
    // With event_ids, what the first gateway may have stored cannot be stored twice: the table shows loss only.
    const text = Array.from({ length: LINES }, (_, i) => {
      const metric = JSON.parse(metricLine(FIRST + i)) as Record<string, unknown>;
      return `${JSON.stringify({ ...metric, event_id: randomUUID() })}\n`;
    }).join('');
    await writeFile(file, text);

    // Writes to user_metrics wait for this lock, so the rows the gateway takes stay in its memory until
    // its buffer is full and the upload is answered 429 part-way.
    const first = await startProcess({
      BUFFER_MAX_ROWS: '200',
      BATCH_MAX_ROWS: '100',
      BULK_BACKPRESSURE_TIMEOUT_MS: '300',
    });
    const lock = await db.pool.connect();
    let locked = true;
    const unlock = async (): Promise<void> => {
      if (!locked) return;
      locked = false;
      await lock.query('COMMIT');
      lock.release();
    };
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE user_metrics IN EXCLUSIVE MODE');
    try {
      const { port } = new URL(first.url);
      const result = await uploadCapturing([file, '--url', first.url], {
        onWait: async () => {
          if (running.length > 1) return;
          // A crash: what the gateway held in memory is gone. Another one takes its place.
          first.child.kill('SIGKILL');
          await first.exited;
          await unlock();
          await startProcess({ PORT: port });
        },
      });

      const { rows } = await db.pool.query<{ rows: number; lines: number }>(
        'SELECT count(*)::int AS rows, count(DISTINCT talked_time)::int AS lines FROM user_metrics WHERE talked_time >= $1',
        [FIRST],
      );
      expect(rows[0]).toEqual({ rows: LINES, lines: LINES });
      expect(result.err).toMatch(
        /^ {2}429: retrying lines 1-3,000 in [\d.]+ s; (the gateway may have taken some of these rows|[\d,]+ of these rows may still be committed by the earlier request): rows without event_id may be stored twice$/m,
      );
      expect(result.summary).toMatchObject({ accepted: LINES, rejected: 0, retries: 1, uncertainRetries: 1 });
      expect(result.summary.notUploaded).toBeUndefined();
      expect(result.exitCode).toBe(0);
    } finally {
      await unlock();
    }
  }, 90_000);
});
