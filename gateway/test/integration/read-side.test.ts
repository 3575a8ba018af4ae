import { metricsPageQuery } from '../../src/db/metrics-reads';
import { encodePageCursor } from '../../src/http/page-cursor';
import { createTestDatabase, onCitus, type TestDatabase } from '../helpers/database';
import { postJson, request, startTestGateway } from '../helpers/gateway';

// GET /v1/users/:id/metrics and /summary against rows written straight into user_metrics (so that
// ties and bounds are exactly as the test wants them), plus a few sent through the gateway.

const PAGED_USER = 1;
const SUMMARY_USER = 2;
const EMPTY_USER = 3;
const BULK_USERS_FROM = 100;
const BULK_USERS = 4;
const DEVICE = 'id847-gj-335-Vow6DhCP6';
// Each partition's copy of user_metrics_user_id_time_recorded_idx (migration 0007). On Citus the plan
// shown is the worker's, on shards: each index name ends with its shard's id.
const INDEX = onCitus()
  ? /"Index Name":"user_metrics_\w*user_id_time_recorded_idx_\d+"/
  : /"Index Name":"user_metrics_\w*user_id_time_recorded_idx"/;

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

interface Item {
  id: string;
  user_id: number;
  time_recorded: string;
  talked_time: number;
}

/** Every row of the user, in the order the API promises: newest first, then the larger id. */
async function expectedOrder(userId: number, where = 'true', params: unknown[] = []): Promise<string[]> {
  // node-postgres reads a bigint as text.
  const { rows } = await db.pool.query<{ id: string }>(
    `SELECT id FROM user_metrics WHERE user_id = $1 AND ${where} ORDER BY time_recorded DESC, id DESC`,
    [userId, ...params],
  );
  return rows.map((row) => row.id);
}

