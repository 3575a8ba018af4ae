import { randomUUID } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, request, startTestGateway } from '../helpers/gateway';

// Values of every odd kind go in through POST /v1/metrics and through POST /v1/metrics/bulk and must
// come out of PostgreSQL exactly as sent; values PostgreSQL would refuse must be refused at the door
// (400 validation_failed with a JSON pointer), never reach user_metrics or rejected_metrics, and never
// cost a good row of the same batch its place.
//
// Metrics are written as raw JSON text, not JSON.stringify'd objects: JSON.stringify would turn -0
// into 0, Infinity into null, and would never write a lone surrogate as "\ud800".

const HOUR_MS = 60 * 60 * 1000;
const PLAIN_DEVICE = 'id847-gj-335-Vow6DhCP6';

/** [description, device id]: each must be stored and read back byte for byte. */
const ODD_DEVICE_IDS: readonly (readonly [string, string])[] = [
  ['a tab', 'tab\there'],
  ['a newline', 'new\nline'],
  ['a carriage return', 'cr\rhere'],
  ['CR LF', 'crlf\r\nhere'],
  ['a backslash', 'back\\slash'],
  ['a trailing backslash', 'trailing\\'],
  ['\\N exactly (COPY NULL)', '\\N'],
  ['\\N inside', 'pre\\Npost'],
  ['\\. exactly (COPY end of data)', '\\.'],
  ['escape sequences spelled out', '\\t\\n\\r\\\\x41'],
  ['double quotes', 'dq"quo"te'],
  ['single quotes', "sq'quo'te"],
  ['ü', 'gerät-müller'],
  ['中文', '设备-中文'],
  ['emoji', 'phone-📱-😀-👩‍👩‍👧'],
  ['control characters', 'ctl\u0001\u0008\u000b\u000c\u001b\u007f'],
  ['U+2028 and U+2029', 'ls\u2028ps\u2029'],
  ['leading and trailing spaces', '  padded  '],
  ['a BOM', '\uFEFFbom'],
  ['NULL spelled out', 'NULL'],
  ['255 ASCII characters', 'x'.repeat(255)],
  ['255 emoji (1020 bytes)', '😀'.repeat(255)],
  ['255 characters of mixed widths', 'ü中😀'.repeat(85)],
];

/** [description, talked_time as JSON text, voice_sentiment as JSON text]. */
const NUMBER_CASES: readonly (readonly [string, string, string])[] = [
  ['zero', '0', '0'],
  ['the smallest subnormal', '5e-324', '-5e-324'],
  ['the ends of the ranges', '86400', '-1'],
  ['0.1 + 0.2', '0.30000000000000004', '-0.30000000000000004'],
  ['minus zero', '-0', '-0'],
  ['negative sentiment', '1', '-0.75'],
  ['exponent forms', '1E2', '-1e-7'],
  ['more digits than a double holds', '12345.678901234567890123', '-0.12345678901234567890123'],
  ['null sentiment', '42.125', 'null'],
];

/** [description, time_recorded as JSON text, the instant at UTC as PostgreSQL's to_char prints it]. */
const TIME_CASES: readonly (readonly [string, string, string])[] = [
  ['an offset of +05:30', '"2024-03-10T12:34:56+05:30"', '2024-03-10T07:04:56.000000Z'],
  ['an offset of -08:00', '"2024-03-10T12:34:56-08:00"', '2024-03-10T20:34:56.000000Z'],
  ['an offset of +14:00', '"2024-03-10T12:34:56.000001+14:00"', '2024-03-09T22:34:56.000001Z'],
  ['an offset of -00:00', '"2024-03-10T12:34:56.75-00:00"', '2024-03-10T12:34:56.750000Z'],
  ['microseconds', '"2024-03-10T12:34:56.123456Z"', '2024-03-10T12:34:56.123456Z'],
  ["lower-case 't' and 'z'", '"2024-03-10t12:34:56.5z"', '2024-03-10T12:34:56.500000Z'],
  ['a leap day crossing into March', '"2024-02-29T23:59:59.999999-12:00"', '2024-03-01T11:59:59.999999Z'],
  ['epoch milliseconds', '1710074096789', '2024-03-10T12:34:56.789000Z'],
  ['epoch milliseconds 0', '0', '1970-01-01T00:00:00.000000Z'],
  ['negative epoch milliseconds', '-1', '1969-12-31T23:59:59.999000Z'],
  ['the first instant of year 1', '"0001-01-01T00:00:00Z"', '0001-01-01T00:00:00.000000Z'],
  ['1969', '"1969-07-20T20:17:40+00:00"', '1969-07-20T20:17:40.000000Z'],
];

