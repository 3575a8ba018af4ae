import { request as httpRequest, type ClientRequest } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { constants as zlibConstants, createGzip, gzipSync } from 'node:zlib';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postNdjson, request, startTestGateway } from '../helpers/gateway';
import { until } from '../helpers/until';

// Bulk bodies at their edges: nothing at all, nothing but blank lines, and a client that goes away
// in the middle of its upload. Every test writes rows of a user of its own.

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let bulkUrl: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) SELECT g, 'edge user ' || g FROM generate_series(1, 20) AS g`);
  gateway = await startTestGateway(db);
  bulkUrl = `${gateway.url}/v1/metrics/bulk`;
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

const line = (userId: number, talkedTime: number): string =>
  JSON.stringify({
    user_id: userId,
    talked_time: talkedTime,
    microphone_used: talkedTime % 2 === 0,
    speaker_used: true,
    voice_sentiment: (talkedTime % 1000) / 1000,
    time_recorded: 1_700_000_000_000 + talkedTime,
  });

async function totalRows(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    'SELECT (SELECT count(*) FROM user_metrics) + (SELECT count(*) FROM rejected_metrics) AS n',
  );
  return Number(rows[0]?.n);
}

/** A user's rows as the lines that would have sent them, ordered by talked_time. */
async function storedLines(userId: number): Promise<string[]> {
  const { rows } = await db.pool.query<{
    talked_time: number;
    microphone_used: boolean;
    voice_sentiment: number;
    ms: string;
  }>(
    `SELECT talked_time, microphone_used, voice_sentiment, (extract(epoch FROM time_recorded) * 1000)::bigint AS ms
       FROM user_metrics WHERE user_id = $1 AND speaker_used ORDER BY talked_time`,
    [userId],
  );
  return rows.map((row) => {
    const expected = line(userId, row.talked_time);
    const parsed = JSON.parse(expected);
    // Whole rows only: every stored field is the one its line sent.
    const whole =
      row.microphone_used === parsed.microphone_used &&
      row.voice_sentiment === parsed.voice_sentiment &&
      Number(row.ms) === parsed.time_recorded;
    return whole ? expected : `damaged row ${JSON.stringify(row)}`;
  });
}

describe('a bulk body with no metric in it', () => {
  it.each([
    ['empty', ''],
    ['only LF blank lines', '\n\n\n'],
    ['only CRLF blank lines', '\r\n\r\n\r\n'],
    ['blank lines of spaces and tabs, LF and CRLF mixed', ' \n\t\r\n  \t \r\n\n'],
  ])('is answered with nothing accepted and nothing refused: %s', async (_name, body) => {
    const before = await totalRows();
    for (const [query, status] of [
      ['', 200],
      ['?wait=false', 202],
    ] as const) {
      expect(await postNdjson(`${bulkUrl}${query}`, body)).toMatchObject({
        status,
        body: { accepted: 0, rejected: 0, errors: [] },
      });
      expect(await postNdjson(`${bulkUrl}${query}`, gzipSync(body), { 'content-encoding': 'gzip' })).toMatchObject({
        status,
        body: { accepted: 0, rejected: 0, errors: [] },
      });
    }
    await gateway.batcher.drain();
    expect(await totalRows()).toBe(before);
  });

  it('is answered the same when sent chunked, with no Content-Length', async () => {
    const answer = await new Promise<{ status: number; body: unknown }>((resolve, reject) => {
      const req = httpRequest(
        bulkUrl,
        { method: 'POST', headers: { 'content-type': 'application/x-ndjson' } },
        (res) => {
          let text = '';
          res.on('data', (part: Buffer) => (text += part.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
        },
      );
      req.on('error', reject);
      req.write('\r\n');
      req.end();
    });
    expect(answer).toEqual({ status: 200, body: { accepted: 0, rejected: 0, errors: [] } });
  });
});

describe('a client that disconnects mid-upload', () => {
  /** Starts a chunked bulk upload; the answer, if any ever comes, is ignored. */
  function startUpload(path: string, headers: Record<string, string> = {}): ClientRequest {
    const req = httpRequest(`${gateway.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', ...headers },
    });
    req.on('error', () => undefined); // the connection is cut on purpose
    req.on('response', (res) => res.resume());
    req.flushHeaders();
    return req;
  }

  async function expectServedAfterwards(userId: number): Promise<void> {
    expect((await request(`${gateway.url}/healthz`)).status).toBe(200);
    expect((await request(`${gateway.url}/readyz`)).status).toBe(200);
    const next = await postNdjson(bulkUrl, [line(userId, 9001), line(userId, 9002)].join('\n'));
    expect(next).toMatchObject({ status: 200, body: { accepted: 2, rejected: 0 } });
  }

  it.each([
    ['wait=true', '', 1],
    ['wait=false', '?wait=false', 2],
  ])(
    'leaves whole rows only: the lines received before, never the one cut in half (%s)',
    async (_name, query, user) => {
      const whole = Array.from({ length: 50 }, (_, i) => line(user, i));
      const upload = startUpload(`/v1/metrics/bulk${query}`);
      // 50 whole lines, then most of a 51st: its closing brace never comes.
      upload.write(`${whole.join('\n')}\n${line(user, 50).slice(0, -1)}`);
      await until(async () => (await storedLines(user)).length === 50, 'the 50 whole lines stored');
      upload.destroy();

      await sleep(200); // the gateway notices the closed socket
      await gateway.batcher.drain();
      expect(await storedLines(user)).toEqual(whole);
      await expectServedAfterwards(user);
    },
  );

  it('leaves whole rows only when a gzip upload stops mid-stream', async () => {
    const user = 3;
    const whole = Array.from({ length: 200 }, (_, i) => line(user, i));
    const upload = startUpload('/v1/metrics/bulk', { 'content-encoding': 'gzip' });
    const gzip = createGzip();
    gzip.on('data', (part: Buffer) => upload.write(part));
    gzip.write(`${whole.join('\n')}\n${line(user, 200).slice(0, 30)}`);
    // Flush what is written so far as a complete deflate block: the gateway can inflate it, the
    // stream itself stays unfinished.
    await new Promise<void>((resolve) => gzip.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
    await until(async () => (await storedLines(user)).length === 200, 'the 200 whole lines stored');
    upload.destroy();
    gzip.destroy();

    await sleep(200);
    await gateway.batcher.drain();
    expect(await storedLines(user)).toEqual(whole);
    await expectServedAfterwards(user);
  });

  it('does not disturb an upload that runs beside it', async () => {
    const [leaver, stayer] = [4, 5];
    const leaving = startUpload('/v1/metrics/bulk');
    leaving.write(`${line(leaver, 1)}\n${line(leaver, 2)}\n`);
    const staying = postNdjson(bulkUrl, Array.from({ length: 3000 }, (_, i) => line(stayer, i)).join('\n'));
    leaving.destroy();
    expect(await staying).toMatchObject({ status: 200, body: { accepted: 3000, rejected: 0 } });
    await gateway.batcher.drain();
    expect(await storedLines(stayer)).toHaveLength(3000);
    // The leaver's lines may or may not have been read before the cut; whatever is stored is whole.
    expect([[], [line(leaver, 1)], [line(leaver, 1), line(leaver, 2)]]).toContainEqual(await storedLines(leaver));
  });
});
