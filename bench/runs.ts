// One run of each contender: start what it needs, measure, check what landed, stop.

import path from 'node:path';
import { Readable } from 'node:stream';
import autocannon from 'autocannon';
import { generateNdjson } from '../seed/generate-metrics';
import { METRICS_TABLE, NO_FK_TABLE, countRows, type BenchDatabase } from './bench-database';
import { runClient } from './client-run';
import { readProcessUsage, runTimedCommand, startService, type Service, type StopResult } from './child-processes';
import type { RunId } from './contenders';
import type { DataFile, Dataset } from './dataset';
import { START_TIMEOUT_MS, STOP_TIMEOUT_MS, startGatewayProcess } from './gateway-process';
import { uploadFile, uploadNdjson, type BulkAnswer } from './http-upload';
import type { BenchOptions } from './options';
import type { BigUploadResult, RunResult } from './report';
import { formatBytes, formatCount, perCpuSecond } from './stats';

export interface RunContext {
  readonly options: BenchOptions;
  readonly db: BenchDatabase;
  /** The database on a Citus coordinator (`--citus`), for bulk-citus. */
  readonly citusDb?: BenchDatabase;
  readonly dataset: Dataset;
  /** Logs of the child processes go here. */
  readonly workDir: string;
  readonly naiveServerScript: string;
  readonly progress: (line: string) => void;
}

/** Slowest load we wait for before calling a bulk or COPY run stuck: 2000 rows/s, at least 2 minutes. */
function loadTimeoutMs(rows: number): number {
  return Math.max(120_000, rows / 2);
}

const NAIVE_URL = /naive-server listening on (http:\/\/\S+)/;

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function startNaiveProcess(context: RunContext, label: string): Promise<Service> {
  return startService({
    name: 'naive server',
    script: context.naiveServerScript,
    env: { ...process.env, DATABASE_URL: context.db.url, PORT: '0', HOST: '127.0.0.1' },
    logFile: path.join(context.workDir, `${label}.naive.log`),
    urlPattern: NAIVE_URL,
    startTimeoutMs: START_TIMEOUT_MS,
    stopTimeoutMs: STOP_TIMEOUT_MS,
  });
}

function stopProblems(service: Service, stopped: StopResult): string[] {
  if (stopped.killed) return [`${service.name} did not stop within ${STOP_TIMEOUT_MS} ms and was killed`];
  if (stopped.exitCode !== 0) {
    return [`${service.name} exited with code ${stopped.exitCode} (signal ${stopped.signal}); log: ${service.logFile}`];
  }
  return [];
}

function answerProblems(answer: BulkAnswer, expectedRows: number, part: string): string[] {
  const problems: string[] = [];
  if (answer.status !== 200) {
    problems.push(`${part}: status ${answer.status}: ${JSON.stringify(answer.errors).slice(0, 300)}`);
  }
  if (answer.accepted !== expectedRows) problems.push(`${part}: accepted ${answer.accepted} of ${expectedRows} rows`);
  if (answer.rejected !== 0) {
    problems.push(`${part}: rejected ${answer.rejected}: ${JSON.stringify(answer.errors).slice(0, 300)}`);
  }
  return problems;
}

