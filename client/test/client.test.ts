import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { MetricsClient, type ClientOptions, type DropReason, type RefusedRow } from '../src/client';
import type { Metric } from '../src/wire';

// MetricsClient against a scripted fake gateway on a loopback port: what it sends (gzip NDJSON
// batches with event_ids), which events it emits for each answer, what it sends again after a
// partial answer, the queue bound, and close() with a deadline. Against a real gateway:
// gateway/test/integration/client-faults.test.ts.

interface Request {
  readonly lines: Record<string, unknown>[];
  readonly headers: IncomingMessage['headers'];
}
/** An answer: `body` as JSON, or `raw` as it is, or `reset` to cut the connection without an answer. */
type Script = (
  request: Request,
  index: number,
) => { status: number; body?: unknown; raw?: string; reset?: boolean; headers?: Record<string, string> };

let server: Server;
let url: string;
let script: Script;
let hold: Promise<void> | undefined;
const requests: Request[] = [];

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', async () => {
      const text = gunzipSync(Buffer.concat(parts)).toString();
      const request = {
        lines: text
          .trimEnd()
          .split('\n')
          .map((line) => JSON.parse(line)),
        headers: req.headers,
      };
      requests.push(request);
      await hold;
      const { status, body, raw, reset, headers = {} } = script(request, requests.length - 1);
      if (reset) return void req.socket.destroy();
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(raw ?? JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise((resolve) => server.close(resolve)));

beforeEach(() => {
  requests.length = 0;
  hold = undefined;
  script = ({ lines }) => ({ status: 200, body: { accepted: lines.length, rejected: 0, errors: [] } });
});

const metric = (n: number): Metric => ({
  user_id: 1,
  talked_time: n,
  microphone_used: true,
  speaker_used: false,
  time_recorded: 1_700_000_000_000 + n,
});

/** A client whose events are recorded. */
function recorded(options: Partial<ClientOptions> = {}) {
  const client = new MetricsClient({ url, flushIntervalMs: 50, maxRetryWaitMs: 20, ...options });
  const stored: Metric[] = [];
  const refused: RefusedRow[] = [];
  const dropped: { rows: readonly Metric[]; reason: DropReason }[] = [];
  const retries: (number | string)[] = [];
  client.on('stored', (rows) => stored.push(...rows));
  client.on('refused', (rows) => refused.push(...rows));
  client.on('dropped', (rows, reason) => dropped.push({ rows, reason }));
  client.on('retry', (retry) => retries.push(retry.status));
  return { client, stored, refused, dropped, retries };
}

