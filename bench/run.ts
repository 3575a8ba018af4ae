// `npm run bench`: the gateway against psql \copy and a naive server, in rounds, on one database and
// one set of rows; writes the Markdown report and the SVG chart. See `npm run bench -- --help`.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CONFIG_VARIABLE_NAMES } from '../gateway/src/config';
import type { DevServer } from '../gateway/src/db/dev-postgres';
import { createLogger } from '../gateway/src/logger';
import { PROJECT_ROOT } from '../gateway/src/paths';
import {
  createBenchDatabase,
  describeCitus,
  openCitusBenchDatabase,
  describeServer,
  openBenchServer,
  resetTables,
  type BenchDatabase,
} from './bench-database';
import { renderRatioChart } from './chart';
import { killAllChildren } from './child-processes';
import { RUN_SPECS, runLabel, selectedRuns, unitNoun, type RunId } from './contenders';
import { DATASET_START_MS, writeDataset, type Dataset } from './dataset';
import { USAGE, UsageError, parseBenchArgs, type BenchOptions } from './options';
import { chartBars, computeRatios, renderReport, summarize, type BigUploadResult, type RunResult } from './report';
import { runBigUpload, runDatabase, runOne, type RunContext } from './runs';
import { ROUNDS_MARKS, splicePart } from './results-file';
import { runSustained } from './sustained';
import {
  cpuMicrosEach,
  formatBytes,
  formatCount,
  formatMicros,
  formatRatio,
  formatSeconds,
  median,
  rotate,
} from './stats';

// Distinct bodies of single POSTs; autocannon builds each once per connection before it starts.
const SINGLE_BODIES = 256;
const DEFAULT_OUT = path.join(PROJECT_ROOT, 'bench', 'RESULTS.md');
// Ignored by git; logs of failed runs are kept here.
const LOGS_DIR = path.join(PROJECT_ROOT, 'bench', 'out', 'logs');
// Variables the benchmark sets for the gateway itself; the others pass through and are reported.
const SET_BY_BENCH = new Set([
  'DATABASE_URL',
  'DATA_DIR',
  'PORT',
  'HOST',
  'LOG_LEVEL',
  'MIGRATE_ON_START',
  'SEED_DEMO_DATA',
]);

