import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, startTestGateway } from '../helpers/gateway';

// The hardest moment of a write: the COMMIT reaches PostgreSQL and commits, but the connection
// breaks before the answer comes back. A retry that simply writes again stores every row twice.
// The gateway asks PostgreSQL what became of the earlier transaction (txid_status) instead.

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let proxy: net.Server;
/** When set, the connection that next sends this statement is cut, after PostgreSQL has run it. */
let cutAfter: 'COMMIT' | 'COPY' | undefined;
let cuts = 0;

/** A TCP proxy to PostgreSQL that can lose the answer to a COMMIT. */
function startProxy(target: URL): Promise<number> {
  proxy = net.createServer((client) => {
    const server = net.connect(Number(target.port || 5432), target.hostname);
    let cutting = false;
    client.on('data', (data) => {
      server.write(data);
      if (cutAfter !== undefined && data.includes(cutAfter)) {
        // A COMMIT is given time to commit; a COPY is cut at once, mid-transaction.
        const delayMs = cutAfter === 'COMMIT' ? 200 : 0;
        cutAfter = undefined;
        cutting = true;
        // Let PostgreSQL act on it, then break the connection before its answer is relayed.
        setTimeout(() => {
          cuts += 1;
          client.destroy();
          server.destroy();
        }, delayMs);
      }
    });
    server.on('data', (data) => {
      if (!cutting) client.write(data);
    });
    client.on('error', () => server.destroy());
    server.on('error', () => client.destroy());
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  });
  return new Promise((resolve) => proxy.listen(0, '127.0.0.1', () => resolve((proxy.address() as AddressInfo).port)));
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
  const target = new URL(db.url);
  const port = await startProxy(target);
  const viaProxy = new URL(db.url);
  viaProxy.host = `127.0.0.1:${port}`;
  gateway = await startTestGateway({ ...db, url: viaProxy.toString() } as TestDatabase);
});

afterAll(async () => {
  await gateway?.stop();
  await new Promise((resolve) => proxy?.close(resolve));
  await db?.drop();
});

it('stores the rows of a batch once when the answer to its COMMIT is lost', async () => {
  cutAfter = 'COMMIT';
  const response = await postJson(`${gateway.url}/v1/metrics`, {
    user_id: 1,
    talked_time: 4242,
    microphone_used: true,
    speaker_used: true,
    time_recorded: '2026-01-01T00:00:00Z',
  });
  expect(cuts).toBe(1);
  expect(response.status).toBe(201);
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics WHERE talked_time = 4242');
  expect(rows[0].n).toBe(1);
});

it('writes a batch again when the connection broke before its COMMIT', async () => {
  const before = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics');
  const body = Array.from({ length: 300 }, (_, i) =>
    JSON.stringify({ user_id: 1, talked_time: i, microphone_used: true, speaker_used: true, time_recorded: 0 }),
  ).join('\n');
  cutAfter = 'COPY';
  const response = await fetch(`${gateway.url}/v1/metrics/bulk`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body,
  });
  expect(cuts).toBe(2);
  expect(response.status).toBe(200);
  const after = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics');
  expect(after.rows[0].n).toBe(before.rows[0].n + 300);
});
