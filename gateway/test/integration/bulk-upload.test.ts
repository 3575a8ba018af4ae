import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { DEMO_DEVICE_IDS, seedDemoData } from '../../src/db/demo-data';
import { generateMetrics, type GeneratedMetric } from '../../../seed/generate-metrics';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postNdjson, request, startTestGateway } from '../helpers/gateway';
import { until } from '../helpers/until';

// POST /v1/metrics/bulk end to end: real NDJSON bodies over HTTP into a real PostgreSQL.
// Every test writes rows for user ids of its own, so counts do not depend on test order.

const MAX_LINE_BYTES = 1024;
const BATCH_MAX_ROWS = 500;
const DEVICE = DEMO_DEVICE_IDS[0] as string;
const OTHER_DEVICE = DEMO_DEVICE_IDS[1] as string;
/** Two-, three- and four-byte UTF-8 characters, for bodies split inside a character. */
const MULTIBYTE_DEVICE = 'gerät-中文-😀';
const UNKNOWN_USER = 999_999;
const LARGE_UPLOAD_USERS = [2001, 2002, 2003, 2004, 2005, 2006, 2007, 2008, 2009, 2010];

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let bulkUrl: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await seedDemoData(db.pool);
  await db.pool.query(`INSERT INTO users (id, name) SELECT g, 'bulk user ' || g FROM generate_series(1001, 1100) AS g`);
  await db.pool.query(`INSERT INTO users (id, name) SELECT unnest($1::int[]), 'large upload user'`, [
    LARGE_UPLOAD_USERS,
  ]);
  await db.pool.query(`INSERT INTO devices (id, type, name) VALUES ($1, 'Android 14', 'Pixel 8')`, [MULTIBYTE_DEVICE]);
  gateway = await startTestGateway(db, {
    BATCH_MAX_ROWS: String(BATCH_MAX_ROWS),
    BULK_MAX_LINE_BYTES: String(MAX_LINE_BYTES),
  });
  bulkUrl = `${gateway.url}/v1/metrics/bulk`;
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

function metric(userId: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    user_id: userId,
    device_id: DEVICE,
    talked_time: 12.5,
    microphone_used: true,
    speaker_used: false,
    voice_sentiment: 0.25,
    time_recorded: '2024-05-01T10:00:00Z',
    ...overrides,
  };
}

const json = (value: unknown): string => JSON.stringify(value);

interface StoredRow {
  device_id: string | null;
  talked_time: number;
  microphone_used: boolean;
  speaker_used: boolean;
  voice_sentiment: number | null;
  time_utc: string;
  event_id: string | null;
}

/** A user's rows, ordered by talked_time (each test gives its lines distinct talked_time values). */
async function rowsOf(userId: number): Promise<StoredRow[]> {
  const { rows } = await db.pool.query<StoredRow>(
    `SELECT device_id, talked_time, microphone_used, speaker_used, voice_sentiment,
            to_char(time_recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS time_utc, event_id
       FROM user_metrics WHERE user_id = $1 ORDER BY talked_time, id`,
    [userId],
  );
  return rows;
}

