import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** An operating-system account that a command can run as. */
export interface SystemUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
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

export async function findSystemUser(name: string): Promise<SystemUser | undefined> {
  const uid = await runCommand('id', ['-u', name]);
  if (uid.exitCode !== 0) return undefined;
  const gid = await runCommand('id', ['-g', name]);
  return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** The account `name`; created as a system account without a home when it does not exist (needs root). */
export async function ensureSystemUser(name: string): Promise<SystemUser> {
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
export async function userCanUseDirectory(user: SystemUser, dir: string, access: 'enter' | 'write'): Promise<boolean> {
  const test = access === 'write' ? 'test -x "$1" && test -w "$1"' : 'test -x "$1"';
  const result = await runCommand('/bin/sh', ['-c', test, 'sh', dir], { user, cwd: '/' });
  return result.exitCode === 0;
}
