import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, postNdjson, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';
import { parsePrometheusText, sampleValue, type MetricFamily } from '../helpers/prometheus-text';

// GET /metrics of a real gateway: the counters move by exactly the rows that went in or were refused.

const BATCH_MAX_ROWS = 100;
const BUFFER_MAX_ROWS = 5000;
const DOOMED_USER = 2;
const DEVICE = 'id847-gj-335-Vow6DhCP6';

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

type Scrape = Map<string, MetricFamily>;

async function scrape(url = gateway.url): Promise<Scrape> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await response.text());
}

/** The value of a series, 0 when it does not exist yet. */
function value(families: Scrape, name: string, labels: Record<string, string> = {}): number {
  return sampleValue(families, name, labels) ?? 0;
}

/** How much each of `series` moved between two scrapes. */
function moved(before: Scrape, after: Scrape, series: [string, Record<string, string>?][]): Record<string, number> {
  const result: Record<string, number> = {};
  for (const [name, labels = {}] of series) {
    const key = Object.keys(labels).length === 0 ? name : `${name}${JSON.stringify(labels)}`;
    result[key] = value(after, name, labels) - value(before, name, labels);
  }
  return result;
}

const accepted = (endpoint: string): [string, Record<string, string>] => [
  'metrics_gateway_rows_accepted_total',
  { endpoint },
];
const rejected = (endpoint: string, reason: string): [string, Record<string, string>] => [
  'metrics_gateway_rows_rejected_total',
  { endpoint, reason },
];

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'Ada'), (2, 'to be deleted')`);
  await db.pool.query(`INSERT INTO devices (id, type, name) VALUES ($1, 'Android 8.1', 'vivo V11i')`, [DEVICE]);
  gateway = await startTestGateway(db, {
    BATCH_MAX_ROWS: String(BATCH_MAX_ROWS),
    BUFFER_MAX_ROWS: String(BUFFER_MAX_ROWS),
  });
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

describe('GET /metrics', () => {
  it('counts single metrics: accepted, each stored in a batch of its own', async () => {
    const before = await scrape();
    for (let i = 0; i < 3; i++) expect((await postJson(`${gateway.url}/v1/metrics`, metric())).status).toBe(201);
    const after = await scrape();
    expect(
      moved(before, after, [
        accepted('single'),
        accepted('bulk'),
        ['metrics_gateway_rows_flushed_total'],
        ['metrics_gateway_batch_size_rows_count'],
        ['metrics_gateway_batch_size_rows_sum'],
        ['metrics_gateway_flush_duration_seconds_count'],
        ['metrics_gateway_ingest_lag_seconds_count'],
      ]),
    ).toEqual({
      'metrics_gateway_rows_accepted_total{"endpoint":"single"}': 3,
      'metrics_gateway_rows_accepted_total{"endpoint":"bulk"}': 0,
      metrics_gateway_rows_flushed_total: 3,
      // wait=true answers after the commit, so the next request's row is in the next batch.
      metrics_gateway_batch_size_rows_count: 3,
      metrics_gateway_batch_size_rows_sum: 3,
      metrics_gateway_flush_duration_seconds_count: 3,
      metrics_gateway_ingest_lag_seconds_count: 3,
    });
  });

  it('counts single metrics refused at the door, by reason', async () => {
    const before = await scrape();
    const url = `${gateway.url}/v1/metrics`;
    expect((await postJson(url, metric({ talk_time: 1 }))).status).toBe(400);
    expect((await postJson(url, metric({ talked_time: -1 }))).status).toBe(400);
    expect((await postJson(url, metric({ user_id: 999_999 }))).status).toBe(422);
    expect((await postJson(url, '{"user_id": 1,')).status).toBe(400);
    expect((await postJson(url, metric(), { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await postJson(url, metric({ device_id: 'x'.repeat(20_000) }))).status).toBe(413);
    const after = await scrape();
    expect(
      moved(before, after, [
        accepted('single'),
        rejected('single', 'validation_failed'),
        rejected('single', 'unknown_reference'),
        rejected('single', 'invalid_json'),
        rejected('single', 'unsupported_media_type'),
        rejected('single', 'payload_too_large'),
        rejected('bulk', 'validation_failed'),
        ['metrics_gateway_rows_flushed_total'],
      ]),
    ).toEqual({
      'metrics_gateway_rows_accepted_total{"endpoint":"single"}': 0,
      'metrics_gateway_rows_rejected_total{"endpoint":"single","reason":"validation_failed"}': 2,
      'metrics_gateway_rows_rejected_total{"endpoint":"single","reason":"unknown_reference"}': 1,
      'metrics_gateway_rows_rejected_total{"endpoint":"single","reason":"invalid_json"}': 1,
      'metrics_gateway_rows_rejected_total{"endpoint":"single","reason":"unsupported_media_type"}': 1,
      'metrics_gateway_rows_rejected_total{"endpoint":"single","reason":"payload_too_large"}': 1,
      'metrics_gateway_rows_rejected_total{"endpoint":"bulk","reason":"validation_failed"}': 0,
      metrics_gateway_rows_flushed_total: 0,
    });
  });

  it('counts a bulk upload line by line, and batches that add up to its rows', async () => {
    const good = 1234;
    const lines: string[] = [];
    for (let i = 0; i < good; i++) lines.push(JSON.stringify(metric({ talked_time: i })));
    lines.splice(10, 0, JSON.stringify(metric({ talked_time: 'long' })));
    lines.splice(20, 0, '{not json');
    lines.splice(30, 0, JSON.stringify(metric({ user_id: 999_999 })));
    lines.splice(40, 0, JSON.stringify(metric({ speaker_used: undefined })), '');

    const before = await scrape();
    const response = await postNdjson(`${gateway.url}/v1/metrics/bulk`, `${lines.join('\n')}\n`);
    expect(response.body).toMatchObject({ accepted: good, rejected: 4 });
    const after = await scrape();
    const delta = moved(before, after, [
      accepted('bulk'),
      rejected('bulk', 'validation_failed'),
      rejected('bulk', 'invalid_json'),
      rejected('bulk', 'unknown_reference'),
      ['metrics_gateway_rows_flushed_total'],
      ['metrics_gateway_batch_size_rows_sum'],
      ['metrics_gateway_batch_size_rows_count'],
      ['metrics_gateway_batch_size_rows_bucket', { le: String(BATCH_MAX_ROWS) }],
      ['metrics_gateway_flush_duration_seconds_count'],
      ['metrics_gateway_ingest_lag_seconds_count'],
    ]);
    expect(delta).toMatchObject({
      'metrics_gateway_rows_accepted_total{"endpoint":"bulk"}': good,
      'metrics_gateway_rows_rejected_total{"endpoint":"bulk","reason":"validation_failed"}': 2,
      'metrics_gateway_rows_rejected_total{"endpoint":"bulk","reason":"invalid_json"}': 1,
      'metrics_gateway_rows_rejected_total{"endpoint":"bulk","reason":"unknown_reference"}': 1,
      metrics_gateway_rows_flushed_total: good,
      metrics_gateway_batch_size_rows_sum: good,
      metrics_gateway_ingest_lag_seconds_count: good,
    });
    // How the rows fell into batches depends on timing; that every batch was observed, and none was
    // larger than BATCH_MAX_ROWS, does not.
    const batches = delta.metrics_gateway_batch_size_rows_count as number;
    expect(batches).toBeGreaterThanOrEqual(Math.ceil(good / BATCH_MAX_ROWS));
    expect(delta['metrics_gateway_batch_size_rows_bucket{"le":"100"}']).toBe(batches);
    expect(delta.metrics_gateway_flush_duration_seconds_count).toBe(batches);
  });

  it('measures ingest lag from time_recorded to receipt', async () => {
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
    const before = await scrape();
    expect((await postJson(`${gateway.url}/v1/metrics`, metric({ time_recorded: hourAgo }))).status).toBe(201);
    const epochMs = Date.now() - 10 * 86_400_000;
    expect(
      (await postNdjson(`${gateway.url}/v1/metrics/bulk`, JSON.stringify(metric({ time_recorded: epochMs })))).body,
    ).toMatchObject({ accepted: 1 });
    const after = await scrape();
    const delta = moved(before, after, [
      ['metrics_gateway_ingest_lag_seconds_count'],
      ['metrics_gateway_ingest_lag_seconds_sum'],
      ['metrics_gateway_ingest_lag_seconds_bucket', { le: '900' }],
      ['metrics_gateway_ingest_lag_seconds_bucket', { le: '3600' }],
      ['metrics_gateway_ingest_lag_seconds_bucket', { le: '21600' }],
      ['metrics_gateway_ingest_lag_seconds_bucket', { le: '604800' }],
      ['metrics_gateway_ingest_lag_seconds_bucket', { le: '+Inf' }],
    ]);
    expect(delta.metrics_gateway_ingest_lag_seconds_count).toBe(2);
    expect(delta.metrics_gateway_ingest_lag_seconds_sum).toBeGreaterThanOrEqual(3600 + 864_000);
    expect(delta.metrics_gateway_ingest_lag_seconds_sum).toBeLessThan(3600 + 864_000 + 60);
    expect(delta['metrics_gateway_ingest_lag_seconds_bucket{"le":"900"}']).toBe(0);
    expect(delta['metrics_gateway_ingest_lag_seconds_bucket{"le":"21600"}']).toBe(1);
    expect(delta['metrics_gateway_ingest_lag_seconds_bucket{"le":"604800"}']).toBe(1);
    expect(delta['metrics_gateway_ingest_lag_seconds_bucket{"le":"+Inf"}']).toBe(2);
  });

  it('counts a row that PostgreSQL refuses at flush time', async () => {
    // The first metric makes the gateway remember the user; deleted behind its back, the second
    // passes the door and is refused by PostgreSQL.
    expect((await postJson(`${gateway.url}/v1/metrics`, metric({ user_id: DOOMED_USER }))).status).toBe(201);
    await db.pool.query('DELETE FROM users WHERE id = $1', [DOOMED_USER]);
    const before = await scrape();
    expect(await postJson(`${gateway.url}/v1/metrics`, metric({ user_id: DOOMED_USER }))).toMatchObject({
      status: 422,
      body: { error: 'unknown_reference' },
    });
    const after = await scrape();
    expect(
      moved(before, after, [
        accepted('single'),
        ['metrics_gateway_rows_rejected_at_flush_total', { reason: 'unknown_reference' }],
        rejected('single', 'unknown_reference'),
      ]),
    ).toEqual({
      'metrics_gateway_rows_accepted_total{"endpoint":"single"}': 1,
      'metrics_gateway_rows_rejected_at_flush_total{"reason":"unknown_reference"}': 1,
      'metrics_gateway_rows_rejected_total{"endpoint":"single","reason":"unknown_reference"}': 0,
    });
  });

  it('reports the buffer, the pool and the process', async () => {
    await gateway.batcher.drain();
    const families = await scrape();
    expect(value(families, 'metrics_gateway_buffer_depth_rows')).toBe(0);
    expect(value(families, 'metrics_gateway_buffer_capacity_rows')).toBe(BUFFER_MAX_ROWS);
    expect(value(families, 'metrics_gateway_db_pool_connections')).toBeGreaterThanOrEqual(1);
    expect(value(families, 'metrics_gateway_db_pool_idle_connections')).toBeGreaterThanOrEqual(0);
    expect(value(families, 'metrics_gateway_db_pool_waiting_requests')).toBe(0);
    expect(families.get('metrics_gateway_flush_failures_total')?.type).toBe('counter');
    expect(families.get('process_resident_memory_bytes')?.type).toBe('gauge');
    expect(families.get('nodejs_eventloop_lag_seconds')?.type).toBe('gauge');
  });

  it('keeps the counts of two gateways in one process apart', async () => {
    const other = await startTestGateway(db);
    try {
      const before = await scrape(other.url);
      expect((await postJson(`${gateway.url}/v1/metrics`, metric())).status).toBe(201);
      const after = await scrape(other.url);
      expect(moved(before, after, [accepted('single')])).toEqual({
        'metrics_gateway_rows_accepted_total{"endpoint":"single"}': 0,
      });
    } finally {
      await other.stop();
    }
  });
});