async function countWhere(where: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM user_metrics WHERE ${where}`, params);
  return Number(rows[0]?.n);
}

const countOf = (userId: number): Promise<number> => countWhere('user_id = $1', [userId]);

async function talkedTimesOf(userId: number): Promise<number[]> {
  return (await rowsOf(userId)).map((row) => row.talked_time);
}

interface LineErrorBody {
  line: number;
  error: string;
  details: { path: string; message: string }[];
}

interface BulkBody {
  accepted: number;
  rejected: number;
  errors: LineErrorBody[];
}

const byLine = (errors: readonly LineErrorBody[]): LineErrorBody[] => [...errors].sort((a, b) => a.line - b.line);

/** POSTs `chunks` one by one with a pause between them, so the server reads them as separate chunks. */
function postInChunks(
  url: string,
  chunks: readonly Buffer[],
  pauseMs: number,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: BulkBody }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...headers } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (part: Buffer) => parts.push(part));
        res.on('error', reject);
        res.on('end', () => {
          try {
            resolve({
              status: res.statusCode ?? 0,
              body: JSON.parse(Buffer.concat(parts).toString('utf8')) as BulkBody,
            });
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    req.on('error', reject);
    req.flushHeaders();
    void (async () => {
      for (const chunk of chunks) {
        req.write(chunk);
        await sleep(pauseMs);
      }
      req.end();
    })();
  });
}

/** `bytes` cut at the given offsets (sorted, deduplicated, each strictly inside the buffer). */
function splitAt(bytes: Buffer, offsets: readonly number[]): Buffer[] {
  const cuts = [...new Set(offsets)].filter((o) => o > 0 && o < bytes.length).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const cut of cuts) {
    chunks.push(bytes.subarray(start, cut));
    start = cut;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

/**
 * A body with one of each kind of bad line between valid ones, for `userId`: the response it must get
 * (errors in line order) and the talked_time of the lines that must be stored.
 */
function mixedBody(userId: number): { text: string; stored: number[]; rejected: number; errors: unknown[] } {
  const { talked_time: _dropped, ...withoutTalkedTime } = metric(userId, {});
  const { microphone_used: _mic, ...withoutMicrophone } = metric(userId, {});
  const lines = [
    /* 1 */ json(metric(userId, { talked_time: 1 })),
    /* 2 */ '',
    /* 3 */ `{"user_id": ${userId}, "talked_time": 3,`,
    /* 4 */ json({ ...withoutTalkedTime, talk_time: 4 }),
    /* 5 */ '   \t ',
    /* 6 */ json(metric(userId, { talked_time: -6 })),
    /* 7 */ json(withoutMicrophone),
    /* 8 */ json(metric(UNKNOWN_USER, { talked_time: 8 })),
    /* 9 */ json(metric(userId, { talked_time: 9, device_id: 'no-such-device' })),
    /* 10 */ json(metric(userId, { talked_time: 10, device_id: null, voice_sentiment: null })),
    /* 11 */ '[1, 2]',
    /* 12 */ json(metric(userId, { talked_time: 12, user_id: String(userId) })),
    /* 13 */ json(metric(UNKNOWN_USER, { talked_time: 13, device_id: 'no-such-device' })),
    /* 14 */ json(metric(userId, { talked_time: 14, time_recorded: '2023-02-29T10:00:00Z' })),
    /* 15 */ json(metric(userId, { talked_time: 15 })), // the last line, without a newline
  ];
  const errors = [
    { line: 3, error: 'invalid_json', details: [{ path: '', message: expect.any(String) }] },
    {
      line: 4,
      error: 'validation_failed',
      details: expect.arrayContaining([
        { path: '/talk_time', message: expect.any(String) },
        { path: '/talked_time', message: expect.any(String) },
      ]),
    },
    { line: 6, error: 'validation_failed', details: [{ path: '/talked_time', message: expect.any(String) }] },
    { line: 7, error: 'validation_failed', details: [{ path: '/microphone_used', message: expect.any(String) }] },
    { line: 8, error: 'unknown_reference', details: [{ path: '/user_id', message: expect.any(String) }] },
    { line: 9, error: 'unknown_reference', details: [{ path: '/device_id', message: expect.any(String) }] },
    { line: 11, error: 'validation_failed', details: [{ path: '', message: expect.any(String) }] },
    { line: 12, error: 'validation_failed', details: [{ path: '/user_id', message: expect.any(String) }] },
    {
      line: 13,
      error: 'unknown_reference',
      details: expect.arrayContaining([
        { path: '/user_id', message: expect.any(String) },
        { path: '/device_id', message: expect.any(String) },
      ]),
    },
    { line: 14, error: 'validation_failed', details: [{ path: '/time_recorded', message: expect.any(String) }] },
  ];
  return { text: lines.join('\n'), stored: [1, 10, 15], rejected: errors.length, errors };
}

describe('POST /v1/metrics/bulk: the happy path', () => {
  it('stores every line of an all-valid body and answers 200 {accepted: N, rejected: 0, errors: []}', async () => {
    const user = 1001;
    const lines = [
      metric(user, { talked_time: 1 }),
      metric(user, {
        talked_time: 2,
        device_id: null,
        voice_sentiment: null,
        microphone_used: false,
        speaker_used: true,
      }),
      { user_id: user, talked_time: 3, microphone_used: true, speaker_used: true, time_recorded: 1714557600000 },
      metric(user, { talked_time: 4, device_id: OTHER_DEVICE, time_recorded: '2024-05-01T15:30:00.123456+05:30' }),
      metric(user, { talked_time: 5, voice_sentiment: -0.75, time_recorded: '2024-05-01t02:00:00-08:00' }),
    ];
    const response = await postNdjson<BulkBody>(bulkUrl, `${lines.map(json).join('\n')}\n`);

    expect(response.status).toBe(200);
    expect(response.body).toEqual({ accepted: 5, rejected: 0, errors: [] });
    const base = { microphone_used: true, speaker_used: false, voice_sentiment: 0.25, event_id: null };
    expect(await rowsOf(user)).toEqual([
      { ...base, device_id: DEVICE, talked_time: 1, time_utc: '2024-05-01T10:00:00.000000Z' },
      {
        ...base,
        device_id: null,
        talked_time: 2,
        microphone_used: false,
        speaker_used: true,
        voice_sentiment: null,
        time_utc: '2024-05-01T10:00:00.000000Z',
      },
      {
        ...base,
        device_id: null,
        talked_time: 3,
        speaker_used: true,
        voice_sentiment: null,
        time_utc: '2024-05-01T10:00:00.000000Z',
      },
      { ...base, device_id: OTHER_DEVICE, talked_time: 4, time_utc: '2024-05-01T10:00:00.123456Z' },
      { ...base, device_id: DEVICE, talked_time: 5, voice_sentiment: -0.75, time_utc: '2024-05-01T10:00:00.000000Z' },
    ]);
  });

  it('accepts Content-Type application/x-ndjson with charset=utf-8', async () => {
    const user = 1002;
    const response = await postNdjson<BulkBody>(bulkUrl, `${json(metric(user))}\n`, {
      'content-type': 'application/x-ndjson; charset=utf-8',
    });
    expect(response).toMatchObject({ status: 200, body: { accepted: 1, rejected: 0, errors: [] } });
    expect(await countOf(user)).toBe(1);
  });
});

describe('POST /v1/metrics/bulk: partial success', () => {
  it('stores the valid lines and reports each bad one with its exact line number, blank lines counted', async () => {
    const user = 1003;
    const body = mixedBody(user);
    const response = await postNdjson<BulkBody>(bulkUrl, body.text);

    expect(response.status).toBe(200);
    expect(response.body.accepted).toBe(body.stored.length);
    expect(response.body.rejected).toBe(body.rejected);
    expect(byLine(response.body.errors)).toEqual(body.errors);
    expect(await talkedTimesOf(user)).toEqual(body.stored);
  });

  it('lists errors in line order, however they were found', async () => {
    // Line 1's unknown user is found when the chunk's references are checked, after line 2's bad JSON.
    const user = 1004;
    const text = [json(metric(UNKNOWN_USER)), '{not json', json(metric(user, { talked_time: 3 }))].join('\n');
    const response = await postNdjson<BulkBody>(bulkUrl, text);

    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ accepted: 1, rejected: 2 });
    expect(response.body.errors.map((e) => [e.line, e.error])).toEqual([
      [1, 'unknown_reference'],
      [2, 'invalid_json'],
    ]);
  });

  it('handles CRLF line ends, a UTF-8 BOM, blank CRLF lines and a last line without a newline', async () => {
    const user = 1005;
    const text =
      '\uFEFF' +
      `${json(metric(user, { talked_time: 1 }))}\r\n` +
      '\r\n' +
      '{"broken": \r\n' +
      `${json(metric(user, { talked_time: 4, device_id: MULTIBYTE_DEVICE }))}\r\n` +
      `${json(metric(user, { talked_time: -5 }))}\r\n` +
      `${json(metric(user, { talked_time: 6 }))}`;
    const response = await postNdjson<BulkBody>(bulkUrl, text);

    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      accepted: 3,
      rejected: 2,
      errors: [
        { line: 3, error: 'invalid_json', details: [{ path: '', message: expect.any(String) }] },
        { line: 5, error: 'validation_failed', details: [{ path: '/talked_time', message: expect.any(String) }] },
      ],
    });
    const rows = await rowsOf(user);
    expect(rows.map((row) => [row.talked_time, row.device_id])).toEqual([
      [1, DEVICE],
      [4, MULTIBYTE_DEVICE],
      [6, DEVICE],
    ]);
  });

  it('points at an unknown field whose name holds "/" and "~" with an escaped JSON pointer', async () => {
    const response = await postNdjson<BulkBody>(bulkUrl, json(metric(1006, { 'a/b~c': 1 })));
    expect(response.status).toBe(200);
    expect(response.body.errors).toEqual([
      { line: 1, error: 'validation_failed', details: [{ path: '/a~1b~0c', message: expect.any(String) }] },
    ]);
    expect(await countOf(1006)).toBe(0);
  });
});

describe('POST /v1/metrics/bulk: line limits and bytes', () => {
  it(`refuses a line over BULK_MAX_LINE_BYTES (${MAX_LINE_BYTES}) as payload_too_large and stores the others`, async () => {
    const user = 1010;
    const padded = (talked: number, bytes: number): string => {
      const text = json(metric(user, { talked_time: talked }));
      return text + ' '.repeat(bytes - Buffer.byteLength(text));
    };
    const lines = [
      /* 1 */ json(metric(user, { talked_time: 1 })),
      /* 2 */ padded(2, MAX_LINE_BYTES), // exactly at the limit: taken
      /* 3 */ padded(3, MAX_LINE_BYTES + 1),
      /* 4 */ json(metric(user, { talked_time: 4 })),
      /* 5 */ `{"junk": "${'x'.repeat(5000)}"}`,
      /* 6 */ json(metric(user, { talked_time: 6 })),
      /* 7 */ padded(7, 2000), // the last line, too long and without a newline
    ];
    const response = await postNdjson<BulkBody>(bulkUrl, lines.join('\n'));

    expect(response.status).toBe(200);
    const tooLarge = (line: number) => ({
      line,
      error: 'payload_too_large',
      details: [{ path: '', message: expect.any(String) }],
    });
    expect(response.body).toEqual({ accepted: 4, rejected: 3, errors: [tooLarge(3), tooLarge(5), tooLarge(7)] });
    expect(await talkedTimesOf(user)).toEqual([1, 2, 4, 6]);
  });

  it('measures the line limit without its CRLF terminator, as it does without its LF', async () => {
    const user = 1011;
    const text = json(metric(user, { talked_time: 1 }));
    const atLimit = text + ' '.repeat(MAX_LINE_BYTES - Buffer.byteLength(text));
    const response = await postNdjson<BulkBody>(bulkUrl, `${atLimit}\r\n`);
    expect(response.body).toEqual({ accepted: 1, rejected: 0, errors: [] });
  });

  it('refuses a line that is not valid UTF-8 as invalid_json and stores the others', async () => {
    const user = 1012;
    const good = (talked: number) => Buffer.from(json(metric(user, { talked_time: talked })));
    const withBytes = (bytes: number[]) =>
      Buffer.concat([Buffer.from(`{"user_id": ${user}, "device_id": "`), Buffer.from(bytes), Buffer.from('"}')]);
    const lines = [
      /* 1 */ good(1),
      /* 2 */ withBytes([0xff, 0xfe]), // bytes that never occur in UTF-8
      /* 3 */ good(3),
      /* 4 */ withBytes([0xc0, 0xaf]), // an overlong encoding of "/"
      /* 5 */ withBytes([0xed, 0xa0, 0x80]), // an encoded UTF-16 surrogate
      /* 6 */ withBytes([0xe2, 0x82]), // a truncated three-byte sequence
      /* 7 */ good(7), // the last line, without a newline
    ];
    const body = Buffer.concat(lines.flatMap((line, i) => (i === 0 ? [line] : [Buffer.from('\n'), line])));
    const response = await postNdjson<BulkBody>(bulkUrl, body);

    expect(response.status).toBe(200);
    const notUtf8 = (line: number) => ({
      line,
      error: 'invalid_json',
      details: [{ path: '', message: expect.any(String) }],
    });
    expect(response.body).toEqual({
      accepted: 3,
      rejected: 4,
      errors: [notUtf8(2), notUtf8(4), notUtf8(5), notUtf8(6)],
    });
    expect(await talkedTimesOf(user)).toEqual([1, 3, 7]);
  });

  it('lists at most 1000 errors while `rejected` counts every bad line', async () => {
    const user = 1013;
    const bad = Array.from({ length: 1500 }, (_, i) => `not json ${i + 1}`);
    const good = Array.from({ length: 10 }, (_, i) => json(metric(user, { talked_time: i + 1 })));
    const response = await postNdjson<BulkBody>(bulkUrl, `${[...bad, ...good].join('\n')}\n`);

    expect(response.status).toBe(200);
    expect(response.body.accepted).toBe(10);
    expect(response.body.rejected).toBe(1500);
    expect(response.body.errors).toHaveLength(1000);
    expect(response.body.errors.map((e) => e.line)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(response.body.errors.every((e) => e.error === 'invalid_json')).toBe(true);
    expect(await countOf(user)).toBe(10);
  });

  it('lists the first 1000 errors by line even when an unknown reference comes first', async () => {
    const user = 1014;
    const lines = [
      /* 1 */ json(metric(UNKNOWN_USER)),
      /* 2 */ json(metric(user, { talked_time: 2 })),
      ...Array.from({ length: 1500 }, () => 'x'), // lines 3..1502
    ];
    const response = await postNdjson<BulkBody>(bulkUrl, lines.join('\n'));

    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ accepted: 1, rejected: 1501 });
    expect(response.body.errors).toHaveLength(1000);
    expect(response.body.errors[0]).toMatchObject({ line: 1, error: 'unknown_reference' });
    expect(response.body.errors.map((e) => e.line)).toEqual([1, ...Array.from({ length: 999 }, (_, i) => i + 3)]);
  });
});