/** Bulk NDJSON with wait=true: the whole file from one client, or one part per client in parallel. */
export async function runBulk(
  context: RunContext,
  id: 'bulk-1' | 'bulk-n' | 'bulk-v7' | 'bulk-citus',
  round: number,
): Promise<RunResult> {
  const { dataset } = context;
  const files =
    id === 'bulk-1' || id === 'bulk-citus'
      ? [{ file: dataset.ndjsonFile, rows: dataset.rows, bytes: dataset.ndjsonBytes }]
      : id === 'bulk-v7'
        ? [{ ...requiredV7File(dataset), rows: dataset.rows }]
        : dataset.parts;
  const problems: string[] = [];
  let seconds: number | undefined;
  let cpuBefore: number | undefined;
  let cpuAfter: number | undefined;
  const gateway = await startGatewayProcess(context, `round${round}-${id}`);
  try {
    // The gateway's CPU during the uploads alone: start-up and the exit are not in it.
    cpuBefore = readProcessUsage(gateway.pid).cpuSeconds;
    const started = performance.now();
    const answers = await Promise.all(
      files.map((part) =>
        uploadFile(gateway.url, part.file, part.bytes, { wait: true, timeoutMs: loadTimeoutMs(dataset.rows) }),
      ),
    );
    seconds = (performance.now() - started) / 1000;
    cpuAfter = readProcessUsage(gateway.pid).cpuSeconds;
    answers.forEach((answer, index) =>
      problems.push(...answerProblems(answer, (files[index] as { rows: number }).rows, `upload ${index + 1}`)),
    );
  } catch (error) {
    problems.push(`upload failed: ${errorText(error)}`);
  } finally {
    problems.push(...stopProblems(gateway, await gateway.stop()));
  }
  const usage = gateway.usage();
  const count = await countRows(context.db.pool, METRICS_TABLE);
  if (count !== dataset.rows) problems.push(`${METRICS_TABLE} holds ${count} rows, expected ${dataset.rows}`);
  return {
    id,
    round,
    value: seconds === undefined ? undefined : dataset.rows / seconds,
    seconds,
    count,
    peakRssBytes: usage.peakRssBytes,
    cpuSeconds: usage.cpuSeconds,
    unitsPerCpuSecond: perCpuSecond(count, cpuBefore, cpuAfter),
    problems,
  };
}

function requiredV7File(dataset: Dataset): { file: string; bytes: number } {
  if (dataset.v7File === undefined) throw new Error('the dataset was written without its UUIDv7 file');
  return dataset.v7File;
}

/** One psql \copy of `source` into `table`; the problems it had, none when it copied every row. */
async function psqlCopy(context: RunContext, table: string, source: DataFile, timeoutMs: number): Promise<string[]> {
  if (source.file.includes("'")) throw new Error(`cannot quote ${source.file} for psql`);
  const command = `\\copy ${table} (${context.dataset.copyColumns.join(', ')}) FROM '${source.file}'`;
  try {
    const result = await runTimedCommand('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-d', context.db.url, '-c', command], {
      env: { ...process.env, PGAPPNAME: 'mg-bench-psql' },
      timeoutMs,
    });
    const copied = Number(/COPY (\d+)/.exec(result.stdout)?.[1] ?? NaN);
    if (result.exitCode !== 0) return [`psql exited with ${result.exitCode}: ${result.stderr.trim()}`];
    if (copied !== source.rows) return [`psql reported ${result.stdout.trim()}, expected COPY ${source.rows}`];
    return [];
  } catch (error) {
    // runCommand wraps the spawn error; its cause carries the code.
    const missing = ((error as Error).cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
    return [missing ? 'psql is not on the PATH' : `psql failed: ${errorText(error)}`];
  }
}

/**
 * psql \copy of the COPY text into the table without foreign keys or into user_metrics; for copy-n, one
 * psql per part at once into the table without foreign keys. Timed from the first start to the last exit.
 */
export async function runCopy(
  context: RunContext,
  id: 'copy-nofk' | 'copy-n' | 'copy-fk',
  round: number,
): Promise<RunResult> {
  const { dataset } = context;
  const table = id === 'copy-fk' ? METRICS_TABLE : NO_FK_TABLE;
  const sources: readonly DataFile[] =
    id === 'copy-n' ? dataset.copyParts : [{ file: dataset.copyFile, rows: dataset.rows, bytes: dataset.copyBytes }];
  const started = performance.now();
  const problems = (
    await Promise.all(sources.map((source) => psqlCopy(context, table, source, loadTimeoutMs(dataset.rows))))
  ).flat();
  const seconds = problems.length === 0 ? (performance.now() - started) / 1000 : undefined;
  const count = await countRows(context.db.pool, table);
  if (count !== dataset.rows) problems.push(`${table} holds ${count} rows, expected ${dataset.rows}`);
  return { id, round, value: seconds === undefined ? undefined : dataset.rows / seconds, seconds, count, problems };
}

export interface LoadResult {
  readonly ok: number;
  readonly rps: number;
  readonly seconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly problems: string[];
}

