// `npm run bench -- --sustained [--rows N]` (issue 11): does the ingest rate hold as user_metrics grows?
// The same rows of a realistic fleet go through the bulk endpoint of two gateways of this build, one
// request to each in turn: one on the partitioned layout (all migrations, partitions made for the
// simulated times), one on the single table as it was before partitioning (migrations up to 0006).
// The rate of every step (a million rows by default) is reported side by side, with an SVG.

import { copyFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Pool } from 'pg';
import { listMigrationNames } from '../gateway/src/db/migrate';
import { listPartitions, maintainPartitions } from '../gateway/src/db/partitions';
import { createRandom } from '../gateway/src/db/seeded-random';
import { createLogger } from '../gateway/src/logger';
import { MIGRATIONS_DIR } from '../gateway/src/paths';
import {
  METRICS_TABLE,
  countRows,
  createBenchDatabase,
  describeServer,
  openBenchServer,
  recordMigrationsApplied,
  registerUsersAndDevices,
  tableBytes,
  type BenchDatabase,
} from './bench-database';
import type { Service } from './child-processes';
import {
  FLEET_DEVICES,
  FLEET_USERS,
  SIMULATED_MS_PER_MILLION_ROWS,
  fleetBody,
  fleetDeviceId,
  type FleetTimeline,
} from './fleet';
import { uploadNdjson } from './http-upload';
import type { BenchOptions, SustainedLayout } from './options';
import { renderRateChart } from './rate-chart';
import { SUSTAINED_MARKS, splicePart } from './results-file';
import type { Resources } from './run';
import { startGateway } from './gateway-process';
import { formatBytes, formatCount } from './stats';

const DAY_MS = 86_400_000;
/** Rows per request: the same body goes to each layout. */
const REQUEST_ROWS = 50_000;
/** The last migration of the single-table layout. */
const SINGLE_TABLE_UP_TO = '0006';

interface Layout {
  readonly name: SustainedLayout;
  readonly label: string;
  readonly color: string;
  readonly db: BenchDatabase;
  gateway?: Service;
  /** Seconds spent uploading in the current step. */
  stepSeconds: number;
  readonly rates: [number, number][];
}