describe('POST /v1/metrics/bulk: Content-Encoding and Content-Type', () => {
  it('gives a gzip body (Content-Encoding: gzip) the same result as the plain one', async () => {
    const [plainUser, gzipUser] = [1020, 1021];
    const plain = await postNdjson<BulkBody>(bulkUrl, mixedBody(plainUser).text);
    const gzipped = await postNdjson<BulkBody>(bulkUrl, gzipSync(Buffer.from(mixedBody(gzipUser).text)), {
      'content-encoding': 'gzip',
    });

    expect(gzipped.status).toBe(200);
    expect(gzipped.body.accepted).toBe(plain.body.accepted);
    expect(gzipped.body.rejected).toBe(plain.body.rejected);
    expect(byLine(gzipped.body.errors)).toEqual(byLine(plain.body.errors));
    expect(await talkedTimesOf(gzipUser)).toEqual(mixedBody(gzipUser).stored);
    expect(await rowsOf(gzipUser)).toEqual(await rowsOf(plainUser));
  });

  const validGzip = gzipSync(
    Buffer.from(Array.from({ length: 50 }, (_, i) => json(metric(1022, { talked_time: i }))).join('\n')),
  );
  const flipped = Buffer.from(validGzip);
  const middle = Math.floor(flipped.length / 2);
  flipped.writeUInt8(flipped.readUInt8(middle) ^ 0xff, middle);

  it.each([
    ['bytes that are not gzip at all', Buffer.from('{"user_id": 1}\n')],
    ['a gzip stream with a damaged byte', flipped],
    ['a truncated gzip stream', validGzip.subarray(0, validGzip.length - 12)],
  ])('answers 400, never 500, for %s', async (_name, body) => {
    const response = await postNdjson(bulkUrl, body, { 'content-encoding': 'gzip' });
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({
      error: expect.any(String),
      message: expect.any(String),
      details: expect.any(Array),
    });
  });

  it('still takes uploads after corrupt gzip bodies', async () => {
    const response = await postNdjson<BulkBody>(bulkUrl, gzipSync(json(metric(1023))), { 'content-encoding': 'gzip' });
    expect(response).toMatchObject({ status: 200, body: { accepted: 1, rejected: 0, errors: [] } });
    expect(await countOf(1023)).toBe(1);
  });

  it.each([
    ['br', brotliCompressSync(Buffer.from(json(metric(1024))))],
    ['deflate', deflateSync(Buffer.from(json(metric(1024))))],
  ])('answers 415 for Content-Encoding %s', async (encoding, body) => {
    const response = await postNdjson(bulkUrl, body, { 'content-encoding': encoding });
    expect(response).toMatchObject({ status: 415, body: { error: 'unsupported_media_type' } });
    expect(await countOf(1024)).toBe(0);
  });

  it.each([['application/json'], ['text/plain'], ['application/x-ndjson; charset=iso-8859-1']])(
    'answers 415 for Content-Type %s',
    async (contentType) => {
      const response = await postNdjson(bulkUrl, `${json(metric(1025))}\n`, { 'content-type': contentType });
      expect(response).toMatchObject({ status: 415, body: { error: 'unsupported_media_type' } });
      expect(await countOf(1025)).toBe(0);
    },
  );

  it('answers 415 when Content-Type is missing', async () => {
    const response = await request(bulkUrl, { method: 'POST', body: Buffer.from(`${json(metric(1025))}\n`) });
    expect(response).toMatchObject({ status: 415, body: { error: 'unsupported_media_type' } });
    expect(await countOf(1025)).toBe(0);
  });
});

