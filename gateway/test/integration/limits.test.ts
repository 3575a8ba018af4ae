import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import type { Gateway } from '../../src/gateway';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, request, startTestGateway } from '../helpers/gateway';
import { startGatewayProcess } from '../helpers/process';

// Hostile and broken clients: a gzip bomb, bodies past BULK_MAX_BYTES, an oversized line, bodies and
// headers that stall (slow loris). Each is refused with the contract's error, the lines taken before
// the refusal stay taken, and the gateway keeps serving everyone else.

const MAX_LINE_BYTES = 1024;
const BODY_IDLE_TIMEOUT_MS = 1000;
const HEADERS_TIMEOUT_MS = 1000;
const BULK_MAX_BYTES = 65_536;
/**
 * How late a timed-out connection may close: Node checks header timeouts once a second, and a loaded
 * machine delays timers further. Still far below anything but the timeout closing it.
 */
const CLOSE_MARGIN_MS = 5000;

let db: TestDatabase;
/** Default limits but for short timeouts and a small line limit. */
let gateway: Gateway;
/** BULK_MAX_BYTES small and the gzip ratio check off, so the total limit alone is tested. */
let capped: Gateway;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  gateway = await startTestGateway(db, {
    BULK_MAX_LINE_BYTES: String(MAX_LINE_BYTES),
    BODY_IDLE_TIMEOUT_MS: String(BODY_IDLE_TIMEOUT_MS),
    HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
  });
  capped = await startTestGateway(db, { BULK_MAX_BYTES: String(BULK_MAX_BYTES), BULK_GZIP_MAX_RATIO: '0' });
});

afterAll(async () => {
  await capped?.stop();
  await gateway?.stop();
  await db?.drop();
});

/** A valid metric line; `talkedTime` tells each test's rows apart. */
const line = (talkedTime: number, timeRecorded = 1_700_000_000_000): string =>
  JSON.stringify({
    user_id: 1,
    talked_time: talkedTime,
    microphone_used: true,
    speaker_used: false,
    time_recorded: timeRecorded,
  });

async function countWithTalkedTime(talkedTime: number): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM user_metrics WHERE talked_time = $1',
    [talkedTime],
  );
  return rows[0]?.n ?? -1;
}

/** 1 GiB of zeros as concatenated gzip members (RFC 1952 allows several): about 1 MB, made in ms. */
function gzipBomb(): Buffer {
  const member = gzipSync(Buffer.alloc(16 * 1024 * 1024), { level: 9 });
  return Buffer.concat(Array.from({ length: 64 }, () => member));
}

/**
 * What the kernel counts for one process (Linux /proc): its resident memory, the peak of it since the
 * last resetPeak(), and the CPU time it has used. A gateway process of its own is measured this way,
 * so that neither the test worker's own memory nor a loaded machine's slowness gets into the numbers.
 */
async function processUsage(pid: number): Promise<{ rssBytes: number; peakBytes: number; cpuMs: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // utime and stime, the 14th and 15th fields, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
  const [utime, stime] = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .slice(11, 13)
    .map(Number);
  return { rssBytes: kib('VmRSS'), peakBytes: kib('VmHWM'), cpuMs: ((utime ?? 0) + (stime ?? 0)) * 10 };
}

/** Resets the process's peak resident memory (VmHWM) to what it holds now. */
async function resetPeak(pid: number): Promise<void> {
  await writeFile(`/proc/${pid}/clear_refs`, '5');
}

/**
 * POSTs `chunks` without Content-Length (chunked), and reads the answer even when the server answers
 * before the body is sent and closes: a refusal mid-body must reach the client.
 */
function postChunked(
  url: string,
  chunks: readonly Buffer[],
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...headers } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (part: Buffer) => parts.push(part));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) });
        });
        res.on('error', reject);
      },
    );
    // Writing after the server has answered and closed fails; the answer is what counts.
    req.on('error', (error) => setTimeout(() => reject(error), 200));
    void (async () => {
      for (const chunk of chunks) {
        if (req.destroyed) return;
        if (!req.write(chunk)) await new Promise((drained) => req.once('drain', drained));
      }
      req.end();
    })();
  });
}

/** Sends `head` (and `body`) on a raw socket, then stalls; resolves with what came back once it closes. */
function stallAfter(
  url: string,
  head: string,
  body = '',
): Promise<{ reply: string; closedAfterMs: number; sentAt: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const parts: Buffer[] = [];
    let sentAt = 0;
    socket.on('data', (part: Buffer) => parts.push(part));
    socket.on('error', () => undefined); // a reset after the answer is still a close
    socket.on('close', () =>
      resolve({ reply: Buffer.concat(parts).toString('utf8'), closedAfterMs: Date.now() - sentAt, sentAt }),
    );
    socket.on('connect', () => {
      socket.write(head + body, () => {
        sentAt = Date.now();
      });
    });
    setTimeout(() => {
      socket.destroy();
      reject(new Error('the server did not close the stalled connection within 20 s'));
    }, 20_000).unref();
  });
}