/** Follows next_cursor to the end; fails on a page larger than the limit. */
async function readAllPages(userId: number, query: string, limit: number): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const url: string = `${gateway.url}/v1/users/${userId}/metrics?limit=${limit}${query}${cursor === null ? '' : `&cursor=${cursor}`}`;
    const response = await request<{ items: Item[]; next_cursor: string | null }>(url);
    expect(response.status).toBe(200);
    expect(response.body.items.length).toBeLessThanOrEqual(limit);
    if (response.body.next_cursor !== null) expect(response.body.items).toHaveLength(limit);
    ids.push(...response.body.items.map((item) => item.id));
    cursor = response.body.next_cursor;
    pages += 1;
    if (pages > 1000) throw new Error('no end of pages');
  } while (cursor !== null);
  return { ids, pages };
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'paged'), (2, 'summarized'), (3, 'empty')`);
  await db.pool.query(`INSERT INTO devices (id, type, name) VALUES ($1, 'Android 8.1', 'vivo V11i')`, [DEVICE]);
  // 5 instants with 11 rows each (ties), instants a microsecond apart, and rows spread over a day.
  await db.pool.query(
    `INSERT INTO user_metrics (user_id, device_id, talked_time, microphone_used, speaker_used, time_recorded)
     SELECT $1, $2, g, g % 2 = 0, g % 3 = 0, '2026-01-10T12:00:00Z'::timestamptz + (g % 5) * interval '1 hour'
       FROM generate_series(1, 55) AS g`,
    [PAGED_USER, DEVICE],
  );
  await db.pool.query(
    `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
     SELECT $1, 1, true, false, '2026-01-11T00:00:00Z'::timestamptz + g * interval '1 microsecond'
       FROM generate_series(0, 3) AS g`,
    [PAGED_USER],
  );
  await db.pool.query(
    `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
     SELECT $1, g * 0.25, g % 4 = 0, true, '2026-01-09T00:00:00Z'::timestamptz + g * interval '7 minutes'
       FROM generate_series(1, 40) AS g`,
    [PAGED_USER],
  );
  gateway = await startTestGateway(db);
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

describe('GET /v1/users/:id/metrics', () => {
  it('returns every row exactly once across pages, newest first, with ties in time_recorded', async () => {
    const expected = await expectedOrder(PAGED_USER);
    expect(expected).toHaveLength(99);
    for (const limit of [1, 7, 11, 50, 99, 1000]) {
      const { ids, pages } = await readAllPages(PAGED_USER, '', limit);
      expect(ids).toEqual(expected);
      expect(pages).toBe(Math.max(1, Math.ceil(expected.length / limit)));
    }
  });

  it('answers each row with its values, times in UTC with microseconds', async () => {
    const response = await request(`${gateway.url}/v1/users/${PAGED_USER}/metrics?limit=2`);
    expect(response.status).toBe(200);
    expect(response.body.items[0]).toEqual({
      id: expect.stringMatching(/^\d+$/),
      user_id: PAGED_USER,
      device_id: null,
      talked_time: 1,
      microphone_used: true,
      speaker_used: false,
      voice_sentiment: null,
      time_recorded: '2026-01-11T00:00:00.000003Z',
      event_id: null,
      received_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/),
    });
    expect(response.body.items[1].time_recorded).toBe('2026-01-11T00:00:00.000002Z');
    expect(typeof response.body.next_cursor).toBe('string');
  });

  it('keeps from (inclusive) and to (exclusive), also across pages', async () => {
    const from = '2026-01-10T13:00:00Z';
    const to = '2026-01-10T15:00:00+00:00';
    const expected = await expectedOrder(PAGED_USER, 'time_recorded >= $2 AND time_recorded < $3', [from, to]);
    expect(expected).toHaveLength(22); // the 13:00 and 14:00 instants, not 15:00
    const { ids } = await readAllPages(PAGED_USER, `&from=${from}&to=${encodeURIComponent(to)}`, 5);
    expect(ids).toEqual(expected);

    const onlyFrom = await readAllPages(PAGED_USER, '&from=2026-01-11T00:00:00.000002Z', 3);
    expect(onlyFrom.ids).toEqual((await expectedOrder(PAGED_USER)).slice(0, 2));
    const onlyTo = await readAllPages(PAGED_USER, '&to=2026-01-09T00:14:00Z', 3);
    expect(onlyTo.ids).toEqual(await expectedOrder(PAGED_USER, "time_recorded < '2026-01-09T00:14:00Z'"));
    expect(onlyTo.ids).toHaveLength(1);
  });

  it('shows rows stored through the gateway', async () => {
    const metric = {
      user_id: EMPTY_USER,
      device_id: DEVICE,
      talked_time: 42.5,
      microphone_used: true,
      speaker_used: false,
      voice_sentiment: 0.75,
      time_recorded: '2026-01-15T08:30:00.123456+01:00',
      event_id: '2b7c1a3e-7f4d-4e2a-9c1b-5d6e7f8a9b0c',
    };
    expect((await postJson(`${gateway.url}/v1/metrics`, metric)).status).toBe(201);
    const response = await request(`${gateway.url}/v1/users/${EMPTY_USER}/metrics`);
    expect(response.body).toEqual({
      items: [
        {
          ...metric,
          id: expect.any(String),
          time_recorded: '2026-01-15T07:30:00.123456Z',
          received_at: expect.any(String),
        },
      ],
      next_cursor: null,
    });
    await db.pool.query('DELETE FROM user_metrics WHERE user_id = $1', [EMPTY_USER]);
  });

  it('answers an empty page for a user without rows, and 404 for no such user', async () => {
    expect(await request(`${gateway.url}/v1/users/${EMPTY_USER}/metrics`)).toMatchObject({
      status: 200,
      body: { items: [], next_cursor: null },
    });
    expect(await request(`${gateway.url}/v1/users/999999/metrics`)).toMatchObject({
      status: 404,
      body: { error: 'not_found' },
    });
  });

  it.each([
    ['limit=0', '/query/limit'],
    ['limit=1001', '/query/limit'],
    ['limit=ten', '/query/limit'],
    ['limit=2.5', '/query/limit'],
    ['from=yesterday', '/query/from'],
    ['to=2026-02-30T00:00:00Z', '/query/to'],
    ['from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', '/query/from'],
    ['cursor=not-a-cursor', '/query/cursor'],
    [`cursor=${Buffer.from('["2026-01-01T00:00:00Z", 5]').toString('base64url')}`, '/query/cursor'],
    ['from=2026-01-01T00:00:00Z&from=2026-01-02T00:00:00Z', '/query/from'],
    ['limt=5', '/query/limt'],
  ])('answers 400 validation_failed for %s', async (query, path) => {
    const response = await request(`${gateway.url}/v1/users/${PAGED_USER}/metrics?${query}`);
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ error: 'validation_failed', details: [expect.objectContaining({ path })] });
  });

  it('answers 400 for a user id that is not one', async () => {
    expect(await request(`${gateway.url}/v1/users/abc/metrics`)).toMatchObject({
      status: 400,
      body: { error: 'validation_failed', details: [{ path: '/params/id' }] },
    });
  });

  it('reads the (user_id, time_recorded) index backwards and stops at the limit', async () => {
    // Users with 10,000 rows each: reading all of a user's rows for a page of 101 would be the worse plan.
    await db.pool.query(
      `INSERT INTO users (id, name) SELECT g, 'bulk user' FROM generate_series($1::int, $1::int + $2::int - 1) AS g`,
      [BULK_USERS_FROM, BULK_USERS],
    );
    await db.pool.query(
      `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
       SELECT $1::int + g % $2::int, 1, true, true, '2026-01-01T00:00:00Z'::timestamptz + g * interval '1 second'
         FROM generate_series(1, 40000) AS g`,
      [BULK_USERS_FROM, BULK_USERS],
    );
    await db.pool.query('ANALYZE user_metrics');
    const heavyUser = BULK_USERS_FROM + 1;
    const after = { timeRecorded: '2026-01-01T06:00:00.000000Z', id: '9223372036854775807' };
    const queries = [
      metricsPageQuery({ userId: heavyUser, limit: 101 }),
      metricsPageQuery({ userId: heavyUser, limit: 101, after }),
      metricsPageQuery({
        userId: heavyUser,
        limit: 101,
        from: '2026-01-01T01:00:00Z',
        to: '2026-01-01T08:00:00Z',
      }),
    ];
    for (const query of queries) {
      const { rows } = await db.pool.query<{ 'QUERY PLAN': unknown }>({
        text: `EXPLAIN (FORMAT JSON) ${query.text}`,
        values: query.values,
      });
      const plan = JSON.stringify(rows[0]?.['QUERY PLAN']);
      // On Citus a user's page is routed to the one shard that holds the user, and the index test
      // below holds on the plan of that shard (the coordinator's plan is Citus's Custom Scan only).
      if (onCitus()) expect(plan).toContain('"Task Count":1,');
      expect(plan).toMatch(INDEX);
      expect(plan).toContain('"Scan Direction":"Backward"');
      expect(plan).not.toContain('"Node Type":"Seq Scan"');
      expect(plan).not.toContain('"Node Type":"Sort"'); // an Incremental Sort (ties by id) is fine
    }
    // And the route answers from it: a page in the middle, through a cursor.
    const page = await request(
      `${gateway.url}/v1/users/${heavyUser}/metrics?limit=3&cursor=${encodePageCursor(after)}`,
    );
    expect(page.body.items.map((item: Item) => item.time_recorded)).toEqual([
      '2026-01-01T05:59:57.000000Z', // second 21597, this user's (g % 4 = 1) last before 06:00
      '2026-01-01T05:59:53.000000Z',
      '2026-01-01T05:59:49.000000Z',
    ]);
  });
});

describe('GET /v1/users/:id/summary', () => {
  beforeAll(async () => {
    // talked_time and sentiments are sums of powers of two: every total and mean is exact.
    await db.pool.query(
      `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, voice_sentiment, time_recorded)
       VALUES ($1, 1.5,  true,  false, 0.5,  '2026-02-01T00:00:00Z'),
              ($1, 2.25, true,  true,  NULL, '2026-02-01T12:00:00Z'),
              ($1, 0.25, false, false, -0.25, '2026-02-02T00:00:00Z'),
              ($1, 10,   false, true,  1,    '2026-02-03T00:00:00Z')`,
      [SUMMARY_USER],
    );
  });

  it('counts, totals and averages every row', async () => {
    expect(await request(`${gateway.url}/v1/users/${SUMMARY_USER}/summary`)).toMatchObject({
      status: 200,
      body: {
        count: 4,
        total_talked_time: 14,
        average_voice_sentiment: 1.25 / 3,
        microphone_share: 0.5,
        speaker_share: 0.5,
      },
    });
  });

  it('keeps to [from, to)', async () => {
    const response = await request(
      `${gateway.url}/v1/users/${SUMMARY_USER}/summary?from=2026-02-01T00:00:00Z&to=2026-02-03T00:00:00Z`,
    );
    expect(response.body).toEqual({
      count: 3,
      total_talked_time: 4,
      average_voice_sentiment: 0.125,
      microphone_share: 2 / 3,
      speaker_share: 1 / 3,
    });
  });

  it('answers zeros and nulls without rows, and 404 for no such user', async () => {
    expect((await request(`${gateway.url}/v1/users/${EMPTY_USER}/summary`)).body).toEqual({
      count: 0,
      total_talked_time: 0,
      average_voice_sentiment: null,
      microphone_share: null,
      speaker_share: null,
    });
    expect(await request(`${gateway.url}/v1/users/999999/summary`)).toMatchObject({
      status: 404,
      body: { error: 'not_found' },
    });
  });

  it('refuses bad parameters, including the page ones', async () => {
    for (const query of ['from=soon', 'limit=5', 'to=2026-01-01']) {
      const response = await request(`${gateway.url}/v1/users/${SUMMARY_USER}/summary?${query}`);
      expect(response).toMatchObject({ status: 400, body: { error: 'validation_failed' } });
    }
  });
});