function progress(line: string): void {
  process.stderr.write(`[sustained ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

/** A migrations folder with the real migrations up to `last`. */
async function migrationsUpTo(last: string, workDir: string): Promise<string> {
  const dir = path.join(workDir, 'migrations');
  await mkdir(dir);
  for (const name of await listMigrationNames()) {
    if (name.slice(0, 4) <= last)
      await copyFile(path.join(MIGRATIONS_DIR, `${name}.sql`), path.join(dir, `${name}.sql`));
  }
  return dir;
}

/**
 * The same gateway build runs on both layouts; on the single table it must not refuse to start for the
 * migrations it lacks (MIGRATE_ON_START=false checks them), so they are recorded as applied there. Its
 * partition maintenance then finds no partitions and logs a warning at each run: harmless.
 */
async function claimLaterMigrations(pool: Pool): Promise<void> {
  const later = (await listMigrationNames()).filter((name) => name.slice(0, 4) > SINGLE_TABLE_UP_TO);
  await recordMigrationsApplied(pool, later);
}

/** Rows per reported step: a million, or a tenth of a smaller run. */
export function sustainedStep(rows: number): number {
  return rows >= 5_000_000 ? 1_000_000 : Math.max(1, Math.ceil(rows / 10));
}

/**
 * Runs the sustained benchmark and writes its report. What it makes is put in `resources`, which
 * the caller releases however the run ends (a signal included).
 */
export async function runSustained(
  argv: readonly string[],
  options: BenchOptions,
  resources: Resources,
): Promise<boolean> {
  const logger = createLogger('warn');
  const started = new Date();
  const workDir = (resources.workDir = await mkdtemp(path.join(os.tmpdir(), 'mg-sustained-')));
  const layouts: Layout[] = [];
  const problems: string[] = [];
  const server = (resources.server = await openBenchServer(process.env, logger));
  const step = sustainedStep(options.rows);
  const spanMs = Math.max(DAY_MS, (options.rows / 1_000_000) * SIMULATED_MS_PER_MILLION_ROWS);
  const now = Date.now();
  const timeline: FleetTimeline = { startMs: now - spanMs, totalRows: options.rows, spanMs };

  progress(`creating the bench database of each layout: ${options.sustainedLayouts.join(', ')}`);
  let partitioned: BenchDatabase | undefined;
  if (options.sustainedLayouts.includes('partitioned')) {
    partitioned = resources.db = await createBenchDatabase(server, logger);
    layouts.push({
      name: 'partitioned',
      label: `partitioned (${options.sustainedInterval})`,
      color: '#2e7d32',
      db: partitioned,
      stepSeconds: 0,
      rates: [],
    });
    // Partitions for every simulated interval, late rows included, as maintenance would have made them
    // ahead of time on a live system.
    const first = timeline.startMs - 2 * DAY_MS;
    await maintainPartitions(
      partitioned.pool,
      {
        intervalMs: options.sustainedIntervalMs,
        premake: Math.ceil((now - first) / options.sustainedIntervalMs) + 2,
        lockTimeoutMs: 10_000,
      },
      first,
    );
  }
  if (options.sustainedLayouts.includes('single')) {
    const single = (resources.otherDb = await createBenchDatabase(
      server,
      logger,
      await migrationsUpTo(SINGLE_TABLE_UP_TO, workDir),
    ));
    await claimLaterMigrations(single.pool);
    layouts.push({
      name: 'single',
      label: 'single table (0006)',
      color: '#c62828',
      db: single,
      stepSeconds: 0,
      rates: [],
    });
  }
  const fleetDevices = Array.from({ length: FLEET_DEVICES }, (_, i) => fleetDeviceId(i + 1));
  for (const layout of layouts) await registerUsersAndDevices(layout.db.pool, FLEET_USERS, fleetDevices);
  const facts = await describeServer(layouts[0]!.db.pool);

  for (const layout of layouts) {
    layout.gateway = await startGateway({
      name: `gateway (${layout.label})`,
      databaseUrl: layout.db.url,
      logLevel: options.gatewayLogLevel,
      workDir,
      label: layout.name,
      env: { PARTITION_INTERVAL: options.sustainedInterval },
    });
  }

  // Not measured: one row per user, so that both gateways have looked every user and device up
  // (and Node.js has warmed up) before the first step, as on a gateway that has been running.
  const warmUp = Buffer.from(
    Array.from({ length: FLEET_USERS }, (_, i) =>
      JSON.stringify({
        user_id: i + 1,
        device_id: fleetDeviceId(1 + ((i + 1) % FLEET_DEVICES)),
        talked_time: 1,
        microphone_used: true,
        speaker_used: true,
        time_recorded: new Date(timeline.startMs).toISOString(),
      }),
    ).join('\n'),
  );
  for (const layout of layouts) {
    const answer = await uploadNdjson(layout.gateway!.url, Readable.from([warmUp]), {
      wait: true,
      timeoutMs: 600_000,
      contentLength: warmUp.length,
    });
    if (answer.accepted !== FLEET_USERS) throw new Error(`${layout.label}: warm-up accepted ${answer.accepted}`);
  }

  const random = createRandom(options.seed);
  progress(`${formatCount(options.rows)} rows, a point every ${formatCount(step)}, ${REQUEST_ROWS} rows a request`);
  for (let from = 0; from < options.rows;) {
    const count = Math.min(REQUEST_ROWS, options.rows - from, step - (from % step));
    const body = Buffer.from(fleetBody(random, timeline, from, count));
    for (const layout of layouts) {
      const began = performance.now();
      const answer = await uploadNdjson(layout.gateway!.url, Readable.from([body]), {
        wait: true,
        timeoutMs: 600_000,
        contentLength: body.length,
      });
      layout.stepSeconds += (performance.now() - began) / 1000;
      if (answer.status !== 200 || answer.accepted !== count) {
        problems.push(
          `${layout.label}: rows ${from}..${from + count - 1}: status ${answer.status}, accepted ${answer.accepted} of ${count}: ${JSON.stringify(answer.errors).slice(0, 300)}`,
        );
      }
    }
    from += count;
    if (from % step === 0 || from === options.rows) {
      const rowsInStep = from % step === 0 ? step : from % step;
      for (const layout of layouts) {
        layout.rates.push([from, rowsInStep / layout.stepSeconds]);
        layout.stepSeconds = 0;
      }
      progress(
        `${formatCount(from)} rows: ` +
          layouts.map((l) => `${l.label} ${formatCount(Math.round(l.rates.at(-1)![1]))} rows/s`).join(', '),
      );
    }
    if (problems.length > 10) throw new Error(`too many failed requests:\n${problems.join('\n')}`);
  }

  for (const layout of layouts) await layout.gateway?.stop();
  for (const layout of layouts) {
    const stored = (await countRows(layout.db.pool, METRICS_TABLE)) - FLEET_USERS; // less the warm-up
    if (stored !== options.rows)
      problems.push(`${layout.label}: ${stored} rows in user_metrics, expected ${options.rows}`);
  }
  const partitions = partitioned === undefined ? [] : await listPartitions(partitioned.pool);
  const sizes = await Promise.all(layouts.map((l) => tableBytes(l.db.pool, METRICS_TABLE)));

  const chartPath = path.join(path.dirname(options.chart), 'sustained.svg');
  const subtitle =
    `${started.toISOString().slice(0, 10)} · ${formatCount(options.rows)} rows of ${formatCount(FLEET_USERS)} users and ` +
    `${formatCount(FLEET_DEVICES)} devices through POST /v1/metrics/bulk · PostgreSQL ${facts.version} · ${os.availableParallelism()} CPUs`;
  await writeFile(
    chartPath,
    renderRateChart(
      'metrics-gateway: ingest rate as user_metrics grows',
      subtitle,
      layouts.map((l) => ({ label: l.label, color: l.color, points: l.rates })),
    ),
  );

  const sideBySide = layouts.length === 2;
  const ratio = (l: Layout): number => (l.rates.at(-1)?.[1] ?? NaN) / (l.rates[0]?.[1] ?? NaN);
  const lines = [
    '## Sustained ingest as the table grows (issue 11)',
    '',
    `Measured on ${started.toISOString()} (${((Date.now() - started.getTime()) / 60_000).toFixed(1)} min) with:`,
    '',
    '```sh',
    `npm run bench -- ${argv.join(' ')}`,
    '```',
    '',
    `${formatCount(options.rows)} rows of a fleet of ${formatCount(FLEET_USERS)} users and ${formatCount(FLEET_DEVICES)} devices ` +
      `(bench/fleet.ts): times in arrival order over ${(spanMs / DAY_MS).toFixed(1)} simulated days with ±60 s of jitter, ` +
      '3% up to 36 h late, a random v4 `event_id` on every row, after a warm-up of one row per user (not measured); ' +
      'one client, requests of ' +
      `${formatCount(REQUEST_ROWS)} rows with \`wait=true\`, ` +
      (sideBySide ? 'each sent to the two gateways in turn. ' : `to one gateway (${layouts[0]!.label} alone). `) +
      `PostgreSQL ${facts.version} (${facts.settings}); ${os.availableParallelism()} CPUs, ${formatBytes(os.totalmem())} memory.`,
    '',
    `![rate against rows stored](${path.relative(path.dirname(options.out), chartPath)})`,
    '',
    '| rows stored | ' +
      layouts.map((l) => `${l.label} rows/s`).join(' | ') +
      (sideBySide ? ' | partitioned ÷ single |' : ' |'),
    '|---:|' + layouts.map(() => '---:|').join('') + (sideBySide ? '---:|' : ''),
    ...layouts[0]!.rates.map(([rows], i) => {
      const rates = layouts.map((l) => l.rates[i]?.[1] ?? NaN);
      const cells = rates.map((rate) => formatCount(Math.round(rate)));
      if (sideBySide) cells.push(`${((rates[0] as number) / (rates[1] as number)).toFixed(2)}x`);
      return `| ${formatCount(rows)} | ${cells.join(' | ')} |`;
    }),
    '',
    '| | ' + layouts.map((l) => l.label).join(' | ') + ' |',
    '|---|' + layouts.map(() => '---|').join(''),
    '| last step ÷ first step (target ≥ 0.8x for the partitioned layout) | ' +
      layouts.map((l) => `${ratio(l).toFixed(2)}x`).join(' | ') +
      ' |',
    '| user_metrics at the end (tables and indexes) | ' + sizes.map((b) => formatBytes(b)).join(' | ') + ' |',
    '| partitions at the end | ' + layouts.map((l) => (l.name === 'single' ? 1 : partitions.length)).join(' | ') + ' |',
    '',
    ...(options.rows < 5_000_000
      ? [
          '**A smoke run**: too few rows for the indexes of the single table to outgrow memory; the run of ' +
            '20 million rows (`npm run bench -- --sustained`, about 2 hours here) is the one that decides.',
          '',
        ]
      : []),
    'Both gateways are this build (plain `COPY` for rows with an `event_id`); only the layout differs. The ' +
      'single table is migrations 0001-0006 (keys `(user_id, id)` and `(user_id, event_id)`, the device and BRIN ' +
      'indexes); the later migrations are recorded as applied there so that the gateway starts.',
    '',
    ...(problems.length > 0 ? ['Problems:', '', ...problems.map((p) => `- ${p}`), ''] : []),
  ];
  const existing = await readFile(options.out, 'utf8').catch(() => '# Benchmark results\n');
  await writeFile(options.out, splicePart(existing, SUSTAINED_MARKS, lines.join('\n'), 'end'));
  progress(`wrote ${path.relative(process.cwd(), options.out)} and ${path.relative(process.cwd(), chartPath)}`);
  for (const problem of problems) progress(`problem: ${problem}`);
  return problems.length === 0;
}