const bulkHead = (url: string, extra = ''): string =>
  `POST /v1/metrics/bulk HTTP/1.1\r\nHost: ${new URL(url).host}\r\nContent-Type: application/x-ndjson\r\n${extra}\r\n`;

describe('a gzip bomb', () => {
  // Measured on a gateway process of its own: its memory and CPU time, not the test worker's, and not
  // the wall clock, which a loaded machine stretches.
  (process.platform === 'linux' ? it : it.skip)(
    'is refused with 413 after inflating about a megabyte, without the memory or time to inflate it',
    async () => {
      const bomb = gzipBomb();
      expect(bomb.length).toBeLessThan(1_200_000);
      const child = await startGatewayProcess({ DATABASE_URL: db.url, SPOOL: 'false', LOG_LEVEL: 'warn' });
      const pid = child.child.pid as number;
      try {
        // A first upload, so that what is set up on first use is not counted.
        expect(await postNdjson(`${child.url}/v1/metrics/bulk`, `${line(1)}\n`)).toMatchObject({ status: 200 });
        await resetPeak(pid);
        const before = await processUsage(pid);
        const response = await postChunked(`${child.url}/v1/metrics/bulk`, [bomb], { 'content-encoding': 'gzip' });
        const after = await processUsage(pid);
        expect(response.status).toBe(413);
        expect(response.body).toMatchObject({
          error: 'payload_too_large',
          message: expect.stringMatching(/BULK_GZIP_MAX_RATIO/),
        });
        // Inflating the whole 1 GiB takes about 4 s of CPU here; the refusal needs the first MiB only.
        expect(after.cpuMs - before.cpuMs).toBeLessThan(1500);
        expect(after.peakBytes - before.rssBytes).toBeLessThan(64 * 1024 * 1024);
        // The gateway is fine: the next upload is taken.
        expect(await postNdjson(`${child.url}/v1/metrics/bulk`, `${line(1)}\n`)).toMatchObject({ status: 200 });
      } finally {
        child.child.kill('SIGTERM');
        await child.exited;
      }
    },
  );

  it('is refused by BULK_MAX_BYTES too when the ratio check is off', async () => {
    const response = await postChunked(`${capped.url}/v1/metrics/bulk`, [gzipBomb()], { 'content-encoding': 'gzip' });
    expect(response).toMatchObject({
      status: 413,
      body: { error: 'payload_too_large', message: expect.stringMatching(/BULK_MAX_BYTES/) },
    });
  });

  it('does not catch a well-compressed honest upload', async () => {
    // Lines that differ only in a timestamp compress about 50 times; the default ratio limit is 200.
    const lines = Array.from({ length: 30_000 }, (_, i) => line(2, 1_700_000_000_000 + i * 1000)).join('\n');
    const body = gzipSync(lines);
    expect(lines.length).toBeGreaterThan(2 * 1024 * 1024);
    const response = await postNdjson(`${gateway.url}/v1/metrics/bulk?wait=false`, body, {
      'content-encoding': 'gzip',
    });
    expect(response).toMatchObject({ status: 202, body: { accepted: 30_000, rejected: 0 } });
  });
});

describe('BULK_MAX_BYTES', () => {
  it('refuses a body whose Content-Length is over the limit before reading it', async () => {
    const body = Array.from({ length: 1000 }, () => line(10)).join('\n');
    expect(body.length).toBeGreaterThan(BULK_MAX_BYTES);
    const response = await postNdjson(`${capped.url}/v1/metrics/bulk`, body);
    expect(response).toMatchObject({ status: 413, body: { error: 'payload_too_large' } });
    expect(await countWithTalkedTime(10)).toBe(0);
  });

  it('cuts off a chunked body at the limit, and keeps the lines taken before it', async () => {
    const chunk = Buffer.from(`${Array.from({ length: 100 }, () => line(11)).join('\n')}\n`);
    const chunks = Array.from({ length: Math.ceil((2 * BULK_MAX_BYTES) / chunk.length) }, () => chunk);
    const response = await postChunked(`${capped.url}/v1/metrics/bulk`, chunks);
    expect(response).toMatchObject({ status: 413, body: { error: 'payload_too_large' } });
    const { accepted, pending, resend_from_line: resendFrom } = response.body;
    // Lines taken before the cut that were still waiting in the buffer are taken back out: only what was
    // committed counts, and the client sends the rest again.
    expect(accepted).toBeGreaterThanOrEqual(0);
    expect(accepted).toBeLessThanOrEqual(BULK_MAX_BYTES / (line(11).length + 1));
    expect(pending).toBe(0);
    expect(resendFrom).toBe(accepted + 1);
    expect(await countWithTalkedTime(11)).toBe(accepted);
  });
});