describe('POST /v1/metrics/bulk: ?wait', () => {
  it('answers 202 with the same body shape for ?wait=false, and the rows land shortly after', async () => {
    const user = 1030;
    const text = [json(metric(user, { talked_time: 1 })), 'oops', json(metric(user, { talked_time: 3 }))].join('\n');
    const response = await postNdjson<BulkBody>(`${bulkUrl}?wait=false`, text);

    expect(response.status).toBe(202);
    expect(response.body).toEqual({
      accepted: 2,
      rejected: 1,
      errors: [{ line: 2, error: 'invalid_json', details: [{ path: '', message: expect.any(String) }] }],
    });
    await until(async () => (await countOf(user)) === 2, 'both good rows stored', 5000);
    expect(await talkedTimesOf(user)).toEqual([1, 3]);
  });

  it('answers 400 validation_failed for ?wait=maybe and stores nothing', async () => {
    const user = 1031;
    const response = await postNdjson(`${bulkUrl}?wait=maybe`, `${json(metric(user))}\n`);
    expect(response).toMatchObject({
      status: 400,
      body: { error: 'validation_failed', details: [{ path: '/query/wait' }] },
    });
    await sleep(50);
    expect(await countOf(user)).toBe(0);
  });
});

describe('POST /v1/metrics/bulk: streaming', () => {
  /** A body whose chunk boundaries fall inside a BOM, characters, a CRLF, tokens and an over-long line. */
  function streamedBody(user: number): { bytes: Buffer; cuts: number[] } {
    const text =
      '\uFEFF' +
      `${json(metric(user, { talked_time: 1, device_id: MULTIBYTE_DEVICE }))}\r\n` +
      '\r\n' +
      `{"user_id": ${user}, "talked_time": 3, oops}\r\n` +
      `{"user_id": ${user}, "device_id": "${'ü'.repeat(1500)}"}\n` +
      `${json(metric(user, { talked_time: 5, device_id: MULTIBYTE_DEVICE, voice_sentiment: -0.5 }))}\n` +
      json(metric(user, { talked_time: 6, device_id: MULTIBYTE_DEVICE }));
    const bytes = Buffer.from(text);
    const cuts: number[] = [1, 2]; // inside the BOM
    const emoji = Buffer.from('😀');
    for (let at = bytes.indexOf(emoji); at !== -1; at = bytes.indexOf(emoji, at + 1)) cuts.push(at + 1, at + 2, at + 3);
    const umlaut = bytes.indexOf(Buffer.from('ä'));
    cuts.push(umlaut + 1);
    const crlf = bytes.indexOf(Buffer.from('\r\n'));
    cuts.push(crlf + 1); // between CR and LF
    const oops = bytes.indexOf(Buffer.from('oops'));
    cuts.push(oops + 2);
    const longLine = bytes.indexOf(Buffer.from('ü'.repeat(10)));
    cuts.push(longLine + 501, longLine + 1500, longLine + 2501); // 501 and 2501 split a ü
    cuts.push(bytes.length - 7); // inside the last line
    return { bytes, cuts };
  }

  const expectedBody = {
    accepted: 3,
    rejected: 2,
    errors: [
      { line: 3, error: 'invalid_json', details: [{ path: '', message: expect.any(String) }] },
      { line: 4, error: 'payload_too_large', details: [{ path: '', message: expect.any(String) }] },
    ],
  };

  it('parses a body sent slowly in many chunks, split inside multi-byte characters, CRLF and tokens', async () => {
    const user = 1040;
    const { bytes, cuts } = streamedBody(user);
    const chunks = splitAt(bytes, cuts);
    expect(chunks.length).toBeGreaterThan(10);
    const response = await postInChunks(bulkUrl, chunks, 15);

    expect(response.status).toBe(200);
    expect(response.body).toEqual(expectedBody);
    const rows = await rowsOf(user);
    expect(rows.map((row) => [row.talked_time, row.device_id, row.voice_sentiment])).toEqual([
      [1, MULTIBYTE_DEVICE, 0.25],
      [5, MULTIBYTE_DEVICE, -0.5],
      [6, MULTIBYTE_DEVICE, 0.25],
    ]);
  });

  it('parses a gzip body sent slowly in many chunks', async () => {
    const user = 1041;
    const gzipped = gzipSync(streamedBody(user).bytes);
    const step = Math.ceil(gzipped.length / 12);
    const cuts = Array.from({ length: 11 }, (_, i) => (i + 1) * step);
    const response = await postInChunks(bulkUrl, splitAt(gzipped, cuts), 15, { 'content-encoding': 'gzip' });

    expect(response.status).toBe(200);
    expect(response.body).toEqual(expectedBody);
    expect(await talkedTimesOf(user)).toEqual([1, 5, 6]);
  });
});

