import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postJson, startTestGateway } from '../helpers/gateway';
import { metric } from '../helpers/metric';

// The hardest moment of a write: the connection breaks around the COMMIT, and the gateway cannot tell
// from the error alone whether the rows were stored. If the COMMIT ran, a retry that simply writes
// again stores every row twice; if it never reached PostgreSQL, taking the error as success loses the
// rows. The gateway asks PostgreSQL what became of the earlier transaction (txid_status) instead.

/**
 * Where the proxy breaks the next connection that sends `statement`:
 * - `after-answer`: PostgreSQL runs it; the connection is cut when its answer comes back, unrelayed.
 * - `before-server`: the statement is never forwarded; the connection is cut at once.
 * - `at-once`: the statement is forwarded and the connection cut at once, mid-transaction.
 */
interface CutPlan {
  readonly statement: 'COMMIT' | 'COPY';
  readonly when: 'after-answer' | 'before-server' | 'at-once';
}

// A simple-query message: 'Q', its length (4 + text + NUL), the text, NUL. node-postgres sends
// query('COMMIT') this way; matching the whole message cannot mistake a row or another statement for it.
const COMMIT_MESSAGE = Buffer.from('Q\x00\x00\x00\x0bCOMMIT\x00', 'latin1');
const COPY_TEXT = Buffer.from('COPY user_metrics', 'latin1');

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let proxy: net.Server;
let plan: CutPlan | undefined;
/** Connections cut in the current test (reset before each test, so that each runs alone too). */
let cuts = 0;

function matches(data: Buffer, statement: CutPlan['statement']): boolean {
  return data.includes(statement === 'COMMIT' ? COMMIT_MESSAGE : COPY_TEXT);
}

/** A TCP proxy to PostgreSQL that breaks one connection as `plan` says. */
function startProxy(target: URL): Promise<number> {
  proxy = net.createServer((client) => {
    const server = net.connect(Number(target.port || 5432), target.hostname);
    let awaitingAnswer = false;
    let cut = false;
    const cutNow = (): void => {
      if (cut) return;
      cut = true;
      cuts += 1;
      client.destroy();
      server.destroy();
    };
    client.on('data', (data) => {
      if (cut) return;
      const active = plan;
      if (active === undefined || !matches(data, active.statement)) {
        server.write(data);
        return;
      }
      plan = undefined;
      if (active.when === 'before-server') return cutNow();
      server.write(data);
      if (active.when === 'at-once') return cutNow();
      awaitingAnswer = true;
    });
    server.on('data', (data) => {
      if (cut) return;
      // The first bytes back after the statement are its answer (CommandComplete): PostgreSQL has run it.
      if (awaitingAnswer) return cutNow();
      client.write(data);
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
  const port = await startProxy(new URL(db.url));
  const viaProxy = new URL(db.url);
  viaProxy.host = `127.0.0.1:${port}`;
  gateway = await startTestGateway({ ...db, url: viaProxy.toString() } as TestDatabase);
});

beforeEach(() => {
  plan = undefined;
  cuts = 0;
});

afterAll(async () => {
  await gateway?.stop();
  await new Promise((resolve) => proxy?.close(resolve));
  await db?.drop();
});

async function countWithTalkedTime(talkedTime: number): Promise<number> {
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM user_metrics WHERE talked_time = $1', [
    talkedTime,
  ]);
  return rows[0].n;
}

// Both COMMITs fail alike for the gateway. After the first, the rows are committed: writing them again
// stores them twice. After the second, nothing is: taking the error as success loses them.
it.each([
  ['the answer to its COMMIT is lost', 'after-answer', 4242],
  ['the connection breaks before its COMMIT reaches PostgreSQL', 'before-server', 4343],
] as const)('stores the rows of a batch once when %s', async (_case, when, talkedTime) => {
  plan = { statement: 'COMMIT', when };
  const response = await postJson(`${gateway.url}/v1/metrics`, metric({ talked_time: talkedTime }));
  expect(cuts).toBe(1);
  expect(response.status).toBe(201);
  expect(await countWithTalkedTime(talkedTime)).toBe(1);
});

it('writes a batch again when the connection broke during its COPY', async () => {
  const body = Array.from({ length: 300 }, () => JSON.stringify(metric({ talked_time: 4444 }))).join('\n');
  plan = { statement: 'COPY', when: 'at-once' };
  const response = await fetch(`${gateway.url}/v1/metrics/bulk`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body,
  });
  expect(cuts).toBe(1);
  expect(response.status).toBe(200);
  expect(await countWithTalkedTime(4444)).toBe(300);
});
