import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { chunkFrom, readChunks, type ChunkOptions, type UploadChunk } from '../../src/upload/chunks';
import { backoffMs, bulkUrl, retryAfterMs } from '../../src/upload/client';
import { DEFAULT_CHUNK_LINES, UsageError, parseUploadArgs } from '../../src/upload/command';
import { Progress, formatBytes, formatDuration } from '../../src/upload/progress';

// The upload command's parts without a gateway: cutting a file into chunks, Retry-After, arguments,
// the progress line. Against real and stub gateways: test/integration/upload.test.ts.

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