/** now + 23 h: inside the 24 h of allowed future. */
function nearFuture(): { json: string; utc: string } {
  const ms = Math.floor((Date.now() + 23 * HOUR_MS) / 1000) * 1000;
  return {
    json: JSON.stringify(new Date(ms).toISOString()),
    utc: new Date(ms).toISOString().replace('.000Z', '.000000Z'),
  };
}

/**
 * Values PostgreSQL would refuse, or that the contract refuses: [description, fields as JSON text
 * (replacing the base metric's), the JSON pointer of the error]. A function, so "now" is fresh.
 */
function refusedCases(): (readonly [string, Record<string, string>, string])[] {
  const future = Date.now() + 25 * HOUR_MS;
  return [
    ['NUL in device_id', { device_id: '"nul\\u0000inside"' }, '/device_id'],
    ['a lone high surrogate in device_id', { device_id: '"lone\\ud800"' }, '/device_id'],
    ['a lone low surrogate in device_id', { device_id: '"\\udc00lone"' }, '/device_id'],
    ['surrogates in the wrong order in device_id', { device_id: '"\\udc00\\ud800"' }, '/device_id'],
    ['a device_id of 256 characters', { device_id: JSON.stringify('😀'.repeat(256)) }, '/device_id'],
    ['an empty device_id', { device_id: '""' }, '/device_id'],
    ['user_id 2147483648', { user_id: '2147483648' }, '/user_id'],
    ['user_id 0', { user_id: '0' }, '/user_id'],
    ['user_id 1.5', { user_id: '1.5' }, '/user_id'],
    ['talked_time 1e400 (Infinity)', { talked_time: '1e400' }, '/talked_time'],
    ['talked_time -1e400 (-Infinity)', { talked_time: '-1e400' }, '/talked_time'],
    ['voice_sentiment 1e400 (Infinity)', { voice_sentiment: '1e400' }, '/voice_sentiment'],
    ['voice_sentiment -1e400 (-Infinity)', { voice_sentiment: '-1e400' }, '/voice_sentiment'],
    ['the impossible date 2023-02-29', { time_recorded: '"2023-02-29T10:00:00Z"' }, '/time_recorded'],
    ['the impossible date 2024-04-31', { time_recorded: '"2024-04-31T10:00:00+02:00"' }, '/time_recorded'],
    ['year 0000', { time_recorded: '"0000-06-01T00:00:00Z"' }, '/time_recorded'],
    ['minute 60', { time_recorded: '"2024-01-01T10:60:00Z"' }, '/time_recorded'],
    ['a time without an offset', { time_recorded: '"2024-01-01T10:00:00"' }, '/time_recorded'],
    [
      'more than 24 h in the future',
      { time_recorded: JSON.stringify(new Date(future).toISOString()) },
      '/time_recorded',
    ],
    ['epoch ms more than 24 h in the future', { time_recorded: String(future) }, '/time_recorded'],
    ['epoch ms beyond what a Date holds', { time_recorded: '8640000000000001' }, '/time_recorded'],
    ['epoch ms before year 1', { time_recorded: '-62135596800001' }, '/time_recorded'],
    ['event_id that is not a UUID', { event_id: '"not-a-uuid"' }, '/event_id'],
  ];
}

/**
 * Values that pass the schema today but that PostgreSQL refuses at COPY time: the contract wants them
 * refused at the door too. [description, fields as JSON text, JSON pointer].
 */
