import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { createApiKey } from '../../src/auth/api-keys';
import type { Gateway } from '../../src/gateway';
import { PROJECT_ROOT } from '../../src/paths';
import { parseUploadArgs, runUpload, type UploadIo } from '../../src/upload/command';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { startTestGateway } from '../helpers/gateway';

// `npm run upload`: a gzip file with bad lines through a real gateway, in chunks whose boundaries
// fall next to the bad lines, checked against the summary, FILE.rejects and the table; then the
// retries against a stub server that answers 503 and 429 first.

const UPLOAD_CLI = path.join(PROJECT_ROOT, 'dist', 'gateway', 'src', 'cli', 'upload.js');
const DEVICE = 'upload-test-device';

let db: TestDatabase;
let gateway: Gateway;
let dir: string;

/** A valid metric whose talked_time is its line number in the file, so that stored rows name their lines. */
const good = (line: number) =>
  JSON.stringify({
    user_id: 1,
    device_id: line % 2 === 0 ? DEVICE : null,
    talked_time: line,
    microphone_used: true,
    speaker_used: line % 3 === 0,
    time_recorded: 1_700_000_000_000 + line,
  });

/** Runs the command in this process, capturing what it prints; waits between retries are recorded, not slept. */
async function upload(argv: string[], env: Record<string, string> = {}) {
  let out = '';
  let err = '';
  const waits: number[] = [];
  const io: UploadIo = {
    out: (text) => (out += text),
    err: (text) => (err += text),
    errIsTty: false,
    wait: async (ms) => {
      waits.push(ms);
    },
  };
  const options = parseUploadArgs(argv, env);
  if (options === undefined) throw new Error('no options');
  const { exitCode, summary } = await runUpload(options, io);
  return { exitCode, summary, out, err, waits };
}

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

    const result = await upload([file, '--url', gateway.url, '--chunk-lines', '1000']);

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

// ---- Against a stub that answers what a busy or restarting gateway would ----

interface StubRequest {
  readonly at: number;
  readonly body: string;
}

type StubAnswer = { status: number; headers?: Record<string, string>; body: unknown };

/** An HTTP server on a loopback port that answers each request with the next of `answers` (the last one repeats). */
async function startStub(answers: StubAnswer[]) {
  const requests: StubRequest[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const raw = Buffer.concat(parts);
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw).toString() : raw.toString();
      requests.push({ at: Date.now(), body });
      const answer = answers[Math.min(requests.length - 1, answers.length - 1)] as StubAnswer;
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const overloaded = (retryAfter: string, details: unknown[] = []): StubAnswer => ({
  status: 429,
  headers: { 'retry-after': retryAfter },
  body: { error: 'overloaded', message: 'the buffer is full; retry later', details },
});
const unavailable = (retryAfter: string): StubAnswer => ({
  status: 503,
  headers: { 'retry-after': retryAfter },
  body: { error: 'unavailable', message: 'the database is unavailable; retry later', details: [] },
});
const ok = (accepted: number, errors: unknown[] = []): StubAnswer => ({
  status: 200,
  body: { accepted, rejected: errors.length, errors },
});

describe('retries, against a stub gateway', () => {
  let file: string;

  beforeAll(async () => {
    file = path.join(dir, 'five.ndjson');
    await writeFile(file, `${[1, 2, 3, 4, 5].map(good).join('\n')}\n`);
  });

  it('waits as Retry-After says after 503 and 429, then sends the chunk again', async () => {
    const stub = await startStub([unavailable('2'), overloaded('1'), ok(5)]);
    try {
      const result = await upload([file, '--url', stub.url]);
      expect(result.waits).toEqual([2000, 1000]);
      expect(stub.requests.map((r) => r.body)).toEqual(Array(3).fill(stub.requests[0]?.body));
      expect(result.exitCode).toBe(0);
      expect(result.summary).toMatchObject({ accepted: 5, rejected: 0, requests: 3, retries: 2, uncertainRetries: 1 });
      expect(result.err).toContain('503: retrying in 2.0 s');
      expect(result.err).toContain('429: retrying in 1.0 s');
      expect(result.out).toMatch(/retried {3}2 {2}requests.*1 of them after the gateway may have taken rows/);
    } finally {
      await stub.close();
    }
  });

  it('really waits: the built command sends again only after Retry-After', async () => {
    const stub = await startStub([unavailable('1'), ok(5)]);
    try {
      const { code } = await runCli([file, '--url', stub.url]);
      expect(code).toBe(0);
      expect(stub.requests).toHaveLength(2);
      const [first, second] = stub.requests as [StubRequest, StubRequest];
      expect(second.at - first.at).toBeGreaterThanOrEqual(950);
    } finally {
      await stub.close();
    }
  });

  it('gives up after --retries, and says which lines were not uploaded', async () => {
    const stub = await startStub([unavailable('1')]);
    try {
      const result = await upload([file, '--url', stub.url, '--retries', '2']);
      expect(stub.requests).toHaveLength(3);
      expect(result.exitCode).toBe(1);
      expect(result.summary.notUploaded).toEqual({
        fromLine: 1,
        reason: '503 unavailable: the database is unavailable; retry later',
      });
      expect(result.out).toContain('NOT UPLOADED: line 1 and every one after it');
    } finally {
      await stub.close();
    }
  });

  it('after a 429 part-way, sends again only the lines the gateway did not take, and numbers them in the file', async () => {
    const stub = await startStub([
      overloaded('0', [{ path: '', message: 'not taken', line: 4, accepted: 2 }]),
      ok(1, [{ line: 2, error: 'validation_failed', details: [{ path: '/talked_time', message: 'must be >= 0' }] }]),
    ]);
    try {
      const result = await upload([file, '--url', stub.url]);
      expect(stub.requests[1]?.body).toBe(`${good(4)}\n${good(5)}\n`);
      expect(result.summary).toMatchObject({ accepted: 3, rejected: 2, retries: 1, uncertainRetries: 0 });
      const rejects = (await readFile(`${file}.rejects`, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(rejects).toEqual([
        {
          line: 1,
          through: 3,
          count: 1,
          error: 'not_listed',
          details: [expect.objectContaining({ message: expect.stringMatching(/429/) })],
        },
        { line: 5, error: 'validation_failed', details: [{ path: '/talked_time', message: 'must be >= 0' }] },
      ]);
    } finally {
      await stub.close();
    }
  });

  it('retries a gateway that is not listening, then gives up', async () => {
    const stub = await startStub([ok(5)]);
    const { url } = stub;
    await stub.close(); // nothing listens on that port now
    const result = await upload([file, '--url', url, '--retries', '3']);
    expect(result.waits).toHaveLength(3);
    expect(result.exitCode).toBe(1);
    expect(result.summary.notUploaded?.reason).toMatch(/no answer from .*ECONNREFUSED/);
    expect(result.summary.uncertainRetries).toBe(0);
  });
});
