// Child processes of the benchmark (gateway, naive server, psql): started, watched, always ended.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, type CommandResult } from '../gateway/src/db/dev-postgres';

// Every live child is here, so that an error, a signal or process exit can end them all.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // 'exit' handlers must be synchronous: a SIGKILL is all that can be done here.
    process.on('exit', () => killAllChildren('SIGKILL'));
  }
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

/** Sends `signal` to every child that is still running. */
export function killAllChildren(signal: NodeJS.Signals): void {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  }
}

/** Memory and CPU of a process from /proc (Linux); undefined fields elsewhere or once it is gone. */
export interface ProcessUsage {
  /** VmHWM: the peak resident set size so far. */
  readonly peakRssBytes?: number;
  readonly rssBytes?: number;
  /** utime + stime. */
  readonly cpuSeconds?: number;
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

export function readProcessUsage(pid: number): ProcessUsage {
  let status: string;
  let stat: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return {};
  }
  const kilobytes = (field: string): number | undefined => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return match === null ? undefined : Number(match[1]) * 1024;
  };
  // The command name in parentheses may hold spaces; fields after it start with the state (field 3).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return {
    peakRssBytes: kilobytes('VmHWM'),
    rssBytes: kilobytes('VmRSS'),
    cpuSeconds: Number.isFinite(utime + stime) ? (utime + stime) / CLOCK_TICKS_PER_SECOND : undefined,
  };
}

export interface ServiceOptions {
  readonly name: string;
  /** A JavaScript file run with this Node.js. */
  readonly script: string;
  readonly env: NodeJS.ProcessEnv;
  /** stdout and stderr of the child go here, so that its logging never waits for us. */
  readonly logFile: string;
  /** Matched against the log; group 1 is the URL the service listens on. */
  readonly urlPattern: RegExp;
  readonly startTimeoutMs: number;
  readonly stopTimeoutMs: number;
}

export interface StopResult {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when SIGTERM did not end it in time and it was killed. */
  readonly killed: boolean;
}

export interface Service {
  readonly name: string;
  readonly url: string;
  readonly pid: number;
  readonly logFile: string;
  /** The latest usage read; VmHWM only grows, so its peak is the peak of the process so far. */
  usage(): ProcessUsage;
  /** SIGTERM, then SIGKILL after stopTimeoutMs; resolves once the process has exited. Idempotent. */
  stop(): Promise<StopResult>;
}

const USAGE_SAMPLE_MS = 200;

/** Starts a Node.js service and resolves once its log shows the URL it listens on. */
export async function startService(options: ServiceOptions): Promise<Service> {
  const log = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [options.script], { env: options.env, stdio: ['ignore', log, log] });
  } finally {
    closeSync(log); // the child holds its own descriptor
  }
  track(child);
  const pid = child.pid;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  if (pid === undefined) {
    await exited;
    throw new Error(`${options.name} did not start`);
  }

  let latest: ProcessUsage = {};
  const sample = (): void => {
    const usage = readProcessUsage(pid);
    if (usage.peakRssBytes !== undefined) latest = usage;
  };
  const sampler = setInterval(sample, USAGE_SAMPLE_MS);
  void exited.then(() => clearInterval(sampler));

  let stopping: Promise<StopResult> | undefined;
  const stop = (): Promise<StopResult> =>
    (stopping ??= (async () => {
      sample();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      let killed = false;
      const timer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, options.stopTimeoutMs);
      const { code, signal } = await exited;
      clearTimeout(timer);
      return { exitCode: code, signal, killed };
    })());

  try {
    const url = await waitForUrl(options, exited);
    sample();
    return { name: options.name, url, pid, logFile: options.logFile, usage: () => latest, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitForUrl(
  options: ServiceOptions,
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
): Promise<string> {
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((value) => (exit = value));
  const deadline = Date.now() + options.startTimeoutMs;
  while (true) {
    const log = await readFile(options.logFile, 'utf8').catch(() => '');
    const url = options.urlPattern.exec(log)?.[1];
    if (url !== undefined) return url;
    if (exit !== undefined) {
      throw new Error(
        `${options.name} exited (code ${exit.code}, signal ${exit.signal}) before listening:\n${tail(log)}`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(`${options.name} did not listen within ${options.startTimeoutMs} ms:\n${tail(log)}`);
    }
    await sleep(50);
  }
}

/** The last lines of a log, for error messages. */
export function tail(text: string, lines = 20): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export interface TimedCommandResult extends CommandResult {
  /** From spawn to exit. */
  readonly seconds: number;
}

/** runCommand (see there: rejects on a timeout or a signal) with its child tracked, and timed. */
export async function runTimedCommand(
  file: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<TimedCommandResult> {
  const started = performance.now();
  const result = await runCommand(file, args, { ...options, onSpawn: track });
  return { ...result, seconds: (performance.now() - started) / 1000 };
}