const REFUSED_ONLY_BY_POSTGRES: readonly (readonly [string, Record<string, string>, string])[] = [
  ['event_id in urn:uuid: form', { event_id: '"urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"' }, '/event_id'],
];

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) SELECT g, 'user ' || g FROM generate_series(1, 1000) AS g`);
  for (const id of [PLAIN_DEVICE, ...ODD_DEVICE_IDS.map(([, deviceId]) => deviceId)]) {
    await db.pool.query('INSERT INTO devices (id, type, name) VALUES ($1, $2, $3)', [id, 'Android 14', 'Pixel 8']);
  }
  gateway = await startTestGateway(db);
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

/** One metric as JSON text; `fields` are JSON texts that replace (or add to) the base metric's. */
function metricJson(userId: number, fields: Record<string, string> = {}): string {
  const all: Record<string, string> = {
    user_id: String(userId),
    device_id: JSON.stringify(PLAIN_DEVICE),
    talked_time: '12.5',
    microphone_used: 'true',
    speaker_used: 'false',
    voice_sentiment: '0.25',
    time_recorded: '"2024-03-10T12:00:00Z"',
    ...fields,
  };
  return `{${Object.entries(all)
    .map(([key, value]) => `${JSON.stringify(key)}:${value}`)
    .join(',')}}`;
}

interface StoredRow {
  device_id: string | null;
  talked_time: number;
  voice_sentiment: number | null;
  time_utc: string;
  epoch: string;
  event_id: string | null;
}

async function rowsOf(userId: number): Promise<StoredRow[]> {
  const { rows } = await db.pool.query<StoredRow>(
    `SELECT device_id, talked_time, voice_sentiment,
            to_char(time_recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS time_utc,
            extract(epoch FROM time_recorded)::text AS epoch, event_id::text AS event_id
       FROM user_metrics WHERE user_id = $1 ORDER BY id`,
    [userId],
  );
  return rows;
}

async function onlyRowOf(userId: number): Promise<StoredRow> {
  const rows = await rowsOf(userId);
  expect(rows).toHaveLength(1);
  return rows[0] as StoredRow;
}

async function tableCounts(): Promise<{ metrics: number; rejected: number }> {
  const { rows } = await db.pool.query<{ metrics: string; rejected: string }>(
    'SELECT (SELECT count(*) FROM user_metrics) AS metrics, (SELECT count(*) FROM rejected_metrics) AS rejected',
  );
  return { metrics: Number(rows[0]?.metrics), rejected: Number(rows[0]?.rejected) };
}

const postMetric = (text: string) => postJson(`${gateway.url}/v1/metrics`, text);
const postBulk = (lines: readonly string[]) => postNdjson(`${gateway.url}/v1/metrics/bulk`, `${lines.join('\n')}\n`);

/** Epoch seconds with six decimals, as extract(epoch ...)::text prints them, for an instant at UTC. */
function epochText(utc: string): string {
  const micros = BigInt(Date.parse(utc.replace(/\.\d{6}Z$/, 'Z'))) * 1000n + BigInt(utc.slice(-7, -1));
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  return `${negative ? '-' : ''}${abs / 1_000_000n}.${String(abs % 1_000_000n).padStart(6, '0')}`;
}

/** double precision keeps -0, but the contract only needs the value: either zero is right. */
function expectSameNumber(stored: number | null, sentJson: string): void {
  const sent = JSON.parse(sentJson) as number | null;
  if (sent === 0) expect(stored === 0).toBe(true);
  else expect(stored).toBe(sent);
}

// User id ranges, one user per case and path, so that each case's row is found by its user.
const SINGLE = 1;
const BULK = 301;
const BULK_WITH_EVENT_ID = 601;

describe('device ids round-trip exactly', () => {
  it.each(ODD_DEVICE_IDS.map(([name, id], i) => [name, id, i] as const))(
    'through POST /v1/metrics: %s',
    async (_name, deviceId, i) => {
      const user = SINGLE + i;
      const response = await postMetric(metricJson(user, { device_id: JSON.stringify(deviceId) }));
      expect(response).toMatchObject({ status: 201, body: { status: 'stored' } });
      expect((await onlyRowOf(user)).device_id).toBe(deviceId);
      const same = await db.pool.query('SELECT 1 FROM user_metrics WHERE user_id = $1 AND device_id = $2', [
        user,
        deviceId,
      ]);
      expect(same.rowCount).toBe(1);
    },
  );

  it.each([
    ['without event_id (COPY into user_metrics)', BULK, false],
    ['with event_id (COPY into the staging table)', BULK_WITH_EVENT_ID, true],
  ])('through bulk, %s', async (_name, firstUser, withEventId) => {
    const lines = ODD_DEVICE_IDS.map(([, deviceId], i) =>
      metricJson(firstUser + i, {
        device_id: JSON.stringify(deviceId),
        ...(withEventId ? { event_id: JSON.stringify(randomUUID()) } : {}),
      }),
    );
    const response = await postBulk(lines);
    expect(response).toMatchObject({ status: 200, body: { accepted: lines.length, rejected: 0, errors: [] } });
    const stored = await Promise.all(ODD_DEVICE_IDS.map(async (_, i) => (await onlyRowOf(firstUser + i)).device_id));
    expect(stored).toEqual(ODD_DEVICE_IDS.map(([, deviceId]) => deviceId));
  });

  it('through POST /v1/devices and GET /v1/devices/:id', async () => {
    for (const [name, id] of ODD_DEVICE_IDS) {
      const apiId = `${id.slice(0, 250)}-api`;
      const created = await postJson(`${gateway.url}/v1/devices`, { id: apiId, type: name, name: `${name} ü中😀` });
      expect({ name, status: created.status, id: created.body.id }).toEqual({ name, status: 201, id: apiId });
      const { rows } = await db.pool.query('SELECT type, name FROM devices WHERE id = $1', [apiId]);
      expect(rows).toEqual([{ type: name, name: `${name} ü中😀` }]);
      const read = await request(`${gateway.url}/v1/devices/${encodeURIComponent(apiId)}`);
      expect({ name, status: read.status, id: read.body.id }).toEqual({ name, status: 200, id: apiId });
    }
  });
});

describe('numbers round-trip exactly', () => {
  const USER_OFFSET = 100;

  it.each(NUMBER_CASES.map(([name, talked, sentiment], i) => [name, talked, sentiment, i] as const))(
    'through POST /v1/metrics: %s',
    async (_name, talked, sentiment, i) => {
      const user = SINGLE + USER_OFFSET + i;
      const response = await postMetric(metricJson(user, { talked_time: talked, voice_sentiment: sentiment }));
      expect(response).toMatchObject({ status: 201, body: { status: 'stored' } });
      const row = await onlyRowOf(user);
      expectSameNumber(row.talked_time, talked);
      expectSameNumber(row.voice_sentiment, sentiment);
    },
  );

  it('through bulk', async () => {
    const firstUser = BULK + USER_OFFSET;
    const lines = NUMBER_CASES.map(([, talked, sentiment], i) =>
      metricJson(firstUser + i, { talked_time: talked, voice_sentiment: sentiment }),
    );
    const response = await postBulk(lines);
    expect(response).toMatchObject({ status: 200, body: { accepted: lines.length, rejected: 0, errors: [] } });
    for (const [i, [, talked, sentiment]] of NUMBER_CASES.entries()) {
      const row = await onlyRowOf(firstUser + i);
      expectSameNumber(row.talked_time, talked);
      expectSameNumber(row.voice_sentiment, sentiment);
    }
    // PostgreSQL's own text of the first cases: the doubles themselves, not rounded ones.
    const { rows } = await db.pool.query<{ talked: string }>(
      'SELECT talked_time::text AS talked FROM user_metrics WHERE user_id BETWEEN $1 AND $2 ORDER BY user_id',
      [firstUser, firstUser + 3],
    );
    expect(rows.map((row) => row.talked)).toEqual(['0', '5e-324', '86400', '0.30000000000000004']);
  });

  it('sends an omitted voice_sentiment as NULL', async () => {
    const user = SINGLE + USER_OFFSET + 50;
    const text = metricJson(user).replace(',"voice_sentiment":0.25', '');
    expect(text).not.toContain('voice_sentiment');
    expect((await postMetric(text)).status).toBe(201);
    expect((await onlyRowOf(user)).voice_sentiment).toBeNull();
  });
});

describe('time_recorded round-trips as the same instant', () => {
  const USER_OFFSET = 200;
  const cases = (): (readonly [string, string, string])[] => {
    const soon = nearFuture();
    return [...TIME_CASES, ['23 h in the future', soon.json, soon.utc]];
  };

  it.each(cases().map(([name, time, utc], i) => [name, time, utc, i] as const))(
    'through POST /v1/metrics: %s',
    async (_name, time, utc, i) => {
      const user = SINGLE + USER_OFFSET + i;
      const response = await postMetric(metricJson(user, { time_recorded: time }));
      expect(response).toMatchObject({ status: 201, body: { status: 'stored' } });
      const row = await onlyRowOf(user);
      expect(row.time_utc).toBe(utc);
      expect(row.epoch).toBe(epochText(utc));
    },
  );

  it('through bulk', async () => {
    const firstUser = BULK + USER_OFFSET;
    const all = cases();
    const response = await postBulk(all.map(([, time], i) => metricJson(firstUser + i, { time_recorded: time })));
    expect(response).toMatchObject({ status: 200, body: { accepted: all.length, rejected: 0, errors: [] } });
    const stored = await Promise.all(all.map(async (_, i) => (await onlyRowOf(firstUser + i)).time_utc));
    expect(stored).toEqual(all.map(([, , utc]) => utc));
  });
});

describe('event_id in upper case', () => {
  const UPPER = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11';

  it('through POST /v1/metrics: is echoed as sent, stored as the same uuid, and a lower-case repeat is not stored again', async () => {
    const user = SINGLE + 290;
    const first = await postMetric(metricJson(user, { event_id: JSON.stringify(UPPER) }));
    expect(first).toMatchObject({ status: 201, body: { status: 'stored', event_id: UPPER } });
    expect((await onlyRowOf(user)).event_id).toBe(UPPER.toLowerCase());
    const equal = await db.pool.query('SELECT 1 FROM user_metrics WHERE user_id = $1 AND event_id = $2::uuid', [
      user,
      UPPER.toLowerCase(),
    ]);
    expect(equal.rowCount).toBe(1);

    const repeat = await postMetric(
      metricJson(user, { event_id: JSON.stringify(UPPER.toLowerCase()), talked_time: '99' }),
    );
    expect(repeat).toMatchObject({ status: 201, body: { status: 'stored', event_id: UPPER.toLowerCase() } });
    expect((await rowsOf(user)).map((row) => row.talked_time)).toEqual([12.5]);
  });

  it('through bulk: upper- and lower-case spellings of one uuid are one event', async () => {
    const user = BULK + 290;
    const response = await postBulk([
      metricJson(user, { event_id: JSON.stringify(UPPER) }),
      metricJson(user, { event_id: JSON.stringify(UPPER.toLowerCase()), talked_time: '99' }),
    ]);
    expect(response).toMatchObject({ status: 200, body: { accepted: 2, rejected: 0, errors: [] } });
    const rows = await rowsOf(user);
    expect(rows).toHaveLength(1);
    expect(rows[0]?.event_id).toBe(UPPER.toLowerCase());
  });
});

describe('values PostgreSQL would refuse are refused at the door', () => {
  const REFUSING_USER = 900;

  it.each(refusedCases())('through POST /v1/metrics: %s', async (_name, fields, path) => {
    const before = await tableCounts();
    const response = await postMetric(metricJson(REFUSING_USER, fields));
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ error: 'validation_failed', message: expect.any(String) });
    expect(response.body.details).toEqual(expect.arrayContaining([expect.objectContaining({ path })]));
    expect(await tableCounts()).toEqual(before);
  });

  it('through POST /v1/metrics?wait=false too', async () => {
    const before = await tableCounts();
    for (const [name, fields, path] of refusedCases()) {
      const response = await postJson(`${gateway.url}/v1/metrics?wait=false`, metricJson(REFUSING_USER, fields));
      expect({
        name,
        status: response.status,
        paths: response.body.details?.map((d: { path: string }) => d.path),
      }).toEqual({
        name,
        status: 400,
        paths: expect.arrayContaining([path]),
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await tableCounts()).toEqual(before);
  });

  it('through bulk: every bad line is refused with its pointer, and every good line around them is stored', async () => {
    const goodUser = 901;
    const refused = refusedCases();
    const lines: string[] = [];
    const expectedErrors: unknown[] = [];
    const goodTalkedTimes: number[] = [];
    for (const [i, [, fields, path]] of refused.entries()) {
      // good, bad, good, bad, ..., good
      lines.push(metricJson(goodUser, { talked_time: String(i) }));
      goodTalkedTimes.push(i);
      lines.push(metricJson(REFUSING_USER, fields));
      expectedErrors.push({
        line: lines.length,
        error: 'validation_failed',
        details: expect.arrayContaining([expect.objectContaining({ path })]),
      });
    }
    lines.push(metricJson(goodUser, { talked_time: String(refused.length) }));
    goodTalkedTimes.push(refused.length);
    const before = await tableCounts();

    const response = await postBulk(lines);
    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      accepted: goodTalkedTimes.length,
      rejected: refused.length,
      errors: expectedErrors,
    });
    expect((await rowsOf(goodUser)).map((row) => row.talked_time)).toEqual(goodTalkedTimes);
    expect(await tableCounts()).toEqual({
      metrics: before.metrics + goodTalkedTimes.length,
      rejected: before.rejected,
    });
    expect((await rowsOf(REFUSING_USER)).length).toBe(0);
  });

  describe('values the schema lets through today but PostgreSQL refuses', () => {
    it.each(REFUSED_ONLY_BY_POSTGRES)('through POST /v1/metrics: %s', async (_name, fields, path) => {
      const before = await tableCounts();
      const response = await postMetric(metricJson(REFUSING_USER, fields));
      expect(response.status).toBe(400);
      expect(response.body).toMatchObject({ error: 'validation_failed', details: [expect.objectContaining({ path })] });
      // Refused at the door, not taken into the buffer and refused at flush time.
      expect(await tableCounts()).toEqual(before);
    });

    it.each(REFUSED_ONLY_BY_POSTGRES)('through bulk, among good rows: %s', async (_name, fields, path) => {
      const goodUser = 902;
      const lines = [
        metricJson(goodUser, { talked_time: '1', event_id: JSON.stringify(randomUUID()) }),
        metricJson(goodUser, { talked_time: '2' }),
        metricJson(REFUSING_USER, fields),
        metricJson(goodUser, { talked_time: '4', event_id: JSON.stringify(randomUUID()) }),
        metricJson(goodUser, { talked_time: '5' }),
      ];
      const before = await tableCounts();
      const response = await postBulk(lines);
      expect(response.status).toBe(200);
      // Every good row is stored whatever happens to the bad one.
      expect((await rowsOf(goodUser)).map((row) => row.talked_time).sort()).toEqual([1, 2, 4, 5]);
      expect(response.body).toEqual({
        accepted: 4,
        rejected: 1,
        errors: [{ line: 3, error: 'validation_failed', details: [expect.objectContaining({ path })] }],
      });
      expect(await tableCounts()).toEqual({ metrics: before.metrics + 4, rejected: before.rejected });
      await db.pool.query('DELETE FROM user_metrics WHERE user_id = $1', [goodUser]);
    });

    it('an offset beyond ±15:59 is stored as the right instant or refused at the door, never at flush time', async () => {
      const user = SINGLE + 295;
      const before = await tableCounts();
      // RFC 3339 allows offsets up to ±23:59; PostgreSQL's timestamptz input stops at ±15:59.
      const response = await postMetric(metricJson(user, { time_recorded: '"2024-03-10T12:00:00+16:00"' }));
      if (response.status === 201) {
        expect((await onlyRowOf(user)).time_utc).toBe('2024-03-09T20:00:00.000000Z');
      } else {
        expect(response).toMatchObject({
          status: 400,
          body: { error: 'validation_failed', details: [expect.objectContaining({ path: '/time_recorded' })] },
        });
      }
      expect((await tableCounts()).rejected).toBe(before.rejected);
    });

    it('an offset beyond ±15:59 in bulk does not cost good rows and is never refused at flush time', async () => {
      const [goodUser, user] = [903, BULK + 295];
      const before = await tableCounts();
      const response = await postBulk([
        metricJson(goodUser, { talked_time: '1' }),
        metricJson(goodUser, { talked_time: '2', event_id: JSON.stringify(randomUUID()) }),
        metricJson(user, { time_recorded: '"2024-03-10T12:00:00+16:00"' }),
        metricJson(goodUser, { talked_time: '4' }),
      ]);
      expect(response.status).toBe(200);
      // Rows with an event_id are inserted after the plain rows of their batch, so ids do not follow lines.
      expect((await rowsOf(goodUser)).map((row) => row.talked_time).sort()).toEqual([1, 2, 4]);
      if (response.body.accepted === 4) {
        expect((await onlyRowOf(user)).time_utc).toBe('2024-03-09T20:00:00.000000Z');
      } else {
        expect(response.body).toEqual({
          accepted: 3,
          rejected: 1,
          errors: [
            { line: 3, error: 'validation_failed', details: [expect.objectContaining({ path: '/time_recorded' })] },
          ],
        });
      }
      expect((await tableCounts()).rejected).toBe(before.rejected);
    });
  });
});
