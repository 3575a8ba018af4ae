import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';
import { lockSpoolDir, SPOOL_LOCK_FILE } from '../../src/spool/lock';

// The spool lock is the kernel's lock on an open file: it refuses any other holder whatever its PID
// (two containers on one volume are both PID 1), and it ends with its holder, however that dies.

const BUILT_LOCK = path.join(PROJECT_ROOT, 'dist', 'gateway', 'src', 'spool', 'lock.js');

let dir: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mg-lock-'));
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  }
  await rm(dir, { recursive: true, force: true });
});

/**
 * Another node process that locks `dir` with the built lock.ts and drops the release function, as a
 * careless caller would; resolves once it holds the lock. A garbage collection must not end the lock.
 */
async function lockInChild(): Promise<ChildProcess> {
  if (!existsSync(BUILT_LOCK)) throw new Error(`${BUILT_LOCK} is missing: run "npm run build" first (npm test does)`);
  const script = `require(${JSON.stringify(BUILT_LOCK)}).lockSpoolDir(process.argv[1]).then(
    () => setImmediate(() => { global.gc(); process.stdout.write('locked\\n'); }),
    (error) => { process.stderr.write(error.message); process.exit(3); });
  setInterval(() => {}, 60_000);`;
  const child = spawn(process.execPath, ['--expose-gc', '-e', script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('locked')) resolve();
    });
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code, signal) => reject(new Error(`the child exited (${code ?? signal}): ${output}`)));
  });
  return child;
}

async function kill9(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
}

it('refuses a second gateway in another process while the first lives, and not once it is killed -9', async () => {
  const holder = await lockInChild();
  await expect(lockSpoolDir(dir)).rejects.toThrow(
    new RegExp(`spool directory .* is in use by process ${holder.pid} on host ${os.hostname()}`),
  );
  await kill9(holder);
  const release = await lockSpoolDir(dir);
  await release();
});

it('refuses a second holder with the same PID (two containers on one volume are both PID 1)', async () => {
  const release = await lockSpoolDir(dir);
  await expect(lockSpoolDir(dir)).rejects.toThrow(/is in use by process/);
  await release();
});

it.each([
  ['PID 1', '1'],
  ['the PID of this test runner', String(process.ppid)],
  ['this very process', String(process.pid)],
  ['a live PID in the current format', JSON.stringify({ pid: 1, host: os.hostname(), since: new Date() })],
])('is not blocked by a lock file left naming %s', async (_what, text) => {
  await writeFile(path.join(dir, SPOOL_LOCK_FILE), text);
  const release = await lockSpoolDir(dir);
  await release();
});

it('is released on stop: another process can lock the directory, and releasing twice is harmless', async () => {
  const release = await lockSpoolDir(dir);
  await expect(lockInChild()).rejects.toThrow(new RegExp(`in use by process ${process.pid}`));
  await release();
  await release();
  const child = await lockInChild();
  await kill9(child);
});