describe('POST /v1/metrics/bulk: volume', () => {
  it(`stores a 20000-line upload completely, in batches of at most ${BATCH_MAX_ROWS} rows`, async () => {
    const count = 20_000;
    const generated: GeneratedMetric[] = [
      ...generateMetrics({ count, seed: 42, users: LARGE_UPLOAD_USERS, devices: DEMO_DEVICE_IDS }),
    ];
    const text = `${generated.map(json).join('\n')}\n`;
    const response = await postNdjson<BulkBody>(bulkUrl, text);

    expect(response.status).toBe(200);
    expect(response.body).toEqual({ accepted: count, rejected: 0, errors: [] });

    const key = (m: {
      user_id: number;
      device_id: string | null;
      talked_time: number;
      microphone_used: boolean;
      speaker_used: boolean;
      voice_sentiment: number | null;
      ms: string;
    }) =>
      [
        m.user_id,
        m.device_id ?? '∅',
        m.talked_time,
        m.microphone_used,
        m.speaker_used,
        m.voice_sentiment ?? '∅',
        m.ms,
      ].join('|');
    const expected = generated
      .map((m) =>
        key({
          user_id: m.user_id,
          device_id: m.device_id ?? null,
          talked_time: m.talked_time,
          microphone_used: m.microphone_used,
          speaker_used: m.speaker_used,
          voice_sentiment: m.voice_sentiment ?? null,
          ms: String(typeof m.time_recorded === 'number' ? m.time_recorded : Date.parse(m.time_recorded)),
        }),
      )
      .sort();
    const { rows } = await db.pool.query(
      `SELECT user_id, device_id, talked_time, microphone_used, speaker_used, voice_sentiment,
                ((extract(epoch FROM time_recorded) * 1000)::bigint)::text AS ms
           FROM user_metrics WHERE user_id = ANY($1::int[])`,
      [LARGE_UPLOAD_USERS],
    );
    expect(rows).toHaveLength(count);
    expect(rows.map(key).sort()).toEqual(expected);
  }, 90_000);
});