describe('line and body size', () => {
  it('refuses an oversized line with 413 for that line only and stores the others', async () => {
    const long = line(20).replace('{', `{"pad":"${'x'.repeat(2 * MAX_LINE_BYTES)}",`);
    const response = await postNdjson(`${gateway.url}/v1/metrics/bulk`, [line(20), long, line(20)].join('\n'));
    expect(response).toMatchObject({
      status: 200,
      body: { accepted: 2, rejected: 1, errors: [{ line: 2, error: 'payload_too_large' }] },
    });
    expect(await countWithTalkedTime(20)).toBe(2);
  });

  it('refuses a single metric over METRIC_MAX_BYTES with 413', async () => {
    const response = await postJson(`${gateway.url}/v1/metrics`, `{"pad":"${'x'.repeat(20_000)}"}`);
    expect(response).toMatchObject({ status: 413, body: { error: 'payload_too_large' } });
  });
});

describe('slow clients', () => {
  it('cuts off a bulk body that stalls mid-line after BODY_IDLE_TIMEOUT_MS with 408, keeping the lines before it', async () => {
    const body = `${line(30)}\n${line(30)}\n${line(30).slice(0, 40)}`;
    const stalled = stallAfter(
      gateway.url,
      bulkHead(gateway.url, 'Transfer-Encoding: chunked\r\n'),
      `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n`,
    );
    // Meanwhile, everyone else is served.
    await sleep(100);
    expect(await request(`${gateway.url}/healthz`)).toMatchObject({ status: 200 });
    expect(await postJson(`${gateway.url}/v1/metrics`, JSON.parse(line(31)))).toMatchObject({ status: 201 });

    const { reply, closedAfterMs } = await stalled;
    expect(closedAfterMs).toBeGreaterThanOrEqual(BODY_IDLE_TIMEOUT_MS - 50);
    expect(closedAfterMs).toBeLessThan(BODY_IDLE_TIMEOUT_MS + CLOSE_MARGIN_MS);
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(reply).toMatch(/\r\nconnection: close\r\n/i);
    const answer = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4));
    expect(answer).toMatchObject({ error: 'request_timeout' });
    expect(answer).toMatchObject({ accepted: 2, pending: 0, resend_from_line: 3 });
    expect(await countWithTalkedTime(30)).toBe(2);
  });

  // Express routes /V1/Metrics/Bulk/ to the bulk upload too, so the single-body deadline must skip it.
  it.each(['/v1/metrics/bulk', '/V1/Metrics/Bulk/'])(
    'does not cut off a bulk body that is slow but keeps coming (%s)',
    async (bulkPath) => {
      // 20 lines (about 2 KiB) per chunk: slow, but above BODY_MIN_BYTES_PER_SECOND (1024 by default).
      const chunks = Array.from({ length: 5 }, () => Buffer.from(`${line(32)}\n`.repeat(20)));
      const response = await new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = httpRequest(
          `${gateway.url}${bulkPath}`,
          { method: 'POST', headers: { 'content-type': 'application/x-ndjson' } },
          (res) => {
            const parts: Buffer[] = [];
            res.on('data', (part: Buffer) => parts.push(part));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(parts).toString()) }),
            );
          },
        );
        req.on('error', reject);
        void (async () => {
          for (const chunk of chunks) {
            req.write(chunk);
            await sleep(BODY_IDLE_TIMEOUT_MS / 10);
          }
          req.end();
        })();
      });
      expect(response).toMatchObject({ status: 200, body: { accepted: 100, rejected: 0 } });
    },
  );

  it('closes a connection whose headers stall, after HEADERS_TIMEOUT_MS', async () => {
    const { reply, closedAfterMs } = await stallAfter(
      gateway.url,
      `POST /v1/metrics HTTP/1.1\r\nHost: ${new URL(gateway.url).host}\r\nContent-Type: appl`,
    );
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(closedAfterMs).toBeLessThan(HEADERS_TIMEOUT_MS + CLOSE_MARGIN_MS);
  });

  it('answers 408 and closes a connection whose single-metric body stalls, after BODY_IDLE_TIMEOUT_MS', async () => {
    const head =
      `POST /v1/metrics HTTP/1.1\r\nHost: ${new URL(gateway.url).host}\r\n` +
      'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n';
    const { reply, closedAfterMs } = await stallAfter(gateway.url, head, line(40).slice(0, 50));
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(reply).toContain('"error":"request_timeout"');
    expect(closedAfterMs).toBeGreaterThanOrEqual(BODY_IDLE_TIMEOUT_MS - 50);
    expect(closedAfterMs).toBeLessThan(BODY_IDLE_TIMEOUT_MS + CLOSE_MARGIN_MS);
    expect(await countWithTalkedTime(40)).toBe(0);
  });
});
