import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../gateway/src/config';
import { STEP_NAMES, type StepName } from './contenders';

export interface BenchOptions {
  /** Rows generated once and loaded by every bulk and COPY run. */
  readonly rows: number;
  readonly rounds: number;
  /** Seconds of each measured autocannon run. */
  readonly durationSeconds: number;
  /** Seconds of autocannon load before each measured run, not counted. */
  readonly warmupSeconds: number;
  readonly connections: number;
  /** Clients of the parallel bulk run, each uploading one part of the rows; as many psql in the parallel COPY. */
  readonly bulkClients: number;
  /** Events the `client` step tracks: the dataset's rows, cycled. */
  readonly clientRows: number;
  readonly steps: ReadonlySet<StepName>;
  /** Size of the streamed upload of the `big` step. */
  readonly bigBytes: number;
  readonly seed: number;
  readonly withEventIds: boolean;
  /** LOG_LEVEL of the gateway child process. */
  readonly gatewayLogLevel: string;
  readonly out: string;
  readonly chart: string;
  /** The sustained run of issue 11 (bench/sustained.ts) instead of the rounds. */
  readonly sustained: boolean;
  /** The layouts the sustained run compares, in this order. */
  readonly sustainedLayouts: readonly SustainedLayout[];
  /** PARTITION_INTERVAL of the partitioned layout in the sustained run (as the gateway reads it). */
  readonly sustainedInterval: string;
  /** The same, read as the gateway reads it. */
  readonly sustainedIntervalMs: number;
  /** A database on a Citus coordinator for the `citus` step (`--citus`); migrated and seeded, not dropped. */
  readonly citusUrl?: string;
}

export const SUSTAINED_LAYOUTS = ['partitioned', 'single'] as const;
export type SustainedLayout = (typeof SUSTAINED_LAYOUTS)[number];

export class UsageError extends Error {}

const MAX_BULK_CLIENTS = 64;

export const DEFAULTS = {
  rows: 400_000,
  sustainedRows: 20_000_000,
  rounds: 3,
  durationSeconds: 10,
  warmupSeconds: 2,
  connections: 64,
  // Issue 15 compares as many parallel uploads as cores with as many parallel COPYs.
  bulkClients: Math.min(MAX_BULK_CLIENTS, os.availableParallelism()),
  clientRows: 1_000_000,
  bigMegabytes: 2048,
  seed: 1,
  gatewayLogLevel: 'warn',
} as const;