describe('POST /v1/metrics/bulk: event_id idempotency', () => {
  it('stores a repeated event_id once, within one upload and across uploads, and counts every line accepted', async () => {
    const [user, otherUser] = [1050, 1051];
    const [eventA, eventB] = [randomUUID(), randomUUID()];
    const first = await postNdjson<BulkBody>(
      bulkUrl,
      [
        json(metric(user, { talked_time: 1, event_id: eventA })),
        json(metric(user, { talked_time: 2, event_id: eventA })),
        json(metric(user, { talked_time: 3, event_id: eventB })),
        json(metric(otherUser, { talked_time: 4, event_id: eventA })), // the same key for another user: another event
      ].join('\n'),
    );
    expect(first).toMatchObject({ status: 200, body: { accepted: 4, rejected: 0, errors: [] } });
    expect(await countWhere('user_id = $1 AND event_id = $2', [user, eventA])).toBe(1);
    expect(await countWhere('user_id = $1 AND event_id = $2', [user, eventB])).toBe(1);
    expect(await countWhere('user_id = $1 AND event_id = $2', [otherUser, eventA])).toBe(1);
    const afterFirst = await rowsOf(user);
    expect(afterFirst).toHaveLength(2);

    const second = await postNdjson<BulkBody>(
      bulkUrl,
      [
        json(metric(user, { talked_time: 5, event_id: eventA.toUpperCase() })),
        json(metric(user, { talked_time: 6, event_id: eventB })),
      ].join('\n'),
    );
    expect(second).toMatchObject({ status: 200, body: { accepted: 2, rejected: 0, errors: [] } });
    expect(await rowsOf(user)).toEqual(afterFirst);
  });

  it('stores a repeated event_id once when the repeats fall into different batches', async () => {
    const user = 1052;
    const ids = Array.from({ length: 600 }, () => randomUUID());
    const lines = Array.from({ length: 1200 }, (_, i) =>
      json(metric(user, { talked_time: i, event_id: ids[i % 600] })),
    );
    const response = await postNdjson<BulkBody>(bulkUrl, lines.join('\n'));

    expect(response).toMatchObject({ status: 200, body: { accepted: 1200, rejected: 0, errors: [] } });
    const { rows } = await db.pool.query<{ n: string; distinct_ids: string }>(
      'SELECT count(*) AS n, count(DISTINCT event_id) AS distinct_ids FROM user_metrics WHERE user_id = $1',
      [user],
    );
    expect(rows[0]).toEqual({ n: '600', distinct_ids: '600' });
  });
});