it('sends gzip NDJSON batches of flushAt rows, each row with a UUIDv7 event_id (its own kept), and reports them stored', async () => {
  const { client, stored } = recorded({ flushAt: 4, key: 'k1' });
  for (let n = 1; n <= 10; n++)
    expect(client.track(n === 3 ? { ...metric(n), event_id: 'mine' } : metric(n))).toBe(true);
  await client.flush();
  // Two requests go at once: they may arrive, and be answered, in either order.
  const byFirstRow = [...requests].sort((a, b) => Number(a.lines[0]?.talked_time) - Number(b.lines[0]?.talked_time));
  expect(byFirstRow.map((r) => r.lines.length)).toEqual([4, 4, 2]);
  expect(requests[0]?.headers).toMatchObject({
    'content-type': 'application/x-ndjson',
    'content-encoding': 'gzip',
    authorization: 'Bearer k1',
  });
  const sent = byFirstRow.flatMap((r) => r.lines);
  expect(sent.map((line) => line.talked_time)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  expect(sent[2]?.event_id).toBe('mine');
  for (const line of sent.filter((_, i) => i !== 2)) expect(line.event_id).toMatch(/^[0-9a-f-]{14}7/);
  expect(stored.map((row) => row.talked_time).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  expect(await client.close()).toEqual({ tracked: 10, stored: 10, refused: 0, dropped: 0 });
});

it('sends what is queued after flushIntervalMs without flush()', async () => {
  const { client, stored } = recorded({ flushAt: 1000, flushIntervalMs: 30 });
  client.track(metric(1));
  client.track(metric(2));
  const started = Date.now();
  while (stored.length < 2 && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(stored).toHaveLength(2);
  expect(requests).toHaveLength(1);
  await client.close();
});

it('reports refused lines with their reasons, never sends them again, and the others as stored', async () => {
  script = ({ lines }) => ({
    status: 200,
    body: {
      accepted: lines.length - 2,
      rejected: 2,
      errors: [
        { line: 2, error: 'validation_failed', details: [{ path: '/talked_time', message: 'must be >= 0' }] },
        { line: 4, error: 'unknown_reference', details: [] },
      ],
    },
  });
  const { client, stored, refused, retries } = recorded({ flushAt: 5 });
  for (let n = 1; n <= 5; n++) client.track(metric(n));
  await client.close();
  expect(requests).toHaveLength(1);
  expect(retries).toEqual([]);
  expect(stored.map((row) => row.talked_time)).toEqual([1, 3, 5]);
  expect(refused.map(({ metric: row, error, details }) => ({ n: row.talked_time, error, details }))).toEqual([
    { n: 2, error: 'validation_failed', details: [{ path: '/talked_time', message: 'must be >= 0' }] },
    { n: 4, error: 'unknown_reference', details: [] },
  ]);
});

it('after a partial 429 sends exactly the rows from resend_from_line on, after Retry-After', async () => {
  script = ({ lines }, index) =>
    index === 0
      ? {
          status: 429,
          headers: { 'retry-after': '0' },
          body: {
            error: 'overloaded',
            message: 'busy',
            details: [],
            accepted: 2,
            rejected: 1,
            errors: [{ line: 1, error: 'validation_failed', details: [] }],
            pending: 0,
            resend_from_line: 4,
          },
        }
      : { status: 200, body: { accepted: lines.length, rejected: 0, errors: [] } };
  const { client, stored, refused, retries } = recorded({ flushAt: 6 });
  for (let n = 1; n <= 6; n++) client.track(metric(n));
  await client.close();
  expect(requests.map((r) => r.lines.map((line) => line.talked_time))).toEqual([
    [1, 2, 3, 4, 5, 6],
    [4, 5, 6],
  ]);
  expect(requests[1]?.lines.map((line) => line.event_id)).toEqual(requests[0]?.lines.slice(3).map((l) => l.event_id));
  expect(retries).toEqual([429]);
  expect(stored.map((row) => row.talked_time)).toEqual([2, 3, 4, 5, 6]);
  expect(refused.map((row) => row.metric.talked_time)).toEqual([1]);
});

it('drops a batch the gateway refuses whole (401) without retrying, and one still 503 after its retries', async () => {
  script = () => ({ status: 401, body: { error: 'unauthorized', message: 'no key', details: [] } });
  const first = recorded({ flushAt: 3, retries: 2 });
  for (let n = 1; n <= 3; n++) first.client.track(metric(n));
  await first.client.close();
  expect(requests).toHaveLength(1);
  expect(first.dropped.map(({ rows, reason }) => ({ rows: rows.length, reason }))).toEqual([
    { rows: 3, reason: 'request_refused' },
  ]);

  requests.length = 0;
  script = () => ({
    status: 503,
    headers: { 'retry-after': '0' },
    body: { error: 'unavailable', message: '', details: [] },
  });
  const second = recorded({ flushAt: 3, retries: 2 });
  for (let n = 1; n <= 3; n++) second.client.track(metric(n));
  await second.client.close();
  expect(requests).toHaveLength(3);
  expect(second.retries).toEqual([503, 503]);
  expect(second.dropped.map(({ rows, reason }) => ({ rows: rows.length, reason }))).toEqual([
    { rows: 3, reason: 'retries_exhausted' },
  ]);
});

it('holds at most maxQueueRows (queued and in flight): track() refuses the newest and says so', async () => {
  let release!: () => void;
  hold = new Promise((resolve) => (release = resolve));
  const { client, stored, dropped } = recorded({ flushAt: 2, maxQueueRows: 5, concurrency: 1 });
  const results: boolean[] = [];
  for (let n = 1; n <= 8; n++) {
    results.push(client.track(metric(n)));
    expect(client.pendingRows).toBeLessThanOrEqual(5);
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(results).toEqual([true, true, true, true, true, false, false, false]);
  expect(dropped.map(({ rows, reason }) => ({ n: rows[0]?.talked_time, reason }))).toEqual([
    { n: 6, reason: 'queue_full' },
    { n: 7, reason: 'queue_full' },
    { n: 8, reason: 'queue_full' },
  ]);
  release();
  expect(await client.close()).toEqual({ tracked: 5, stored: 5, refused: 0, dropped: 3 });
  expect(stored.map((row) => row.talked_time)).toEqual([1, 2, 3, 4, 5]);
  expect(client.track(metric(9))).toBe(false); // closed
});

it('close() gives up at its deadline: the rows in flight and queued are dropped, each once', async () => {
  hold = new Promise(() => undefined); // never answers
  const { client, dropped, stored } = recorded({ flushAt: 2, concurrency: 1 });
  for (let n = 1; n <= 5; n++) client.track(metric(n));
  await new Promise((resolve) => setImmediate(resolve));
  const started = Date.now();
  const totals = await client.close({ deadlineMs: 100 });
  expect(Date.now() - started).toBeLessThan(5000); // not the 10 s of the default deadline
  expect(totals).toEqual({ tracked: 5, stored: 0, refused: 0, dropped: 5 });
  expect(stored).toEqual([]);
  expect(dropped.every(({ reason }) => reason === 'close_deadline')).toBe(true);
  expect(dropped.flatMap(({ rows }) => rows.map((row) => row.talked_time)).sort()).toEqual([1, 2, 3, 4, 5]);
});

it('refuses bad options and a bad URL when made, not at the first flush', () => {
  expect(() => new MetricsClient({ url: 'not a url' })).toThrow();
  expect(() => new MetricsClient({ url, flushAt: 0 })).toThrow(/flushAt/);
  expect(() => new MetricsClient({ url, maxQueueRows: 1.5 })).toThrow(/maxQueueRows/);
});

it('sends a metric as it was when tracked, and refuses one JSON cannot encode without queueing it', async () => {
  const { client, stored, dropped } = recorded({ flushAt: 10 });
  const changing = metric(1);
  expect(client.track(changing)).toBe(true);
  (changing as { talked_time: number }).talked_time = 999;
  expect(() => client.track({ ...metric(2), talked_time: 2n } as unknown as Metric)).toThrow(TypeError);
  expect(client.track({} as Metric)).toBe(true);
  expect(client.pendingRows).toBe(2);
  await client.close();
  const sent = requests.flatMap((request) => request.lines);
  expect(sent).toEqual([{ event_id: expect.any(String), ...metric(1) }, { event_id: expect.any(String) }]);
  expect(stored.map((row) => row.talked_time)).toEqual([1, undefined]);
  expect(dropped).toEqual([]);
});

it('takes a 200 that is not a bulk answer (not JSON, or without accepted) as no answer: its rows dropped, not stored', async () => {
  script = (_, index) =>
    index === 0 ? { status: 200, raw: '<html>portal</html>' } : { status: 200, body: { ok: true } };
  const { client, stored, dropped } = recorded({ flushAt: 2, concurrency: 1 });
  for (let n = 1; n <= 4; n++) client.track(metric(n));
  expect(await client.close()).toEqual({ tracked: 4, stored: 0, refused: 0, dropped: 4 });
  expect(stored).toEqual([]);
  expect(dropped.map(({ rows, reason }) => ({ rows: rows.length, reason }))).toEqual([
    { rows: 2, reason: 'request_refused' },
    { rows: 2, reason: 'request_refused' },
  ]);
});

it('sends a batch again after the connection is reset mid-request, and reports it stored once', async () => {
  script = ({ lines }, index) =>
    index === 0
      ? { status: 0, reset: true }
      : { status: 200, body: { accepted: lines.length, rejected: 0, errors: [] } };
  const { client, stored, retries } = recorded({ flushAt: 3 });
  for (let n = 1; n <= 3; n++) client.track(metric(n));
  expect(await client.close()).toEqual({ tracked: 3, stored: 3, refused: 0, dropped: 0 });
  expect(requests).toHaveLength(2);
  expect(retries).toEqual([expect.any(String)]); // undici's code for a socket closed mid-request
  expect(stored.map((row) => row.talked_time)).toEqual([1, 2, 3]);
});

it('reads a bulk answer whose error details are not objects without failing the batch', async () => {
  script = ({ lines }) => ({
    status: 200,
    body: {
      accepted: lines.length - 1,
      rejected: 1,
      errors: [{ line: 1, error: 'validation_failed', details: [null, 'x'] }],
    },
  });
  const { client, stored, refused } = recorded({ flushAt: 2 });
  for (let n = 1; n <= 2; n++) client.track(metric(n));
  expect(await client.close()).toEqual({ tracked: 2, stored: 1, refused: 1, dropped: 0 });
  expect(stored.map((row) => row.talked_time)).toEqual([2]);
  expect(refused.map(({ error, details }) => ({ error, details }))).toEqual([
    { error: 'validation_failed', details: [{ message: 'null' }, { message: 'x' }] },
  ]);
});

it('track() schedules a send when a batch is full, not once for every row tracked after it', async () => {
  const { client, stored } = recorded({ flushAt: 10, concurrency: 1 });
  const scheduled = jest.spyOn(global, 'setImmediate');
  let calls: number;
  try {
    for (let n = 1; n <= 1000; n++) client.track(metric(n));
    calls = scheduled.mock.calls.length;
  } finally {
    scheduled.mockRestore();
    await client.close();
  }
  expect(calls).toBeLessThanOrEqual(1000 / 10);
  expect(stored).toHaveLength(1000);
});

it('does not read a huge answer whole: past 4 MiB it is no bulk answer, and its rows are dropped', async () => {
  const padding = 'x'.repeat(5 << 20);
  script = ({ lines }) => ({ status: 200, body: { accepted: lines.length, rejected: 0, errors: [], padding } });
  const { client, stored, dropped } = recorded({ flushAt: 2 });
  for (let n = 1; n <= 2; n++) client.track(metric(n));
  expect(await client.close()).toEqual({ tracked: 2, stored: 0, refused: 0, dropped: 2 });
  expect(stored).toEqual([]);
  expect(dropped.map(({ reason }) => reason)).toEqual(['request_refused']);
});

it('gives a new event_id to a metric whose event_id JSON leaves out (a function, a symbol)', async () => {
  const { client } = recorded({ flushAt: 10 });
  client.track({ ...metric(1), event_id: (() => 'x') as unknown as string });
  client.track({ ...metric(2), event_id: Symbol('x') as unknown as string });
  await client.close();
  const sent = requests.flatMap((request) => request.lines);
  expect(sent).toHaveLength(2);
  for (const line of sent) expect(line.event_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
});
