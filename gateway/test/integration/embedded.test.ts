import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/dev-postgres';
import { testLogger } from '../helpers/logger';

async function query<Row>(url: string, sql: string): Promise<Row[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows as Row[];
  } finally {
    await client.end();
  }
}

/** Session id of a process, from /proc/<pid>/stat (the sixth field, after the parenthesized name). */
async function sessionOf(pid: number | 'self'): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[3]);
}

describe('startEmbeddedPostgres', () => {
  let dataDir: string;
  const servers: EmbeddedPostgres[] = [];

  async function start(): Promise<EmbeddedPostgres> {
    const server = await startEmbeddedPostgres({ dataDir, logger: testLogger });
    servers.push(server);
    return server;
  }

  // One directory for the file, since initdb takes seconds: the first start creates the cluster and
  // each test stops what it started.
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'mg-embedded-test-'));
  });

  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.stop()));
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  test('creates a cluster in an empty directory and serves it on loopback', async () => {
    const server = await start();

    expect(server.dataDir).toBe(dataDir);
    expect(server.url).toBe(`postgres://postgres@127.0.0.1:${server.port}/postgres`);
    const [row] = await query<{ version: string }>(server.url, 'SELECT version()');
    expect(row?.version).toMatch(/^PostgreSQL \d+/);
  });

  test('keeps data across a stop and a start on the same directory', async () => {
    const first = await start();
    await query(first.url, 'CREATE TABLE kept (value text); INSERT INTO kept VALUES ($$still here$$)');
    await first.stop();

    const second = await start();
    expect(await query(second.url, 'SELECT value FROM kept')).toEqual([{ value: 'still here' }]);
  }, 90_000); // the first start runs initdb, which takes long on a busy machine

  test('adopts the server already running on the directory instead of starting another', async () => {
    const first = await start();
    const second = await start();

    expect(second.port).toBe(first.port);
    const [row] = await query<{ pid: number }>(second.url, 'SELECT pg_backend_pid() AS pid');
    expect(row?.pid).toEqual(expect.any(Number));

    // Both handles name one server: either stops it, and stopping a stopped server is a no-op.
    await second.stop();
    await expect(query(first.url, 'SELECT 1')).rejects.toThrow(/ECONNREFUSED/);
    await expect(first.stop()).resolves.toBeUndefined();
  });

  test('starts despite a postmaster.pid left behind by a server that died', async () => {
    const first = await start();
    await first.stop();
    servers.splice(servers.indexOf(first), 1); // stopped already: afterEach must not stop the next one twice
    // Above the largest pid Linux hands out (pid_max is at most 2^22), so no process has it.
    const deadPid = 2 ** 22 + 1;
    await writeFile(path.join(dataDir, 'postmaster.pid'), `${deadPid}\n${dataDir}\n0\n1\n\n127.0.0.1\n`);

    const server = await start();
    expect(await query(server.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  test('runs the server in a session of its own, out of reach of a Ctrl-C in our terminal', async () => {
    await start();
    const postmasterPid = Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);

    expect(await sessionOf(postmasterPid)).toBe(postmasterPid);
    expect(await sessionOf('self')).not.toBe(postmasterPid);
  });
});
