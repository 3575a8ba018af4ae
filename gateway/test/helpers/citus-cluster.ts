import { execFile, spawn } from 'node:child_process';
import { appendFile, chown, cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { escapeIdentifier } from 'pg';
import { databaseUrl, findFreePort, withClient } from '../../src/db/dev-postgres';
import { isDatabaseBusy } from './database-busy';
import { POSTGRES_ROOT, findCitus } from './find-citus';
import { addRunNote } from './run-notes';

// A Citus cluster for tests: a coordinator and two workers, each an extra PostgreSQL cluster of the
// machine's PostgreSQL (with Citus installed into it: .ci/run runs ../shared/citus/install) on a free
// loopback port, in a temporary directory. One initdb, copied for the other two nodes. As root the
// servers run as the postgres account (initdb and postgres refuse root).

const run = promisify(execFile);
const SERVER_ACCOUNT = 'postgres';
const DATABASE = 'metrics';
const WORKERS = 2;
/** The advisory lock key under which createCitusDatabase adds the nodes. */
const ADD_NODES_LOCK = 0x6d675f63; // 'mg_c'

const BINARIES = findCitus();

/** `describe` when Citus is installed, else `describe.skip` with a SKIPPED line at the end of the run. */
export function describeOnCitus(testFile: string, untested: string): jest.Describe {
  if (BINARIES !== undefined) return describe;
  process.stderr.write(
    `\n  SKIPPED ${testFile}: Citus is not installed (${POSTGRES_ROOT}/*/lib/citus.so; ` +
      `run ../shared/citus/install as root, as .ci/run does); ${untested}.\n\n`,
  );
  addRunNote(`SKIPPED: ${testFile} (no Citus): ${untested}`);
  return describe.skip;
}

export interface CitusCluster {
  /** The coordinator's database, with Citus and both workers added. */
  readonly url: string;
  /** The maintenance database of the coordinator and of each worker, for createCitusDatabase. */
  readonly serverUrl: string;
  readonly workerServerUrls: readonly string[];
  /** Each worker's database, for checks that look at the shards themselves. */
  readonly workerUrls: readonly string[];
  /** Stops worker `index` (0 or 1) at once, as a crash would; startWorker brings it back. */
  stopWorker(index: number): Promise<void>;
  startWorker(index: number): Promise<void>;
  /** Stops every node and removes the directory. */
  stop(): Promise<void>;
}

interface Node {
  readonly dataDir: string;
  readonly port: number;
}

/** Starts a coordinator and two workers (about 3-5 s here). */
export async function startCitusCluster(): Promise<CitusCluster> {
  if (BINARIES === undefined) throw new Error('Citus is not installed (see describeOnCitus)');
  const binaries = BINARIES;
  const asRoot = process.getuid?.() === 0;
  const account = asRoot ? await systemUser(SERVER_ACCOUNT) : undefined;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-citus-'));
  if (account) await chown(dir, account.uid, account.gid);
  const nodes: Node[] = [];
  const as = (command: string, args: string[]) =>
    asRoot
      ? run('runuser', ['-u', SERVER_ACCOUNT, '--', command, ...args], { cwd: dir })
      : run(command, args, { cwd: dir });
  const pgCtl = (node: Node, ...args: string[]) =>
    as(binaries.pgCtl, ['-D', node.dataDir, '-l', `${node.dataDir}.log`, '-w', ...args]);
  const stopNode = (node: Node, mode: string) =>
    pgCtl(node, 'stop', '-m', mode).then(
      () => undefined,
      () => undefined,
    );
  const stopAll = async () => {
    for (const node of nodes) await stopNode(node, 'immediate');
    await rm(dir, { recursive: true, force: true });
  };

  watchOverCluster(dir, binaries.pgCtl, asRoot);
  try {
    const template = path.join(dir, 'template');
    await as(binaries.initdb, ['-D', template, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    await appendFile(
      path.join(template, 'postgresql.conf'),
      [
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        "shared_preload_libraries = 'citus'",
        'max_prepared_transactions = 100',
        // Tests cut the gateway's connections in mid-commit: a worker's transaction left PREPAREd is
        // then settled by the next recovery, and a retried event waits for it. Citus's 1 min default
        // would outlast the tests' timeouts; the outcome (stored once) is the same.
        "citus.recover_2pc_interval = '1s'",
        // Small and quick: test clusters, not servers.
        'shared_buffers = 32MB',
        'fsync = off',
        'synchronous_commit = off',
        'full_page_writes = off',
        '',
      ].join('\n'),
    );
    for (let i = 0; i <= WORKERS; i++) {
      const dataDir = path.join(dir, `n${i}`);
      await cp(template, dataDir, { recursive: true, preserveTimestamps: true });
      if (account) await run('chown', ['-R', `${account.uid}:${account.gid}`, dataDir]);
      const node = { dataDir, port: await findFreePort() };
      await pgCtl(node, 'start', '-o', `-p ${node.port}`);
      nodes.push(node);
    }
    const [coordinator, ...workers] = nodes as [Node, ...Node[]];
    const serverUrl = nodeUrl(coordinator.port, 'postgres');
    const workerServerUrls = workers.map((worker) => nodeUrl(worker.port, 'postgres'));
    await createCitusDatabase(serverUrl, workerServerUrls, DATABASE);
    let stopping: Promise<void> | undefined;
    return {
      url: nodeUrl(coordinator.port, DATABASE),
      serverUrl,
      workerServerUrls,
      workerUrls: workers.map((worker) => nodeUrl(worker.port, DATABASE)),
      stopWorker: (index) => stopNode(workers[index] as Node, 'immediate'),
      startWorker: async (index) => {
        const worker = workers[index] as Node;
        await pgCtl(worker, 'start', '-o', `-p ${worker.port}`);
      },
      stop: () => (stopping ??= stopAll()),
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * A detached shell that stops the nodes under `dir` and removes it once this process is gone. The
 * teardown does that in a normal run; a run killed from outside (Ctrl-C, SIGKILL, a timeout) would
 * otherwise leave three servers running under /tmp.
 */
function watchOverCluster(dir: string, pgCtl: string, asRoot: boolean): void {
  const stop = `${asRoot ? `runuser -u ${SERVER_ACCOUNT} -- ` : ''}"$0" -D "$n" stop -m immediate`;
  const script =
    `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ` +
    `for n in "$1"/n*; do [ -f "$n/postmaster.pid" ] && ${stop}; done; rm -rf "$1"`;
  spawn('sh', ['-c', script, pgCtl, dir], { detached: true, stdio: 'ignore' }).unref();
}

/**
 * A database of that name on every node, with the citus extension, and on the coordinator the nodes
 * added (Citus keeps its metadata per database). Every node must be on 127.0.0.1.
 */
export async function createCitusDatabase(
  serverUrl: string,
  workerServerUrls: readonly string[],
  name: string,
): Promise<string> {
  for (const url of [serverUrl, ...workerServerUrls]) {
    await withClient(url, (client) => client.query(`CREATE DATABASE ${escapeIdentifier(name)}`));
    await withClient(databaseUrl(url, name), (client) => client.query('CREATE EXTENSION citus'));
  }
  // citus_add_node alters the role on each worker (worker_create_or_alter_role), and a node's roles are
  // shared by all its databases: two test files adding nodes at once failed one of them with "tuple
  // concurrently updated". One at a time, under an advisory lock of the coordinator's maintenance
  // database (advisory locks are per database).
  await withClient(serverUrl, async (lock) => {
    await lock.query('SELECT pg_advisory_lock($1)', [ADD_NODES_LOCK]);
    try {
      await withClient(databaseUrl(serverUrl, name), async (client) => {
        await client.query(`SELECT citus_set_coordinator_host('127.0.0.1', $1)`, [Number(new URL(serverUrl).port)]);
        for (const url of workerServerUrls) {
          await client.query(`SELECT citus_add_node('127.0.0.1', $1)`, [Number(new URL(url).port)]);
        }
      });
    } finally {
      await lock.query('SELECT pg_advisory_unlock($1)', [ADD_NODES_LOCK]);
    }
  });
  return databaseUrl(serverUrl, name);
}

/**
 * Drops the database on every node, workers first. A transaction a cut connection left PREPAREd there
 * (not yet settled by Citus's recovery) would keep the database from being dropped: it is rolled back.
 */
export async function dropCitusDatabase(
  serverUrl: string,
  workerServerUrls: readonly string[],
  name: string,
): Promise<void> {
  for (const url of [...workerServerUrls, serverUrl]) {
    // The coordinator's Citus daemon connects to each worker's database every second (2PC recovery)
    // and a commit can still be settling: the DROP can find the database busy (55006) even WITH
    // (FORCE), so it is tried again after a moment.
    for (let attempt = 1; ; attempt++) {
      try {
        await rollBackPrepared(url, name);
        await withClient(url, (client) =>
          client.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`),
        );
        break;
      } catch (error) {
        if (!isDatabaseBusy(error) || attempt === DROP_ATTEMPTS) throw error;
        await sleep(200 * attempt);
      }
    }
  }
}

const DROP_ATTEMPTS = 5;

/** Rolls back what a cut connection left PREPAREd in the database (Citus's recovery may not have yet). */
async function rollBackPrepared(serverUrl: string, name: string): Promise<void> {
  // Looked up from the maintenance database: a session opened on the test database for nothing
  // (Citus starts its daemon there) can make the DROP find it busy.
  const { rows } = await withClient(serverUrl, (client) =>
    client.query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts WHERE database = $1', [name]),
  );
  if (rows.length === 0) return;
  await withClient(databaseUrl(serverUrl, name), async (client) => {
    for (const { gid } of rows) await client.query(`ROLLBACK PREPARED '${gid.replaceAll("'", "''")}'`);
  });
}

function nodeUrl(port: number, database: string): string {
  return `postgres://postgres@127.0.0.1:${port}/${database}`;
}

async function systemUser(name: string): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run('id', ['-u', name]);
  const { stdout: group } = await run('id', ['-g', name]);
  return { uid: Number(stdout.trim()), gid: Number(group.trim()) };
}