function progress(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

/** Everything that must be undone however the run ends. */
export interface Resources {
  server?: DevServer;
  db?: BenchDatabase;
  /** The sustained run's second database. */
  otherDb?: BenchDatabase;
  /** The database on a Citus coordinator (`--citus`); its pool is ended, the database kept. */
  citusDb?: BenchDatabase;
  workDir?: string;
}

async function release(resources: Resources): Promise<void> {
  killAllChildren('SIGTERM');
  const steps: [string, (() => Promise<void>) | undefined][] = [
    ['drop the bench database', resources.db?.drop],
    ['drop the other bench database', resources.otherDb?.drop],
    ['close the Citus database', resources.citusDb?.drop],
    ['stop the embedded PostgreSQL', resources.server?.stop],
    [
      'remove the work folder',
      resources.workDir ? () => rm(resources.workDir as string, { recursive: true, force: true }) : undefined,
    ],
  ];
  for (const [what, step] of steps) {
    if (step === undefined) continue;
    try {
      await step();
    } catch (error) {
      progress(`could not ${what}: ${(error as Error).message}`);
    }
  }
}

/** Copies the child processes' logs out of the work folder (which is removed) when something went wrong. */
async function keepLogs(workDir: string | undefined): Promise<void> {
  if (workDir === undefined) return;
  try {
    const logs = (await readdir(workDir)).filter((name) => name.endsWith('.log'));
    if (logs.length === 0) return;
    const target = path.join(LOGS_DIR, new Date().toISOString().replace(/[:.]/g, '-'));
    await mkdir(target, { recursive: true });
    await Promise.all(logs.map((name) => copyFile(path.join(workDir, name), path.join(target, name))));
    progress(`logs of the gateway and naive-server runs kept in ${path.relative(process.cwd(), target)}`);
  } catch (error) {
    progress(`could not keep the logs: ${(error as Error).message}`);
  }
}

function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/** The gateway's configuration variables that are set in this environment (they reach the gateway). */
function gatewayOverrides(env: NodeJS.ProcessEnv): [string, string][] {
  return CONFIG_VARIABLE_NAMES.filter(
    (name) => !SET_BY_BENCH.has(name) && env[name] !== undefined && env[name] !== '',
  ).map((name) => [name, env[name] as string]);
}

function commandLine(argv: readonly string[], overrides: readonly [string, string][]): string {
  const prefix = overrides.map(([name, value]) => `${name}=${shellQuote(value)} `).join('');
  return `${prefix}npm run bench${argv.length > 0 ? ` -- ${argv.map(shellQuote).join(' ')}` : ''}`;
}

function gitRevision(): string {
  try {
    const run = (args: string[]) =>
      execFileSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = run(['rev-parse', '--short', 'HEAD']);
    // The run's own outputs (RESULTS.md, the charts) are written before this is read: they do not count.
    const sources = ['gateway', 'migrations', 'seed', 'bench', ':(exclude)bench/*.md', ':(exclude)bench/*.svg'];
    const dirty = run(['status', '--porcelain', '--', ...sources]) !== '';
    return `${commit}${dirty ? ' plus uncommitted changes' : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

function autocannonVersion(): string {
  try {
    const manifest = readFileSync(require.resolve('autocannon/package.json'), 'utf8');
    return (JSON.parse(manifest) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function describeRun(options: BenchOptions, id: RunId, dataset: Dataset): string {
  const spec = RUN_SPECS[id];
  const label = runLabel(id, options.bulkClients);
  if (id === 'client') return `${label}: ${formatCount(options.clientRows)} events`;
  if (spec.unit === 'rows/s') return `${label}: ${formatCount(dataset.rows)} rows`;
  const warmup = options.warmupSeconds > 0 ? ` after ${options.warmupSeconds} s warm-up` : '';
  return `${label}: ${options.connections} connections for ${options.durationSeconds} s${warmup}`;
}

function describeResult(result: RunResult, all: readonly RunResult[]): string {
  const unit = RUN_SPECS[result.id].unit;
  const values = all
    .filter((other) => other.id === result.id && other.value !== undefined)
    .map((other) => other.value as number);
  const latency =
    result.p99Ms === undefined
      ? result.trackP99Us === undefined
        ? ''
        : `, track() p50 ${result.trackP50Us?.toFixed(1)} µs, p99 ${result.trackP99Us.toFixed(1)} µs, ` +
          `client CPU ${formatSeconds(result.clientCpuSeconds)} s, gateway CPU ${formatSeconds(result.cpuSeconds)} s over its life`
      : `, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms`;
  const rss = result.peakRssBytes === undefined ? '' : `, server peak RSS ${formatBytes(result.peakRssBytes)}`;
  const cpu =
    result.unitsPerCpuSecond === undefined
      ? ''
      : `, server CPU ${formatMicros(cpuMicrosEach(result.unitsPerCpuSecond))} µs per ${unitNoun(result.id)}`;
  const problems = result.problems.length === 0 ? '' : `; PROBLEMS: ${result.problems.join('; ')}`;
  return (
    `${formatCount(result.value)} ${unit} in ${formatSeconds(result.seconds)} s${latency}${cpu}${rss}` +
    ` (median so far ${formatCount(median(values))} ${unit})${problems}`
  );
}

async function bench(argv: readonly string[], options: BenchOptions, resources: Resources): Promise<boolean> {
  const startedAt = new Date();
  const started = performance.now();
  const loadAtStart = os.loadavg()[0] ?? NaN;
  const logger = createLogger('warn');
  const overrides = gatewayOverrides(process.env);
  const runs = selectedRuns(options.steps);

  progress(
    `steps: ${[...options.steps].join(', ')}` +
      (runs.length > 0 ? `; ${options.rounds} round(s) of ${runs.length} run(s)` : ''),
  );
  resources.workDir = await mkdtemp(path.join(os.tmpdir(), 'mg-bench-'));
  resources.server = await openBenchServer(process.env, logger);
  progress(`PostgreSQL: ${resources.server.source}`);
  resources.db = await createBenchDatabase(resources.server, logger);
  const db = resources.db;
  const server = await describeServer(db.pool);
  progress(`database ${db.name}: migrated (${db.migrations.join(', ')}), seeded, ${'user_metrics_nofk'} created`);
  if (options.citusUrl !== undefined) {
    resources.citusDb = await openCitusBenchDatabase(options.citusUrl, logger);
    progress(`Citus coordinator database ${resources.citusDb.name}: migrated, seeded (--citus)`);
  }

  const generating = performance.now();
  const dataset = await writeDataset({
    dir: resources.workDir,
    rows: options.rows,
    seed: options.seed,
    startMs: DATASET_START_MS,
    parts: options.bulkClients,
    singleBodies: SINGLE_BODIES,
    withEventIds: options.withEventIds,
    receivedAt: startedAt.toISOString(),
    withV7File: runs.includes('bulk-v7'),
  });
  progress(
    `generated ${formatCount(dataset.rows)} rows in ${formatSeconds((performance.now() - generating) / 1000)} s: ` +
      `NDJSON ${formatBytes(dataset.ndjsonBytes)}, COPY text ${formatBytes(dataset.copyBytes)}`,
  );

  const context: RunContext = {
    options,
    db,
    ...(resources.citusDb === undefined ? {} : { citusDb: resources.citusDb }),
    dataset,
    workDir: resources.workDir,
    naiveServerScript: path.join(__dirname, 'naive-server.js'),
    progress,
  };

  const results: RunResult[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    // Each round starts with another contender, so none is always first (or always after the same one).
    for (const id of rotate(runs, round - 1)) {
      progress(`round ${round}/${options.rounds} · ${describeRun(options, id, dataset)}`);
      await resetTables(runDatabase(context, id).pool);
      let result: RunResult;
      try {
        result = await runOne(context, id, round);
      } catch (error) {
        result = { id, round, problems: [`run failed: ${(error as Error).message}`] };
      }
      results.push(result);
      progress(`round ${round}/${options.rounds} · ${id}: ${describeResult(result, results)}`);
    }
  }

  let big: BigUploadResult | undefined;
  if (options.steps.has('big')) {
    progress(`big upload: ~${formatBytes(options.bigBytes)} of generated NDJSON streamed through the gateway`);
    await resetTables(db.pool);
    try {
      big = await runBigUpload(context);
    } catch (error) {
      big = { bytes: 0, rows: 0, problems: [`run failed: ${(error as Error).message}`] };
    }
    progress(
      `big upload: ${formatCount(big.rows)} rows, ${formatBytes(big.bytes)} in ${formatSeconds(big.seconds)} s, ` +
        `gateway peak RSS ${formatBytes(big.peakRssBytes)}${big.problems.length > 0 ? `; PROBLEMS: ${big.problems.join('; ')}` : ''}`,
    );
    await resetTables(db.pool);
  }

  const summaries = summarize(results, runs);
  const ratios = computeRatios(summaries, options.bulkClients);
  for (const ratio of ratios) progress(`ratio ${ratio.label}: ${formatRatio(ratio.value)}`);

  await mkdir(path.dirname(options.chart), { recursive: true });
  await mkdir(path.dirname(options.out), { recursive: true });
  await writeFile(
    options.chart,
    renderRatioChart({
      title: 'metrics-gateway: ratios of throughput',
      subtitle:
        `${startedAt.toISOString().slice(0, 10)} · ${formatCount(options.rows)} rows per bulk run · ` +
        `${options.connections} connections · medians of ${options.rounds} round(s) · ${os.availableParallelism()} CPUs`,
      bars: chartBars(ratios),
    }),
  );

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const setup: [string, string][] = [
    [
      'machine',
      `${os.availableParallelism()} CPUs (${cpu}), ${formatBytes(os.totalmem())} memory, ${os.type()} ${os.release()}`,
    ],
    ['load average (1 min) at start / end', `${loadAtStart.toFixed(2)} / ${(os.loadavg()[0] ?? NaN).toFixed(2)}`],
    ['Node.js', process.version],
    ['PostgreSQL', `${server.version}, ${resources.server.source}`],
    ['PostgreSQL settings', server.settings],
    ['migrations', db.migrations.join(', ')],
    ...(resources.citusDb === undefined
      ? []
      : [
          [
            'Citus (--citus, bulk-citus)',
            `${await describeCitus(resources.citusDb.pool)}; on one machine all nodes share its cores: ` +
              'the ratio measures the overhead of the coordinator and two-phase commit, not scale-out ' +
              '(docs/operations.md, "Citus")',
          ] as [string, string],
        ]),
    ['gateway', `${gitRevision()}; LOG_LEVEL=${options.gatewayLogLevel}`],
    [
      'gateway environment',
      overrides.length === 0 ? 'defaults' : overrides.map(([name, value]) => `${name}=${value}`).join(', '),
    ],
    [
      'rows',
      `${formatCount(dataset.rows)} generated with seed ${dataset.seed} ` +
        `(NDJSON ${formatBytes(dataset.ndjsonBytes)}, COPY text ${formatBytes(dataset.copyBytes)}), ` +
        `${dataset.withEventIds ? 'each with an event_id' : 'no event_id'}`,
    ],
    [
      'single POST load',
      `autocannon ${autocannonVersion()} in the benchmark process, ${options.connections} connections, ` +
        `${options.durationSeconds} s measured after ${options.warmupSeconds} s warm-up, ` +
        `bodies cycling through ${dataset.singleBodies.length} metrics`,
    ],
  ];
  const chartLink = path.relative(path.dirname(options.out), options.chart).split(path.sep).join('/');
  const report = renderReport(
    {
      date: startedAt,
      elapsedSeconds: (performance.now() - started) / 1000,
      command: commandLine(argv, overrides),
      setup,
      rounds: options.rounds,
      bulkClients: options.bulkClients,
      rowsWithEventIds: dataset.withEventIds,
      chartLink,
    },
    summaries,
    ratios,
    results,
    big,
  );
  const existing = await readFile(options.out, 'utf8').catch(() => '');
  await writeFile(options.out, splicePart(existing, ROUNDS_MARKS, report, 'top'));
  progress(`wrote ${path.relative(process.cwd(), options.out)} and ${path.relative(process.cwd(), options.chart)}`);
  progress(`done in ${formatSeconds((performance.now() - started) / 1000)} s`);

  return results.every((result) => result.problems.length === 0) && (big?.problems.length ?? 0) === 0;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let options: BenchOptions | 'help';
  try {
    options = parseBenchArgs(argv, DEFAULT_OUT);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench: ${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return;
  }

  const resources: Resources = {};
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    progress(`${signal}: stopping the child processes and dropping the bench database`);
    void release(resources).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let clean = false;
  try {
    clean = options.sustained ? await runSustained(argv, options, resources) : await bench(argv, options, resources);
  } catch (error) {
    progress(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  } finally {
    if (!clean && !interrupted) await keepLogs(resources.workDir);
    if (!interrupted) await release(resources);
  }
  if (!clean) progress('some runs had problems: see the report');
  process.exitCode = clean ? 0 : 1;
}

void main();