export const USAGE = `Usage: npm run bench -- [options]

Runs, in alternating rounds on one fresh database and one set of generated rows: bulk NDJSON through
the gateway (from one client, from --clients at once, with UUIDv7 event_ids), psql \\copy into a table
with the keys of user_metrics but no foreign keys (whole, and in --clients parts at once) and into
user_metrics, single POSTs through the gateway (autocannon), a naive INSERT-per-request server, and the
client library (track() per event, the library sending bulk requests). Gives the gateway's CPU per row
or request during each measured run. Writes a Markdown report and an SVG chart of the ratios.
Database: BENCH_DATABASE_URL, else DATABASE_URL's server, else an embedded PostgreSQL in a temporary
folder; a database mg_bench_<random> is created and dropped.

  --rows N          rows per bulk and COPY run (default ${DEFAULTS.rows})
  --rounds N        rounds; the report gives medians (default ${DEFAULTS.rounds})
  --duration S      seconds of each autocannon run (default ${DEFAULTS.durationSeconds})
  --warmup S        seconds of load before each autocannon run, not measured (default ${DEFAULTS.warmupSeconds}; 0: none)
  --connections N   autocannon connections (default ${DEFAULTS.connections})
  --clients N       clients of the parallel bulk run, and psql processes of the parallel COPY, each with
                    one part of the rows (default: the number of cores, ${DEFAULTS.bulkClients} here)
  --client-rows N   events the client step tracks, one track() each, the rows above cycled (default ${DEFAULTS.clientRows})
  --only LIST       comma-separated steps among ${STEP_NAMES.join(', ')} (default: all but big)
  --big             also stream a generated NDJSON body (no file) through the gateway and report its peak RSS
  --big-mb N        size of that body in MiB (default ${DEFAULTS.bigMegabytes})
  --seed N          seed of the generated rows (default ${DEFAULTS.seed})
  --event-ids       give every generated row an event_id (the idempotent insert path)
  --sustained       instead: --rows (default ${DEFAULTS.sustainedRows}) of a fleet through the bulk endpoint, the rate of every
                    million rows for the partitioned layout and the single table side by side (bench/sustained.ts)
  --layouts LIST    the sustained run's layouts among partitioned, single (default both, side by side)
  --interval I      PARTITION_INTERVAL of the sustained run's partitioned layout (default 1d)
  --citus URL       also upload the bulk file through a gateway on URL, a database on a Citus coordinator
                    (citus extension, workers added; migrated, seeded and emptied, not dropped), beside bulk-1
  --log-level L     LOG_LEVEL of the gateway under test (default ${DEFAULTS.gatewayLogLevel}: no per-request log lines)
  --out FILE        the report (default bench/RESULTS.md)
  --chart FILE      the chart (default: results.svg beside the default report, else FILE of --out with .svg)
  -h, --help        show this help

Environment variables of the gateway (BATCH_MAX_ROWS, FLUSH_CONCURRENCY, ...) pass through to it and are
listed in the report.
`;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Parses the command line; `defaultOut` is the report path when --out is not given. */
export function parseBenchArgs(argv: readonly string[], defaultOut: string): BenchOptions | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        rows: { type: 'string' },
        rounds: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        connections: { type: 'string' },
        clients: { type: 'string' },
        'client-rows': { type: 'string' },
        only: { type: 'string' },
        big: { type: 'boolean', default: false },
        'big-mb': { type: 'string' },
        seed: { type: 'string' },
        'event-ids': { type: 'boolean', default: false },
        sustained: { type: 'boolean', default: false },
        layouts: { type: 'string' },
        interval: { type: 'string' },
        'log-level': { type: 'string' },
        citus: { type: 'string' },
        out: { type: 'string' },
        chart: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return 'help';

  const steps =
    values.only === undefined
      ? new Set<StepName>(['bulk', 'copy', 'single', 'naive', 'client'])
      : parseSteps(values.only);
  if (values.big) steps.add('big');
  if (values.sustained && values.citus !== undefined) throw new UsageError('--citus does not go with --sustained');
  if (!values.sustained) {
    for (const name of ['layouts', 'interval'] as const) {
      if (values[name] !== undefined) throw new UsageError(`--${name} goes with --sustained`);
    }
  }
  if (values.citus !== undefined) {
    checkCitusUrl(values.citus);
    steps.add('citus').add('bulk');
  } else if (steps.has('citus')) {
    throw new UsageError('--only citus needs --citus URL');
  }

  const logLevel = values['log-level'] ?? DEFAULTS.gatewayLogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  if (values.out === '') throw new UsageError('--out must name a file');
  if (values.chart === '') throw new UsageError('--chart must name a file');
  const out = path.resolve(values.out ?? defaultOut);

  const bulkClients = integer('--clients', values.clients, DEFAULTS.bulkClients, 1, MAX_BULK_CLIENTS);
  const rows = integer(
    '--rows',
    values.rows,
    values.sustained ? DEFAULTS.sustainedRows : DEFAULTS.rows,
    1,
    1_000_000_000,
  );
  if (rows < bulkClients) throw new UsageError(`--rows (${rows}) must be at least --clients (${bulkClients})`);
  const sustainedInterval = values.interval ?? '1d';
  return {
    rows,
    rounds: integer('--rounds', values.rounds, DEFAULTS.rounds, 1, 100),
    durationSeconds: integer('--duration', values.duration, DEFAULTS.durationSeconds, 1, 3600),
    warmupSeconds: integer('--warmup', values.warmup, DEFAULTS.warmupSeconds, 0, 600),
    connections: integer('--connections', values.connections, DEFAULTS.connections, 1, 10_000),
    bulkClients,
    clientRows: integer('--client-rows', values['client-rows'], DEFAULTS.clientRows, 1, 100_000_000),
    steps,
    bigBytes: integer('--big-mb', values['big-mb'], DEFAULTS.bigMegabytes, 1, 1_000_000) * 1024 * 1024,
    seed: integer('--seed', values.seed, DEFAULTS.seed, -(2 ** 31), 2 ** 31 - 1),
    withEventIds: values['event-ids'],
    gatewayLogLevel: logLevel,
    out,
    chart: path.resolve(values.chart ?? defaultChartPath(out, path.resolve(defaultOut))),
    sustained: values.sustained,
    sustainedLayouts: parseLayouts(values.layouts ?? SUSTAINED_LAYOUTS.join(',')),
    sustainedInterval,
    sustainedIntervalMs: partitionIntervalMs(sustainedInterval),
    ...(values.citus === undefined ? {} : { citusUrl: values.citus }),
  };
}

