import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { chunkFrom, readChunks, type ChunkOptions, type UploadChunk } from '../chunks';
import { backoffMs, bulkUrl, retryAfterMs } from 'metrics-gateway-client';
import { DEFAULT_CHUNK_LINES, UsageError, parseUploadArgs } from '../command';
import { Progress, formatBytes, formatDuration } from '../progress';
import { metricLine, uploadCapturing } from './upload-capturing';

// The upload command without a gateway: cutting a file into chunks, Retry-After, arguments, the
// progress line; then whole uploads against a fake gateway on a loopback port that answers what a
// busy, restarting or older gateway would (scripted), checking what is sent again, the summary and
// FILE.rejects. Against a real gateway: gateway/test/integration/upload.test.ts.

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mg-upload-unit-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const OPTIONS: ChunkOptions = { chunkLines: 3, chunkBytes: 1 << 20, maxLineBytes: 100, startLine: 1 };

async function chunksOf(content: string | Buffer, options: Partial<ChunkOptions> = {}, gzip = false) {
  const file = path.join(dir, `f-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, gzip ? gzipSync(content) : content);
  const chunks: UploadChunk[] = [];
  for await (const chunk of readChunks(file, { ...OPTIONS, ...options })) chunks.push(chunk);
  return chunks.map((chunk) => ({ ...chunk, text: gunzipSync(chunk.body).toString('latin1') }));
}

describe('readChunks', () => {
  it('cuts lines into chunks, byte for byte, counting blank lines, each chunk a gzip body', async () => {
    const content = 'a\r\nb\n\n  \nc\n\xff\xfe\nlast';
    const chunks = await chunksOf(Buffer.from(content, 'latin1'));
    expect(chunks.map(({ firstLine, lines, rows, text }) => ({ firstLine, lines, rows, text }))).toEqual([
      { firstLine: 1, lines: 3, rows: 2, text: 'a\r\nb\n\n' },
      { firstLine: 4, lines: 3, rows: 2, text: '  \nc\n\xff\xfe\n' },
      { firstLine: 7, lines: 1, rows: 1, text: 'last\n' }, // a last line without a newline counts
    ]);
  });

  it('reads a gzip file by its first bytes, whatever its name', async () => {
    const chunks = await chunksOf('x\ny\nz\nw\n', {}, true);
    expect(chunks.map((c) => c.text)).toEqual(['x\ny\nz\n', 'w\n']);
    expect(chunks.at(-1)?.fileOffset).toBeGreaterThan(0);
  });

  it('sends a line too long to hold as a blank line, and reports it, without holding it', async () => {
    const long = 'L'.repeat(250);
    const chunks = await chunksOf(`a\n${long}\nb\n${long}`);
    expect(chunks.map(({ text, oversized, rows }) => ({ text, oversized, rows }))).toEqual([
      { text: 'a\n\nb\n', oversized: [2], rows: 2 },
      { text: '\n', oversized: [4], rows: 0 },
    ]);
  });

  it('skips the lines before --start-line and keeps their numbers', async () => {
    const chunks = await chunksOf('1\n2\n3\n4\n5\n', { startLine: 4 });
    expect(chunks.map(({ firstLine, text }) => ({ firstLine, text }))).toEqual([{ firstLine: 4, text: '4\n5\n' }]);
  });

  it('ends a chunk at chunkBytes too', async () => {
    const chunks = await chunksOf('aaaa\nbbbb\ncccc\n', { chunkLines: 100, chunkBytes: 8 });
    expect(chunks.map((c) => c.text)).toEqual(['aaaa\nbbbb\n', 'cccc\n']);
  });

  it('has nothing to send for an empty file', async () => {
    expect(await chunksOf('')).toEqual([]);
  });
});

describe('chunkFrom', () => {
  it('is the rest of a chunk from one of its lines, numbered in the file', async () => {
    const [chunk] = await chunksOf('a\n\nb\nc\nd\n', { chunkLines: 10, startLine: 1 });
    const rest = chunkFrom(chunk as UploadChunk, 3);
    expect(rest).toMatchObject({ firstLine: 3, lines: 3, rows: 3 });
    expect(gunzipSync(rest.body).toString()).toBe('b\nc\nd\n');
    expect(() => chunkFrom(chunk as UploadChunk, 9)).toThrow(RangeError);
  });
});

describe('Retry-After and backoff', () => {
  it('reads seconds and HTTP dates', () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 0);
    expect(retryAfterMs('5', now)).toBe(5000);
    expect(retryAfterMs(' 0 ', now)).toBe(0);
    expect(retryAfterMs(new Date(now + 30_000).toUTCString(), now)).toBe(30_000);
    expect(retryAfterMs(new Date(now - 30_000).toUTCString(), now)).toBe(0);
    expect(retryAfterMs(null, now)).toBeUndefined();
    expect(retryAfterMs('soon', now)).toBeUndefined();
  });

  it('takes a Retry-After that is neither delta-seconds nor an HTTP date as absent (a backoff), not as 0', () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 0);
    for (const garbage of ['1.5', '-1', '+3', 'tomorrow 5', '12abc'])
      expect(retryAfterMs(garbage, now)).toBeUndefined();
    expect(retryAfterMs('Thu, 01 Jan 2026 12:00:07 GMT', now)).toBe(7000);
  });

  it('backs off from half a second to 30 s, with jitter', () => {
    for (let i = 0; i < 20; i++) {
      expect(backoffMs(1)).toBeGreaterThanOrEqual(400);
      expect(backoffMs(1)).toBeLessThanOrEqual(600);
      expect(backoffMs(30)).toBeLessThanOrEqual(36_000);
    }
  });

  it('posts to /v1/metrics/bulk below the base URL, prefix and all', () => {
    expect(bulkUrl('http://gw:8080').href).toBe('http://gw:8080/v1/metrics/bulk?wait=true');
    expect(bulkUrl('https://example.test/metrics/').href).toBe(
      'https://example.test/metrics/v1/metrics/bulk?wait=true',
    );
  });
});

describe('parseUploadArgs', () => {
  it('has defaults, takes the key from METRICS_GATEWAY_KEY, and a relative file from INIT_CWD', () => {
    expect(parseUploadArgs(['data.ndjson'], { INIT_CWD: '/home/me', METRICS_GATEWAY_KEY: 'mgk_x' })).toEqual({
      file: '/home/me/data.ndjson',
      url: 'http://127.0.0.1:8080',
      key: 'mgk_x',
      chunkLines: DEFAULT_CHUNK_LINES,
      chunkBytes: expect.any(Number),
      maxLineBytes: expect.any(Number),
      retries: 10,
      startLine: 1,
      maxRetryWaitMs: 60_000,
    });
    const options = parseUploadArgs(
      ['/d.gz', '--url', 'https://gw', '--key', 'k', '--chunk-lines', '7', '--retries', '0', '--start-line', '9'],
      { METRICS_GATEWAY_KEY: 'other' },
    );
    expect(options).toMatchObject({
      file: '/d.gz',
      url: 'https://gw',
      key: 'k',
      chunkLines: 7,
      retries: 0,
      startLine: 9,
    });
    expect(parseUploadArgs(['--help'], {})).toBeUndefined();
  });

  it.each([
    [[], /one file/],
    [['a', 'b'], /one file/],
    [['a', '--chunk-lines', '0'], /--chunk-lines must be an integer >= 1/],
    [['a', '--chunk-lines', '1e3'], /--chunk-lines/],
    [['a', '--retries', '-1'], /--retries/],
    [['a', '--start-line', '0'], /--start-line must be an integer >= 1/],
    [['a', '--url', 'not a url'], /--url must be/],
    [['a', '--url', 'ftp://x'], /--url must be/],
    [['a', '--bogus'], /bogus/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseUploadArgs(argv, {})).toThrow(UsageError);
    expect(() => parseUploadArgs(argv, {})).toThrow(message);
  });
});

describe('Progress', () => {
  it('shows rows, bytes, rows/s and an ETA from the bytes left', () => {
    let now = 0;
    const written: string[] = [];
    const progress = new Progress({ write: (t) => written.push(t), tty: false, totalBytes: 4 << 20, now: () => now });
    now = 10_000;
    expect(progress.line({ rows: 50_000, bytes: 1 << 20 })).toBe(
      '50,000 rows  1.0 MiB / 4.0 MiB (25%)  5,000 rows/s  ETA 0:30',
    );
    progress.update({ rows: 1, bytes: 1 });
    progress.update({ rows: 2, bytes: 2 }); // within 5 s: not drawn off a terminal
    progress.finish({ rows: 3, bytes: 4 << 20 });
    expect(written).toHaveLength(2);
    expect(written[1]).toMatch(/^3 rows .*\(100%\).*ETA 0:00\n$/);
    expect(formatBytes(512)).toBe('512 B');
    expect(formatDuration(3723)).toBe('1:02:03');
  });
});

// ---- Against a fake gateway ----

interface FakeRequest {
  readonly at: number;
  readonly body: string;
}

type FakeAnswer = { status: number; headers?: Record<string, string>; body: unknown };

/** An HTTP server on a loopback port that answers each request with the next of `answers` (the last one repeats). */
async function startFakeGateway(answers: FakeAnswer[]) {
  const requests: FakeRequest[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const raw = Buffer.concat(parts);
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw).toString() : raw.toString();
      requests.push({ at: Date.now(), body });
      const answer = answers[Math.min(requests.length - 1, answers.length - 1)] as FakeAnswer;
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** Runs the upload against a fake gateway that answers `answers`; resolves with what it sent and said. */
async function uploadTo(file: string, answers: FakeAnswer[], args: string[] = [], realWaits = false) {
  const fake = await startFakeGateway(answers);
  try {
    const result = await uploadCapturing([file, '--url', fake.url, ...args], { realWaits });
    return { ...result, sent: fake.requests.map((request) => request.body), requests: fake.requests };
  } finally {
    await fake.close();
  }
}

async function rejectsOf(file: string): Promise<unknown[]> {
  const text = await readFile(`${file}.rejects`, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line));
}

const error = (line: number, code = 'validation_failed') => ({
  line,
  error: code,
  details: [{ path: '/talked_time', message: 'must be >= 0' }],
});
const ok = (accepted: number, errors: unknown[] = []): FakeAnswer => ({
  status: 200,
  body: { accepted, rejected: errors.length, errors },
});
/** An answer that stopped the request part-way, in the format of issue 8. */
const partway = (
  status: number,
  fields: { accepted: number; pending: number; resend_from_line: number; rejected?: number; errors?: unknown[] },
  retryAfter?: string,
): FakeAnswer => ({
  status,
  headers: retryAfter === undefined ? {} : { 'retry-after': retryAfter },
  body: {
    error: { 400: 'invalid_json', 413: 'payload_too_large', 429: 'overloaded', 503: 'unavailable' }[status],
    message: 'stopped part-way',
    details: [],
    rejected: fields.errors?.length ?? 0,
    errors: [],
    ...fields,
  },
});
const unavailable = (retryAfter: string): FakeAnswer => ({
  status: 503,
  headers: { 'retry-after': retryAfter },
  body: { error: 'unavailable', message: 'the database is unavailable; retry later', details: [] },
});
const overloaded = (retryAfter: string): FakeAnswer => ({
  status: 429,
  headers: { 'retry-after': retryAfter },
  body: { error: 'overloaded', message: 'the buffer is full; retry later', details: [] },
});

/** File lines from..through, as the request body that carries them. */
const linesText = (from: number, through: number, text: (line: number) => string = (line) => metricLine(line)) =>
  Array.from({ length: through - from + 1 }, (_, i) => `${text(from + i)}\n`).join('');

describe('upload: an answer that stopped part-way (issue 8)', () => {
  let file: string;
  const BLANK = 4;
  const lineText = (line: number) => (line === BLANK ? '' : metricLine(line));

  beforeEach(async () => {
    file = path.join(dir, `ten-${Math.random().toString(36).slice(2)}.ndjson`);
    await writeFile(file, linesText(1, 10, lineText)); // 9 rows: line 4 is blank
  });

  it('429 with pending 0: counts its accepted, sends exactly the lines from resend_from_line again, not as a possible duplicate', async () => {
    // Lines 1-5 hold 4 rows: 3 accepted, so one was refused although the answer does not list it.
    const result = await uploadTo(file, [partway(429, { accepted: 3, pending: 0, resend_from_line: 6 }, '1'), ok(5)]);
    expect(result.sent).toEqual([linesText(1, 10, lineText), linesText(6, 10)]);
    expect(result.waits).toEqual([1000]);
    expect(result.summary).toMatchObject({ accepted: 8, rejected: 1, rows: 9, requests: 2, retries: 1 });
    expect(result.summary.uncertainRetries).toBe(0);
    expect(result.err).toContain('  429: retrying lines 6-10 in 1.0 s\n');
    expect(result.err).not.toMatch(/stored twice/);
    expect(result.out).not.toMatch(/stored twice/);
    expect(await rejectsOf(file)).toEqual([
      {
        line: 1,
        through: 5,
        count: 1,
        error: 'not_listed',
        details: [{ message: expect.stringMatching(/refused, but the 429 answer listed only 0/) }],
      },
    ]);
  });

  it('503 with pending > 0: sends the rest again and counts it as a resend that may store rows twice, on stderr and in the summary', async () => {
    const result = await uploadTo(file, [partway(503, { accepted: 4, pending: 3, resend_from_line: 7 }, '2'), ok(4)]);
    expect(result.sent[1]).toBe(linesText(7, 10));
    expect(result.summary).toMatchObject({ accepted: 8, rejected: 1, retries: 1, uncertainRetries: 1 });
    expect(result.err).toContain(
      '  503: retrying lines 7-10 in 2.0 s; 3 of these rows may still be committed by the earlier request: ' +
        'rows without event_id may be stored twice\n',
    );
    expect(result.out).toMatch(
      /retried {3}1 {2}requests.*; 1 of them after the gateway may have taken rows: rows without event_id may be stored twice/,
    );
  });

  it('400 (a gzip body broken part-way): sends the rest again after a backoff; a 400 that got nowhere stops the upload', async () => {
    const broken = partway(400, { accepted: 5, pending: 0, resend_from_line: 7 });
    const result = await uploadTo(file, [broken, ok(4)]);
    expect(result.sent[1]).toBe(linesText(7, 10));
    expect(result.waits).toHaveLength(1);
    expect(result.waits[0]).toBeGreaterThanOrEqual(400);
    expect(result.summary).toMatchObject({ accepted: 9, rejected: 0, retries: 1, uncertainRetries: 0 });
    expect(result.exitCode).toBe(0);

    const stuck = await uploadTo(file, [partway(400, { accepted: 0, pending: 0, resend_from_line: 1 })]);
    expect(stuck.sent).toHaveLength(1);
    expect(stuck.exitCode).toBe(1);
    expect(stuck.summary.notUploaded).toEqual({ fromLine: 1, reason: '400 invalid_json: stopped part-way' });
  });

  it('writes the errors of a partial answer to FILE.rejects, once each, and leaves lines from resend_from_line to the next answer', async () => {
    // Lines 1-7 hold 6 rows: 4 accepted and lines 2 and 6 refused. Line 9 is listed too but is sent again,
    // and the next answer refuses it once more (as its line 2).
    const result = await uploadTo(file, [
      partway(
        429,
        {
          accepted: 4,
          pending: 0,
          resend_from_line: 8,
          rejected: 3,
          errors: [error(2), error(6, 'invalid_json'), error(9)],
        },
        '0',
      ),
      ok(2, [error(2)]),
    ]);
    expect(result.sent[1]).toBe(linesText(8, 10));
    expect(result.summary).toMatchObject({
      accepted: 6,
      rejected: 3,
      rows: 9,
      rejectedBy: { validation_failed: 2, invalid_json: 1 },
      retries: 1,
    });
    expect(await rejectsOf(file)).toEqual([error(2), error(6, 'invalid_json'), error(9)]);
  });

  it('takes a partial answer whose resend_from_line is past the last line as the whole chunk answered', async () => {
    const result = await uploadTo(file, [partway(413, { accepted: 9, pending: 0, resend_from_line: 11 })]);
    expect(result.sent).toHaveLength(1);
    expect(result.summary).toMatchObject({ accepted: 9, rejected: 0, retries: 0 });
    expect(result.exitCode).toBe(0);
  });

  it('says, when retries run out on a partial answer with pending rows, where to resume and that those rows may still commit', async () => {
    const result = await uploadTo(
      file,
      [partway(503, { accepted: 2, pending: 4, resend_from_line: 3 }, '1')],
      ['--retries', '0'],
    );
    expect(result.summary.accepted).toBe(2);
    expect(result.summary.notUploaded).toEqual({
      fromLine: 3,
      reason:
        '503 unavailable: stopped part-way; 4 rows from this line on may still be committed: ' +
        'rows without event_id may be stored twice if sent again',
    });
    expect(result.out).toContain('--start-line 3');
  });
});

describe('upload: answers without resend_from_line (an older gateway, or a refusal)', () => {
  let file: string;

  beforeAll(async () => {
    file = path.join(dir, 'five.ndjson');
    await writeFile(file, linesText(1, 5));
  });

  it('waits as Retry-After says after 503 and 429, then sends the whole chunk again', async () => {
    const result = await uploadTo(file, [unavailable('2'), overloaded('1'), ok(5)]);
    expect(result.waits).toEqual([2000, 1000]);
    expect(result.sent).toEqual(Array(3).fill(linesText(1, 5)));
    expect(result.exitCode).toBe(0);
    expect(result.summary).toMatchObject({ accepted: 5, rejected: 0, requests: 3, retries: 2, uncertainRetries: 1 });
    expect(result.err).toContain('503: retrying lines 1-5 in 2.0 s; the gateway may have taken some of these rows');
    expect(result.err).toContain('429: retrying lines 1-5 in 1.0 s\n');
    expect(result.out).toMatch(/retried {3}2 {2}requests.*1 of them after the gateway may have taken rows/);
  });

  it("sends the whole chunk again after an older gateway's 429 part-way, counting nothing of it, as a possible duplicate", async () => {
    // Such a gateway named the line it stopped at and the rows it had taken, but not whether they were durable.
    const older: FakeAnswer = {
      status: 429,
      headers: { 'retry-after': '0' },
      body: {
        error: 'overloaded',
        message: 'not taken',
        details: [{ path: '', message: 'not taken', line: 4, accepted: 3 }],
      },
    };
    const result = await uploadTo(file, [older, ok(5)]);
    expect(result.sent).toEqual([linesText(1, 5), linesText(1, 5)]);
    expect(result.summary).toMatchObject({ accepted: 5, rejected: 0, retries: 1, uncertainRetries: 1 });
  });

  it("stops at a 413 that does not say how far it got, naming the chunk's first line", async () => {
    const result = await uploadTo(file, [
      { status: 413, body: { error: 'payload_too_large', message: 'the body is too large', details: [] } },
    ]);
    expect(result.sent).toHaveLength(1);
    expect(result.summary).toMatchObject({
      accepted: 0,
      notUploaded: { fromLine: 1, reason: '413 payload_too_large: the body is too large' },
    });
  });

  it('gives up after --retries, and says which lines were not uploaded', async () => {
    const result = await uploadTo(file, [unavailable('1')], ['--retries', '2']);
    expect(result.sent).toHaveLength(3);
    expect(result.exitCode).toBe(1);
    expect(result.summary.notUploaded).toEqual({
      fromLine: 1,
      reason: '503 unavailable: the database is unavailable; retry later',
    });
    expect(result.out).toContain('NOT UPLOADED: line 1 and every one after it');
  });

  it('really waits: sends again only after Retry-After', async () => {
    const result = await uploadTo(file, [unavailable('1'), ok(5)], [], true);
    expect(result.exitCode).toBe(0);
    const [first, second] = result.requests as [FakeRequest, FakeRequest];
    expect(second.at - first.at).toBeGreaterThanOrEqual(950);
  });

  it('retries a gateway that is not listening, then gives up', async () => {
    const fake = await startFakeGateway([ok(5)]);
    await fake.close(); // nothing listens on that port now
    const result = await uploadCapturing([file, '--url', fake.url, '--retries', '3']);
    expect(result.waits).toHaveLength(3);
    expect(result.exitCode).toBe(1);
    expect(result.summary.notUploaded?.reason).toMatch(/no answer from .*ECONNREFUSED/);
    expect(result.summary.uncertainRetries).toBe(0);
  });
});