/**
 * autocannon JSON POSTs against `url + path`, cycling through the bodies, with `headers` added (e.g.
 * Authorization); bounded by its duration plus a margin.
 */
export async function loadTest(
  url: string,
  requestPath: string,
  bodies: readonly string[],
  connections: number,
  durationSeconds: number,
  headers: Readonly<Record<string, string>> = {},
): Promise<LoadResult> {
  const requests = bodies.map((body) => ({
    method: 'POST' as const,
    path: requestPath,
    headers: { 'content-type': 'application/json', ...headers },
    body,
  }));
  // autocannon starts its clock before it builds its clients and stops them only at the next 1 s
  // sample after the duration, so its own `duration` overstates the time under load: we time from
  // its 'start' event (clients ready) to its result (clients destroyed).
  let loadStarted: number | undefined;
  let loadEnded = 0;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      { url, connections, duration: durationSeconds, pipelining: 1, timeout: 10, requests },
      (error: unknown, value: autocannon.Result) => {
        loadEnded = performance.now();
        clearTimeout(guard);
        if (error) reject(error instanceof Error ? error : new Error(String(error)));
        else resolve(value);
      },
    );
    instance.once('start', () => (loadStarted = performance.now()));
    const guard = setTimeout(() => instance.stop(), (durationSeconds + 30) * 1000);
  });
  const seconds = loadStarted === undefined ? result.duration : (loadEnded - loadStarted) / 1000;
  const problems: string[] = [];
  if (result.non2xx > 0) {
    problems.push(
      `${result.non2xx} non-2xx answers (4xx: ${result['4xx']}, 5xx: ${result['5xx']}, 3xx: ${result['3xx']})`,
    );
  }
  if (result.errors > 0) problems.push(`${result.errors} connection errors (${result.timeouts} timeouts)`);
  if (result['2xx'] === 0) problems.push('no 2xx answer at all');
  return {
    ok: result['2xx'],
    rps: result['2xx'] / seconds,
    seconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    problems,
  };
}

/** Single POSTs under autocannon: the gateway with wait=true or wait=false, or the naive server. */
export async function runSingle(
  context: RunContext,
  id: 'single-wait' | 'single-nowait' | 'naive',
  round: number,
): Promise<RunResult> {
  const { options, dataset } = context;
  const label = `round${round}-${id}`;
  const service = id === 'naive' ? await startNaiveProcess(context, label) : await startGatewayProcess(context, label);
  const requestPath = id === 'single-nowait' ? '/v1/metrics?wait=false' : '/v1/metrics?wait=true';
  const problems: string[] = [];
  let measured: LoadResult | undefined;
  let unitsPerCpuSecond: number | undefined;
  let answered = 0;
  try {
    if (options.warmupSeconds > 0) {
      const warmup = await loadTest(
        service.url,
        requestPath,
        dataset.singleBodies,
        options.connections,
        options.warmupSeconds,
      );
      answered += warmup.ok;
      problems.push(...warmup.problems.map((problem) => `warm-up: ${problem}`));
    }
    const cpuBefore = readProcessUsage(service.pid).cpuSeconds;
    measured = await loadTest(
      service.url,
      requestPath,
      dataset.singleBodies,
      options.connections,
      options.durationSeconds,
    );
    // Only the measured load: start-up, warm-up and the flush on exit are not in it.
    unitsPerCpuSecond = perCpuSecond(measured.ok, cpuBefore, readProcessUsage(service.pid).cpuSeconds);
    answered += measured.ok;
    problems.push(...measured.problems);
  } catch (error) {
    problems.push(`autocannon failed: ${errorText(error)}`);
  } finally {
    // The gateway flushes what it buffered (wait=false) before it exits.
    problems.push(...stopProblems(service, await service.stop()));
  }
  const usage = service.usage();
  const count = await countRows(context.db.pool, METRICS_TABLE);
  if (count < answered)
    problems.push(`${METRICS_TABLE} holds ${count} rows but ${answered} requests were answered 2xx`);
  return {
    id,
    round,
    value: measured?.rps,
    seconds: measured?.seconds,
    count: measured?.ok,
    p50Ms: measured?.p50Ms,
    p99Ms: measured?.p99Ms,
    peakRssBytes: usage.peakRssBytes,
    cpuSeconds: usage.cpuSeconds,
    unitsPerCpuSecond,
    problems,
  };
}