/** results.svg beside the default report; for another report, its own name with .svg. */
export function defaultChartPath(out: string, defaultOut: string): string {
  if (out === defaultOut) return path.join(path.dirname(out), 'results.svg');
  const extension = path.extname(out);
  return `${extension === '' ? out : out.slice(0, -extension.length)}.svg`;
}

function parseSteps(list: string): Set<StepName> {
  const names = list
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  if (names.length === 0) throw new UsageError('--only needs at least one step');
  const steps = new Set<StepName>();
  for (const name of names) {
    if (!(STEP_NAMES as readonly string[]).includes(name)) {
      throw new UsageError(`--only: unknown step ${JSON.stringify(name)}; choose among ${STEP_NAMES.join(', ')}`);
    }
    steps.add(name as StepName);
  }
  return steps;
}

/** The only argument of a one-off script (partition-move, index-cost): a row count, `fallback` without it. */
export function parseRowsArgument(args: readonly string[], fallback: number): number {
  if (args.length > 1) throw new UsageError('takes one argument at most: the row count');
  return integer('rows', args[0], fallback, 1, 1_000_000_000);
}

/** Runs a one-off script's `main` with its row count; a bad one exits 2 with a message, a failure 1. */
export function runWithRowCount(script: string, fallback: number, main: (rows: number) => Promise<void>): void {
  let rows: number;
  try {
    rows = parseRowsArgument(process.argv.slice(2), fallback);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${script}: ${error.message}\n`);
    process.exit(2);
  }
  main(rows).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}

function integer(name: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  // Digits only (underscores as separators): "1e5" or "10k" would be guesses.
  const value = /^-?\d[\d_]*$/.test(text) ? Number(text.replaceAll('_', '')) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** A postgres:// URL that names its database (the bench migrates and empties that database). */
function checkCitusUrl(text: string): void {
  const url = URL.parse(text);
  if (url === null || !['postgres:', 'postgresql:'].includes(url.protocol)) {
    throw new UsageError(`--citus must be a postgres:// URL, got ${JSON.stringify(text)}`);
  }
  if (url.pathname.length <= 1) throw new UsageError('--citus: the URL must name the database (postgres://host/NAME)');
}

/** `--interval` as the gateway reads PARTITION_INTERVAL, so that a value it would refuse stops the run here. */
function partitionIntervalMs(text: string): number {
  if (text.trim() === '') throw new UsageError('--interval needs a duration such as 6h or 1d');
  try {
    return loadConfig({ PARTITION_INTERVAL: text }).partitionIntervalMs;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new UsageError(`--interval: ${error.problems.join('; ')}`);
  }
}

function parseLayouts(list: string): SustainedLayout[] {
  const names = list.split(',').map((name) => name.trim());
  const unknown = names.filter((name) => !(SUSTAINED_LAYOUTS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new UsageError(`--layouts takes ${SUSTAINED_LAYOUTS.join(', ')}, got ${JSON.stringify(list)}`);
  }
  return SUSTAINED_LAYOUTS.filter((name) => names.includes(name));
}
