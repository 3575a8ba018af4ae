import { DatabaseError } from 'pg';
import { TALKED_TIME_MAX_SECONDS } from '../../src/contract/schemas';
import { MAX_DETAILS_PER_METRIC } from '../../src/ingest/schema';
import { createTestDatabase, onCitus, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, request, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';

// A metric's values have ranges (talked_time 0 .. 86400 s, voice_sentiment -1 .. 1): refused at the
// door and by PostgreSQL for every writer; and rows stored before the ranges never break a read.

const DOOR_USER = 1;
const HUGE_USER = 2;
const MOST_NEGATIVE_USER = 3;
const LARGEST_DOUBLE_USER = 4;
const TINY_USER = 5;
const WRITER_USER = 6;
const LARGEST_DOUBLE = Number.MAX_VALUE;

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

/**
 * Inserts rows as if stored before migration 0006 (or by a writer it did not hold back): its
 * constraints are dropped for the insert and added again NOT VALID, as the migration adds them.
 */
async function insertRowsFromBeforeTheRanges(rows: readonly [number, number, number | null][]): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows: unvalidated } = await client.query<{ name: string; definition: string }>(
      `SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint
        WHERE conrelid = 'user_metrics'::regclass AND contype = 'c' AND NOT convalidated`,
    );
    for (const { name } of unvalidated) await client.query(`ALTER TABLE user_metrics DROP CONSTRAINT ${name}`);
    for (const [userId, talkedTime, sentiment] of rows) {
      await client.query(
        `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, voice_sentiment, time_recorded)
         VALUES ($1, $2, true, false, $3, '2026-01-01T00:00:00Z')`,
        [userId, talkedTime, sentiment],
      );
    }
    for (const { name, definition } of unvalidated) {
      await client.query(`ALTER TABLE user_metrics ADD CONSTRAINT ${name} ${definition}`);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) SELECT g, 'user ' || g FROM generate_series(1, 6) AS g`);
  gateway = await startTestGateway(db);
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

describe('the ranges at the door', () => {
  it.each([
    ['voice_sentiment', 1e200, 'must be <= 1'],
    ['voice_sentiment', -1.001, 'must be >= -1'],
    ['talked_time', 1.7e308, `must be <= ${TALKED_TIME_MAX_SECONDS}`],
  ])('refuses %s = %p with 400', async (field, value, message) => {
    const response = await postJson(`${gateway.url}/v1/metrics`, metric({ user_id: DOOR_USER, [field]: value }));
    expect(response).toMatchObject({
      status: 400,
      body: { error: 'validation_failed', details: [{ path: `/${field}`, message }] },
    });
  });

  it('takes the ends of the ranges, and refuses a bulk line past them', async () => {
    const lines = [
      metric({ user_id: DOOR_USER, talked_time: TALKED_TIME_MAX_SECONDS, voice_sentiment: -1 }),
      metric({ user_id: DOOR_USER, talked_time: 0, voice_sentiment: 1 }),
      metric({ user_id: DOOR_USER, voice_sentiment: 1e200 }),
    ];
    const response = await postNdjson(
      `${gateway.url}/v1/metrics/bulk`,
      lines.map((line) => JSON.stringify(line)).join('\n'),
    );
    expect(response).toMatchObject({
      status: 200,
      body: { accepted: 2, rejected: 1, errors: [{ line: 3, details: [{ path: '/voice_sentiment' }] }] },
    });
  });

  it('shows the ranges in the OpenAPI document', async () => {
    const { body } = await request(`${gateway.url}/openapi.json`);
    const properties = body.components.schemas.Metric.properties;
    expect(properties.talked_time).toMatchObject({ minimum: 0, maximum: TALKED_TIME_MAX_SECONDS });
    expect(properties.voice_sentiment).toMatchObject({ minimum: -1, maximum: 1 });
  });

  it('bounds the details of a 64 KiB line of distinct unknown keys', async () => {
    const keys: string[] = [];
    for (let i = 0, length = 0; length < 65_000; i++) {
      const entry = `"k${i.toString(36)}":0`;
      keys.push(entry);
      length += entry.length + 1;
    }
    const response = await postNdjson(`${gateway.url}/v1/metrics/bulk`, `{${keys.join(',')}}\n`);
    expect(response.status).toBe(200);
    expect(response.body.errors[0].details).toHaveLength(MAX_DETAILS_PER_METRIC);
    expect(JSON.stringify(response.body).length).toBeLessThan(4000);
  });
});

describe('the ranges in PostgreSQL', () => {
  it.each([
    ['voice_sentiment', 'talked_time, voice_sentiment', '1, 1.5', 'user_metrics_voice_sentiment_range'],
    ['talked_time', 'talked_time', '86400.5', 'user_metrics_talked_time_range'],
  ])('refuse a %s past them from any writer', async (_field, columns, values, constraint) => {
    const insert = db.pool.query(
      `INSERT INTO user_metrics (user_id, microphone_used, speaker_used, time_recorded, ${columns})
       VALUES (${WRITER_USER}, true, true, now(), ${values})`,
    );
    await expect(insert).rejects.toBeInstanceOf(DatabaseError);
    // Citus passes a worker's refusal on without its constraint field; the message names the shard's
    // copy of the constraint.
    const named = onCitus()
      ? { message: expect.stringMatching(new RegExp(`violates check constraint "${constraint}(_\\d+)?"`)) }
      : { constraint };
    await expect(insert).rejects.toMatchObject({ code: '23514', ...named });
  });
});

describe('rows stored before the ranges', () => {
  beforeAll(async () => {
    await insertRowsFromBeforeTheRanges([
      [HUGE_USER, 1.7e308, 1e200],
      [HUGE_USER, 1.7e308, 1e200],
      [MOST_NEGATIVE_USER, 0, -LARGEST_DOUBLE],
      [MOST_NEGATIVE_USER, 0, -LARGEST_DOUBLE],
      [LARGEST_DOUBLE_USER, LARGEST_DOUBLE, LARGEST_DOUBLE],
      [TINY_USER, 5e-324, 5e-324],
      [TINY_USER, 0, -0],
      [TINY_USER, 1e308, 0],
    ]);
  });

  it('summarize in numeric: past the double range the sums saturate at the largest double', async () => {
    expect(await request(`${gateway.url}/v1/users/${HUGE_USER}/summary`)).toMatchObject({
      status: 200,
      body: { count: 2, total_talked_time: LARGEST_DOUBLE, average_voice_sentiment: 1e200 },
    });
    expect(await request(`${gateway.url}/v1/users/${MOST_NEGATIVE_USER}/summary`)).toMatchObject({
      status: 200,
      body: { count: 2, total_talked_time: 0, average_voice_sentiment: -LARGEST_DOUBLE },
    });
    expect(await request(`${gateway.url}/v1/users/${LARGEST_DOUBLE_USER}/summary`)).toMatchObject({
      status: 200,
      body: { count: 1, total_talked_time: LARGEST_DOUBLE, average_voice_sentiment: LARGEST_DOUBLE },
    });
  });

  it('summarize subnormals without an underflow: an average that rounds to no double is 0', async () => {
    const response = await request(`${gateway.url}/v1/users/${TINY_USER}/summary`);
    expect(response).toMatchObject({ status: 200, body: { count: 3, total_talked_time: 1e308 } });
    expect(response.body.average_voice_sentiment).toBe(0);
  });

  it('read back as the same JSON numbers', async () => {
    for (const [userId, expected] of [
      [
        HUGE_USER,
        [
          [1.7e308, 1e200],
          [1.7e308, 1e200],
        ],
      ],
      [LARGEST_DOUBLE_USER, [[LARGEST_DOUBLE, LARGEST_DOUBLE]]],
      [
        TINY_USER,
        [
          [1e308, 0],
          [5e-324, 5e-324],
          [0, 0],
        ],
      ],
    ] as const) {
      const response = await request(`${gateway.url}/v1/users/${userId}/metrics`);
      expect(response.status).toBe(200);
      const values = response.body.items.map((item: { talked_time: number; voice_sentiment: number }) => [
        item.talked_time,
        item.voice_sentiment,
      ]);
      expect(values.sort((a: number[], b: number[]) => (b[0] ?? 0) - (a[0] ?? 0))).toEqual(expected);
    }
  });
});
