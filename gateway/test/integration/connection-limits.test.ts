import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { constants, createGzip } from 'node:zlib';
import type { Gateway } from '../../src/gateway';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, startTestGateway } from '../helpers/gateway';
import { until } from '../helpers/until';

// Caps on what clients can hold: connections (MAX_CONNECTIONS), bulk uploads in progress
// (BULK_MAX_CONCURRENT) and the time a bulk body may take to trickle in (BODY_MIN_BYTES_PER_SECOND).

const BODY_IDLE_TIMEOUT_MS = 1000;

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
});

afterAll(async () => {
  await db?.drop();
});

const line = (talkedTime: number): string =>
  JSON.stringify({
    user_id: 1,
    talked_time: talkedTime,
    microphone_used: true,
    speaker_used: false,
    time_recorded: 1_700_000_000_000,
  });

async function countWithTalkedTime(talkedTime: number): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM user_metrics WHERE talked_time = $1',
    [talkedTime],
  );
  return rows[0]?.n ?? -1;
}

/** A raw connection, and everything it received until it closed. */
interface RawClient {
  readonly socket: Socket;
  readonly received: () => string;
  readonly closed: Promise<string>;
}

function rawClient(url: string): Promise<RawClient> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const parts: Buffer[] = [];
    const received = (): string => Buffer.concat(parts).toString('utf8');
    socket.on('data', (part: Buffer) => parts.push(part));
    socket.on('error', () => undefined); // a reset is a close too
    const closed = new Promise<string>((done) => socket.on('close', () => done(received())));
    socket.once('connect', () => resolve({ socket, received, closed }));
    socket.once('error', reject);
  });
}

/** One chunk of a chunked body. */
const chunk = (data: string | Buffer): Buffer => {
  const bytes = Buffer.from(data);
  return Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]);
};
const bulkHead = (url: string, path = '/v1/metrics/bulk', extraHeaders = ''): string =>
  `POST ${path} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nContent-Type: application/x-ndjson\r\n` +
  `Transfer-Encoding: chunked\r\nConnection: close\r\n${extraHeaders}\r\n`;

/** `lines` gzip-compressed, one part per line, each decodable on its own arrival (Z_SYNC_FLUSH). */
async function gzipPerLine(lines: readonly string[]): Promise<Buffer[]> {
  const gzip = createGzip();
  let pending: Buffer[] = [];
  gzip.on('data', (part: Buffer) => pending.push(part));
  const parts: Buffer[] = [];
  for (const text of lines) {
    gzip.write(text);
    await new Promise<void>((flushed) => gzip.flush(constants.Z_SYNC_FLUSH, () => flushed()));
    parts.push(Buffer.concat(pending));
    pending = [];
  }
  gzip.destroy();
  return parts;
}
const getHealthz = (url: string): string =>
  `GET /healthz HTTP/1.1\r\nHost: ${new URL(url).host}\r\nConnection: close\r\n\r\n`;

describe('MAX_CONNECTIONS', () => {
  let gateway: Gateway;

  beforeAll(async () => {
    gateway = await startTestGateway(db, { MAX_CONNECTIONS: '3' });
  });

  afterAll(async () => {
    await gateway?.stop();
  });

  const openConnections = (): Promise<number> =>
    new Promise((resolve, reject) =>
      gateway.server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
    );

  it('closes a connection past the limit at once, and takes one again when another has closed', async () => {
    const held = await Promise.all([1, 2, 3].map(() => rawClient(gateway.url)));
    await until(async () => (await openConnections()) === 3, 'the server holds three connections');

    const refused = await rawClient(gateway.url);
    refused.socket.write(getHealthz(gateway.url));
    expect(await refused.closed).toBe('');

    // The connections it holds are served as before.
    const [first, ...others] = held as [RawClient, ...RawClient[]];
    first.socket.write(getHealthz(gateway.url));
    expect(await first.closed).toMatch(/^HTTP\/1\.1 200 /);
    await until(async () => (await openConnections()) < 3, 'a connection is free');
    const next = await rawClient(gateway.url);
    next.socket.write(getHealthz(gateway.url));
    expect(await next.closed).toMatch(/^HTTP\/1\.1 200 /);
    for (const client of others) client.socket.destroy();
  });
});

