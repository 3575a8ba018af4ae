import http from 'node:http';
import { connect } from 'node:net';
import { Client } from 'pg';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { startTestGateway } from '../helpers/gateway';
import { until } from '../helpers/until';

// The backstop of REQUEST_DEADLINE_MS (http/request-deadline.ts): a request still undecided at its
// deadline is answered 503, whatever it waits for (here, a commit allowed ACK_TIMEOUT_MS, longer than
// the deadline). Its work goes on: the row is committed later, once, and the late answer is dropped
// without harming the connection. A small body that is still arriving is the client's delay: it gets
// its body deadline's 408, not a 503.

const DEADLINE_MS = 1000;
const BODY_IDLE_TIMEOUT_MS = 3000;
const MARGIN_MS = 2000;

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  gateway = await startTestGateway(db, {
    REQUEST_DEADLINE_MS: String(DEADLINE_MS),
    ACK_TIMEOUT_MS: '5000',
    BODY_IDLE_TIMEOUT_MS: String(BODY_IDLE_TIMEOUT_MS),
  });
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: any;
  reusedSocket: boolean;
  ms: number;
}

function post(agent: http.Agent, talkedTime: number): Promise<Answer> {
  const body = JSON.stringify({
    user_id: 1,
    talked_time: talkedTime,
    microphone_used: true,
    speaker_used: false,
    time_recorded: 0,
  });
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${gateway.url}/v1/metrics`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (part: Buffer) => parts.push(part));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers['retry-after'],
            body: JSON.parse(Buffer.concat(parts).toString('utf8')),
            reusedSocket: req.reusedSocket,
            ms: Date.now() - started,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function stored(talkedTime: number): Promise<number> {
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics WHERE talked_time = $1', [
    talkedTime,
  ]);
  return rows[0].n;
}

it('answers 503 at the deadline while the commit is still awaited; the row is stored once later and the connection lives on', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const locker = new Client({ connectionString: db.url });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE user_metrics IN ACCESS EXCLUSIVE MODE');
    const late = await post(agent, 501);
    expect(late.status).toBe(503);
    expect(late.retryAfter).toBe('5');
    expect(late.body).toEqual({
      error: 'unavailable',
      message: expect.stringContaining(`${DEADLINE_MS} ms`),
      details: [],
    });
    expect(late.ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    expect(late.ms).toBeLessThan(DEADLINE_MS + MARGIN_MS);
    await locker.query('ROLLBACK');
    // The request's work went on after its answer: its row commits now, and its own late answer is dropped.
    await until(async () => (await stored(501)) > 0, 'the row of the late request stored', 5000);
    expect(await stored(501)).toBe(1);
    const next = await post(agent, 502);
    expect(next.status).toBe(201);
    expect(next.reusedSocket).toBe(true);
    expect(await stored(502)).toBe(1);
  } finally {
    agent.destroy();
    await locker.end();
  }
});

it('leaves a small body that is still arriving to its body deadline: 408, not 503', async () => {
  const { hostname, port } = new URL(gateway.url);
  const socket = connect(Number(port), hostname);
  const parts: Buffer[] = [];
  socket.on('data', (part: Buffer) => parts.push(part));
  socket.on('error', () => undefined);
  const started = Date.now();
  socket.write(
    `POST /v1/metrics HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"user_id": 1,`,
  );
  await new Promise((resolve) => socket.once('close', resolve));
  const closedAfterMs = Date.now() - started;
  expect(Buffer.concat(parts).toString('utf8')).toMatch(/^HTTP\/1\.1 408 /);
  expect(closedAfterMs).toBeGreaterThanOrEqual(BODY_IDLE_TIMEOUT_MS - 50);
  expect(closedAfterMs).toBeLessThan(BODY_IDLE_TIMEOUT_MS + MARGIN_MS);
});