/** The database a run loads: the one on the Citus coordinator for bulk-citus, else the bench database. */
export function runDatabase(context: RunContext, id: RunId): BenchDatabase {
  if (id !== 'bulk-citus') return context.db;
  if (context.citusDb === undefined) throw new Error('bulk-citus needs --citus');
  return context.citusDb;
}

export function runOne(context: RunContext, id: RunId, round: number): Promise<RunResult> {
  switch (id) {
    case 'bulk-1':
    case 'bulk-n':
    case 'bulk-v7':
      return runBulk(context, id, round);
    case 'copy-nofk':
    case 'copy-n':
    case 'copy-fk':
      return runCopy(context, id, round);
    case 'single-wait':
    case 'single-nowait':
    case 'naive':
      return runSingle(context, id, round);
    case 'client':
      return runClient(context, round);
    case 'bulk-citus':
      return runBulk({ ...context, db: runDatabase(context, id) }, id, round);
  }
}

const BIG_PROGRESS_MS = 5000;

/**
 * One NDJSON body of about `options.bigBytes`, generated while it is sent (no file), through the
 * gateway with wait=true; reports the gateway's peak RSS.
 */
export async function runBigUpload(context: RunContext): Promise<BigUploadResult> {
  const { options, dataset, progress } = context;
  const bytesPerRow = dataset.ndjsonBytes / dataset.rows;
  const rows = Math.ceil(options.bigBytes / bytesPerRow);
  const problems: string[] = [];
  let seconds: number | undefined;
  let accepted: number | undefined;
  let bytesSent = 0;
  // At least 1 MiB/s, at least 10 minutes.
  const timeoutMs = Math.max(600_000, Math.ceil(options.bigBytes / 1024));
  // Node's default request timeout (300 s) would cut an upload slower than ~7 MB/s with a 408; this
  // step measures memory, so the gateway gets our timeout unless the environment sets one.
  const gatewayEnv = process.env.REQUEST_TIMEOUT_MS ? {} : { REQUEST_TIMEOUT_MS: String(timeoutMs) };
  const gateway = await startGatewayProcess(context, 'big', gatewayEnv);
  const started = performance.now();
  const ticker = setInterval(() => {
    const elapsed = (performance.now() - started) / 1000;
    const usage = gateway.usage();
    progress(
      `big upload: ${formatBytes(bytesSent)} of ~${formatBytes(options.bigBytes)} sent in ${elapsed.toFixed(0)} s ` +
        `(~${formatCount(bytesSent / bytesPerRow / elapsed)} rows/s); gateway RSS ${formatBytes(usage.rssBytes)}, ` +
        `peak ${formatBytes(usage.peakRssBytes)}`,
    );
  }, BIG_PROGRESS_MS);
  try {
    const body = Readable.from(generateNdjson({ count: rows, seed: dataset.seed, startMs: dataset.startMs }));
    const answer = await uploadNdjson(gateway.url, body, {
      wait: true,
      timeoutMs,
      onBytes: (sent) => (bytesSent = sent),
    });
    seconds = (performance.now() - started) / 1000;
    accepted = answer.accepted;
    problems.push(...answerProblems(answer, rows, 'upload'));
  } catch (error) {
    problems.push(`upload failed after ${formatBytes(bytesSent)}: ${errorText(error)}`);
  } finally {
    clearInterval(ticker);
    problems.push(...stopProblems(gateway, await gateway.stop()));
  }
  const count = await countRows(context.db.pool, METRICS_TABLE);
  if (count !== rows) problems.push(`${METRICS_TABLE} holds ${count} rows, expected ${rows}`);
  const peakRssBytes = gateway.usage().peakRssBytes;
  const gatewaySettings = Object.entries(gatewayEnv).map(([name, value]) => `${name}=${value}`);
  return { bytes: bytesSent, rows, seconds, accepted, peakRssBytes, gatewaySettings, problems };
}