describe('BULK_MAX_CONCURRENT', () => {
  let gateway: Gateway;

  beforeAll(async () => {
    gateway = await startTestGateway(db, { BULK_MAX_CONCURRENT: '2', BODY_IDLE_TIMEOUT_MS: '20000' });
  });

  afterAll(async () => {
    await gateway?.stop();
  });

  it('answers the next bulk upload 429 with Retry-After before reading its body, and frees a slot when one ends', async () => {
    // Two uploads that send a line each and then wait; their lines are stored as they arrive.
    const uploads = await Promise.all([1, 2].map(() => rawClient(gateway.url)));
    uploads.forEach((upload, i) =>
      upload.socket.write(bulkHead(gateway.url, '/v1/metrics/bulk?wait=false') + chunk(`${line(10 + i)}\n`)),
    );
    await until(
      async () => (await countWithTalkedTime(10)) === 1 && (await countWithTalkedTime(11)) === 1,
      'both uploads are in progress',
    );

    const third = await postNdjson(`${gateway.url}/v1/metrics/bulk`, `${line(12)}\n`);
    expect(third).toMatchObject({
      status: 429,
      body: { error: 'overloaded', message: expect.stringMatching(/BULK_MAX_CONCURRENT/) },
    });
    expect(third.headers.get('retry-after')).toBe('1');
    // Other requests are not held up.
    expect((await postJson(`${gateway.url}/v1/metrics`, JSON.parse(line(13)))).status).toBe(201);

    // One upload ends normally, the other's client goes away: both slots are free again.
    const [ending, abandoned] = uploads as [RawClient, RawClient];
    ending.socket.write('0\r\n\r\n');
    await until(() => /^HTTP\/1\.1 202 /.test(ending.received()), 'the first upload is answered');
    abandoned.socket.destroy();
    await until(async () => {
      const answers = await Promise.all(
        [1, 2].map(() => postNdjson(`${gateway.url}/v1/metrics/bulk`, `${line(14)}\n`)),
      );
      return answers.every((answer) => answer.status === 200);
    }, 'two uploads at once are taken again');
    await gateway.batcher.drain();
    expect(await countWithTalkedTime(12)).toBe(0);
    ending.socket.destroy();
  });
});

describe('BODY_MIN_BYTES_PER_SECOND', () => {
  let gateway: Gateway;

  beforeAll(async () => {
    gateway = await startTestGateway(db, {
      BODY_IDLE_TIMEOUT_MS: String(BODY_IDLE_TIMEOUT_MS),
      BODY_MIN_BYTES_PER_SECOND: '1024',
    });
  });

  afterAll(async () => {
    await gateway?.stop();
  });

  it.each(['identity', 'gzip'])(
    'cuts off a bulk body (%s) that trickles in, a line every 300 ms, never idle for BODY_IDLE_TIMEOUT_MS, with 408',
    async (encoding) => {
      const lines = Array.from({ length: 40 }, () => `${line(20)}\n`);
      const parts = encoding === 'gzip' ? await gzipPerLine(lines) : lines;
      const client = await rawClient(gateway.url);
      client.socket.write(bulkHead(gateway.url, undefined, `Content-Encoding: ${encoding}\r\n`));
      // 40 lines over 12 s if nothing stops it; each gap is well under the idle timeout.
      let sent = 0;
      const trickle = (async () => {
        for (; sent < parts.length && !client.socket.destroyed; sent++) {
          client.socket.write(chunk(parts[sent] as string | Buffer));
          await sleep(300);
        }
        if (!client.socket.destroyed) client.socket.write('0\r\n\r\n');
      })();
      const reply = await client.closed;
      await trickle;
      expect(reply).toMatch(/^HTTP\/1\.1 408 /);
      const answer = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4));
      expect(answer).toMatchObject({
        error: 'request_timeout',
        message: expect.stringMatching(/BODY_MIN_BYTES_PER_SECOND/),
      });
      // Cut off within two windows of waiting, not after the whole trickle.
      expect(sent).toBeLessThan(parts.length);
    },
  );

  it('takes a bulk body that is slow but keeps up the rate', async () => {
    const client = await rawClient(gateway.url);
    client.socket.write(bulkHead(gateway.url));
    // 20 lines (about 2 KiB) every 250 ms: 8 KiB/s.
    const lines = `${Array.from({ length: 20 }, () => line(21)).join('\n')}\n`;
    for (let i = 0; i < 8; i++) {
      client.socket.write(chunk(lines));
      await sleep(250);
    }
    client.socket.write('0\r\n\r\n');
    const reply = await client.closed;
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4))).toMatchObject({ accepted: 160, rejected: 0 });
  });
});
