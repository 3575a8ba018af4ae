// The benchmark's results as Markdown: pure functions of what the runs measured.

import {
  BIG_UPLOAD_RSS_TARGET_BYTES,
  BULK_CPU_TARGETS,
  BULK_CPU_TARGET_US_PER_ROW,
  MAX_QUEUE_ROWS,
  RATIO_SPECS,
  RUN_SPECS,
  SINGLE_WAIT_P99_TARGET_MS,
  YIELD_EVERY,
  ratioLabel,
  runLabel,
  unitNoun,
  type RatioSpec,
  type RunId,
} from './contenders';
import type { ChartBar } from './chart';
import {
  cpuMicrosEach,
  formatBytes,
  formatCount,
  formatMicros,
  formatMs,
  formatRatio,
  formatSeconds,
  markdownTable,
  median,
  ratio,
} from './stats';

/** What one run of one contender measured. */
export interface RunResult {
  readonly id: RunId;
  readonly round: number;
  /** rows/s or req/s; undefined when the run failed. */
  readonly value?: number;
  /** Wall time of the uploads or of psql, or autocannon's measured duration. */
  readonly seconds?: number;
  /** Rows loaded, or 2xx responses. */
  readonly count?: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  /** VmHWM of the server process (gateway or naive server) during the run. */
  readonly peakRssBytes?: number;
  /** User plus system CPU time of the server process over its whole life (start-up included). */
  readonly cpuSeconds?: number;
  /**
   * Rows stored, or 2xx answers, ÷ the server's CPU time (user + system) during the measured upload or
   * load alone (start-up, warm-up and exit left out), which does not depend on what else the machine's
   * cores are doing. None for psql (the work is PostgreSQL's).
   */
  readonly unitsPerCpuSecond?: number;
  /** The client step: the time of one track() call, in microseconds. */
  readonly trackP50Us?: number;
  readonly trackP99Us?: number;
  /** The client step: CPU time of the process calling track() (application and library together). */
  readonly clientCpuSeconds?: number;
  /** Failed checks and errors; empty when the run is clean. */
  readonly problems: readonly string[];
}

export interface RunSummary {
  readonly id: RunId;
  readonly runs: number;
  readonly value?: number;
  readonly min?: number;
  readonly max?: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  readonly peakRssBytes?: number;
  readonly cpuSeconds?: number;
  readonly unitsPerCpuSecond?: number;
  readonly problems: readonly string[];
}

export interface RatioResult {
  readonly spec: RatioSpec;
  readonly label: string;
  readonly value?: number;
  /** The same ratio of rows or requests per server CPU-second, where both runs measured it. */
  readonly perCpuSecond?: number;
}

export interface BigUploadResult {
  readonly bytes: number;
  readonly rows: number;
  readonly seconds?: number;
  readonly accepted?: number;
  readonly peakRssBytes?: number;
  /** Variables the benchmark set for this gateway beyond those of the other runs. */
  readonly gatewaySettings?: readonly string[];
  readonly problems: readonly string[];
}

export interface ReportMeta {
  readonly date: Date;
  readonly elapsedSeconds: number;
  readonly command: string;
  /** Rows of the "setup" table: [what, value]. */
  readonly setup: readonly (readonly [string, string])[];
  readonly rounds: number;
  readonly bulkClients: number;
  /** Whether the generated rows carry an event_id (`--event-ids`); bulk-v7's always do. */
  readonly rowsWithEventIds: boolean;
  /** The chart's path relative to the report, or undefined when none was written. */
  readonly chartLink?: string;
}

function definedNumbers(values: readonly (number | undefined)[]): number[] {
  return values.filter((value): value is number => value !== undefined && Number.isFinite(value));
}

function orUndefined(value: number): number | undefined {
  return Number.isFinite(value) ? value : undefined;
}

/** Medians over rounds (peak RSS: the highest), one summary per id that has results, in `order`. */
export function summarize(results: readonly RunResult[], order: readonly RunId[]): RunSummary[] {
  return order.flatMap((id) => {
    const runs = results.filter((result) => result.id === id);
    if (runs.length === 0) return [];
    const values = definedNumbers(runs.map((run) => run.value));
    const rss = definedNumbers(runs.map((run) => run.peakRssBytes));
    return [
      {
        id,
        runs: runs.length,
        value: orUndefined(median(values)),
        min: values.length > 0 ? Math.min(...values) : undefined,
        max: values.length > 0 ? Math.max(...values) : undefined,
        p50Ms: orUndefined(median(definedNumbers(runs.map((run) => run.p50Ms)))),
        p99Ms: orUndefined(median(definedNumbers(runs.map((run) => run.p99Ms)))),
        peakRssBytes: rss.length > 0 ? Math.max(...rss) : undefined,
        cpuSeconds: orUndefined(median(definedNumbers(runs.map((run) => run.cpuSeconds)))),
        unitsPerCpuSecond: orUndefined(median(definedNumbers(runs.map((run) => run.unitsPerCpuSecond)))),
        problems: runs.flatMap((run) => run.problems.map((problem) => `round ${run.round}: ${problem}`)),
      },
    ];
  });
}

/** Every ratio of RATIO_SPECS whose two runs were measured, from the medians. */
export function computeRatios(summaries: readonly RunSummary[], bulkClients: number): RatioResult[] {
  const summaryOf = (id: RunId): RunSummary | undefined => summaries.find((summary) => summary.id === id);
  return RATIO_SPECS.filter(
    (spec) =>
      summaries.some((summary) => summary.id === spec.numerator) &&
      summaries.some((summary) => summary.id === spec.denominator),
  ).map((spec) => ({
    spec,
    label: ratioLabel(spec, bulkClients),
    value: ratio(summaryOf(spec.numerator)?.value, summaryOf(spec.denominator)?.value),
    perCpuSecond: ratio(summaryOf(spec.numerator)?.unitsPerCpuSecond, summaryOf(spec.denominator)?.unitsPerCpuSecond),
  }));
}

/** The bars of the chart: the ratios that have a value. */
export function chartBars(ratios: readonly RatioResult[]): ChartBar[] {
  return ratios.flatMap((result) =>
    result.value === undefined
      ? []
      : [
          {
            label: result.label,
            value: result.value,
            ...(result.spec.target === undefined ? {} : { target: result.spec.target }),
          },
        ],
  );
}

function verdict(met: boolean | undefined): string {
  if (met === undefined) return 'not measured';
  return met ? 'reached' : '**missed**';
}

/** Server CPU per row or request and its inverse, for the tables: "2.47 µs per row (404,858 per CPU-s)". */
function formatCpuEach(summary: RunSummary): string {
  return (
    `${formatMicros(cpuMicrosEach(summary.unitsPerCpuSecond))} µs per ${unitNoun(summary.id)} ` +
    `(${formatCount(summary.unitsPerCpuSecond)} per CPU-s)`
  );
}

/** Issue 15's rows: the gateway's CPU per bulk row, without and with event_id. */
function cpuTargetRows(meta: ReportMeta, summaries: readonly RunSummary[]): string[][] {
  const target = BULK_CPU_TARGET_US_PER_ROW;
  return BULK_CPU_TARGETS.flatMap((spec) => {
    const summary = summaries.find((candidate) => candidate.id === spec.run);
    if (summary === undefined) return [];
    const label =
      `gateway CPU per bulk row ≤ ${target} µs (≥ ${formatCount(1_000_000 / target)} rows per CPU-second), ` +
      `rows ${spec.eventIds ? 'with' : 'without'} event_id (${spec.run})`;
    // With --event-ids every generated row has one, so no run measures rows without.
    if (!spec.eventIds && meta.rowsWithEventIds) return [[label, '15', 'not run (--event-ids)', 'not measured']];
    const micros = cpuMicrosEach(summary.unitsPerCpuSecond);
    return [[label, '15', formatCpuEach(summary), verdict(micros === undefined ? undefined : micros <= target)]];
  });
}

function targetRows(
  meta: ReportMeta,
  ratios: readonly RatioResult[],
  summaries: readonly RunSummary[],
  big: BigUploadResult | undefined,
): string[][] {
  const rows: string[][] = [];
  for (const result of ratios) {
    const target = result.spec.target;
    if (target === undefined) continue;
    rows.push([
      `${result.label} ≥ ${target}x`,
      String(result.spec.issue ?? ''),
      formatRatio(result.value),
      verdict(result.value === undefined ? undefined : result.value >= target),
    ]);
  }
  rows.push(...cpuTargetRows(meta, summaries));
  const singleWait = summaries.find((summary) => summary.id === 'single-wait');
  if (singleWait !== undefined) {
    rows.push([
      `single wait=true p99 < ${SINGLE_WAIT_P99_TARGET_MS} ms`,
      '3',
      `${formatMs(singleWait.p99Ms)} ms`,
      verdict(singleWait.p99Ms === undefined ? undefined : singleWait.p99Ms < SINGLE_WAIT_P99_TARGET_MS),
    ]);
  }
  const bigLabel = `streamed upload, gateway peak RSS < ${formatBytes(BIG_UPLOAD_RSS_TARGET_BYTES)}`;
  if (big === undefined) {
    rows.push([bigLabel, '3', 'not run (add --big)', 'not measured']);
  } else {
    const complete = big.problems.length === 0;
    rows.push([
      `${bigLabel} (${formatBytes(big.bytes)} body)`,
      '3',
      formatBytes(big.peakRssBytes),
      verdict(big.peakRssBytes === undefined || !complete ? undefined : big.peakRssBytes < BIG_UPLOAD_RSS_TARGET_BYTES),
    ]);
  }
  return rows;
}

/** Empty for what a run does not measure (latency of a COPY, RSS of psql). */
function blankIfMissing(value: number | undefined, format: (value: number) => string): string {
  return value === undefined ? '' : format(value);
}

function unitOf(id: RunId): string {
  return RUN_SPECS[id].unit;
}

/** The client step's own table: throughput beside bulk, and what one track() call costs. */
function clientSection(results: readonly RunResult[], ratios: readonly RatioResult[]): string[] {
  const runs = results.filter((result) => result.id === 'client');
  if (runs.length === 0) return [];
  const medianOf = (pick: (run: RunResult) => number | undefined): number | undefined =>
    orUndefined(median(definedNumbers(runs.map(pick))));
  const formatUs = (value: number | undefined): string => (value === undefined ? 'n/a' : value.toFixed(1));
  const ratioOf = (id: string): string => formatRatio(ratios.find((result) => result.spec.id === id)?.value);
  return [
    '## Client library (issue 10)',
    '',
    markdownTable(
      [
        'events',
        'rows/s (median)',
        'track() p50 µs',
        'track() p99 µs',
        'client process CPU s',
        'gateway CPU s',
        'client ÷ bulk with UUIDv7',
        'client ÷ bulk',
      ],
      [
        [
          formatCount(medianOf((run) => run.count)),
          formatCount(medianOf((run) => run.value)),
          formatUs(medianOf((run) => run.trackP50Us)),
          formatUs(medianOf((run) => run.trackP99Us)),
          formatSeconds(medianOf((run) => run.clientCpuSeconds)),
          formatSeconds(medianOf((run) => run.cpuSeconds)),
          ratioOf('client/bulk-v7'),
          ratioOf('client/bulk-1'),
        ],
      ],
      ['right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
    ),
    '',
    'One process (the benchmark) calls `MetricsClient.track()` once per event, cycling through the same rows',
    'as the bulk runs, without their event_id: the client adds a UUIDv7 to each. It yields to the event loop',
    `every ${formatCount(YIELD_EVERY)} events and waits while ${formatCount(MAX_QUEUE_ROWS)} rows are held. rows/s = events ÷ wall time from the first`,
    'track() to close() resolving with every row committed (default options: 5000 rows per gzip request, 4 in',
    'flight). track() times are of the call alone (process.hrtime), over every event. The target compares it',
    'with one bulk upload of the same rows each with a UUIDv7 event_id (`bulk-v7`): rows with an event_id take',
    "the gateway's idempotent insert path, which costs the same on both sides; `client ÷ bulk` is against the",
    'plain bulk run (rows without event_id), for scale.',
    '',
  ];
}

export function renderReport(
  meta: ReportMeta,
  summaries: readonly RunSummary[],
  ratios: readonly RatioResult[],
  results: readonly RunResult[],
  big: BigUploadResult | undefined,
): string {
  const lines: string[] = [];
  const rounds = `${meta.rounds} round${meta.rounds === 1 ? '' : 's'}`;
  lines.push(
    '# Benchmark results',
    '',
    `Measured on ${meta.date.toISOString()} (the whole run took ${formatSeconds(meta.elapsedSeconds)} s) with:`,
    '',
    '```sh',
    meta.command,
    '```',
    '',
    markdownTable(['setup', ''], meta.setup),
    '',
    '## Targets',
    '',
    markdownTable(['target', 'issue', 'measured', ''], targetRows(meta, ratios, summaries, big), [
      'left',
      'right',
      'right',
      'left',
    ]),
    '',
    `## Ratios (of the medians over ${rounds})`,
    '',
  );
  if (ratios.length === 0) {
    lines.push('No ratio: this run measured only one side of each comparison.', '');
  } else {
    lines.push(
      markdownTable(
        ['ratio', 'value', 'per server CPU-second'],
        ratios.map((result) => [
          result.label,
          formatRatio(result.value),
          result.perCpuSecond === undefined ? '' : formatRatio(result.perCpuSecond),
        ]),
        ['left', 'right', 'right'],
      ),
      '',
    );
  }
  if (meta.chartLink !== undefined) lines.push(`![ratios](${meta.chartLink})`, '');

  lines.push(`## Throughput (medians over ${rounds})`, '');
  if (summaries.length === 0) {
    lines.push('No run was selected.', '');
  } else {
    lines.push(
      markdownTable(
        [
          'run',
          'median',
          'min – max',
          'unit',
          'p50 ms',
          'p99 ms',
          'server CPU µs per row or req',
          'rows or req per server CPU-s',
          'server peak RSS',
          'server CPU s, whole life',
          'checks',
        ],
        summaries.map((summary) => [
          runLabel(summary.id, meta.bulkClients),
          formatCount(summary.value),
          `${formatCount(summary.min)} – ${formatCount(summary.max)}`,
          unitOf(summary.id),
          RUN_SPECS[summary.id].unit === 'req/s' ? formatMs(summary.p50Ms) : '',
          RUN_SPECS[summary.id].unit === 'req/s' ? formatMs(summary.p99Ms) : '',
          blankIfMissing(cpuMicrosEach(summary.unitsPerCpuSecond), formatMicros),
          blankIfMissing(summary.unitsPerCpuSecond, formatCount),
          summary.id.startsWith('copy-') ? '(psql)' : formatBytes(summary.peakRssBytes),
          summary.id.startsWith('copy-') ? '' : formatSeconds(summary.cpuSeconds),
          summary.problems.length === 0 ? 'ok' : `**${summary.problems.length} problem(s)**`,
        ]),
        ['left', 'right', 'right', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
      ),
      '',
    );
  }

  lines.push(...clientSection(results, ratios));

  if (big !== undefined) {
    lines.push(
      '## Streamed upload',
      '',
      markdownTable(
        ['body', 'rows', 'seconds', 'rows/s', 'accepted', 'gateway peak RSS', 'checks'],
        [
          [
            formatBytes(big.bytes),
            formatCount(big.rows),
            formatSeconds(big.seconds),
            formatCount(big.seconds === undefined ? undefined : big.rows / big.seconds),
            formatCount(big.accepted),
            formatBytes(big.peakRssBytes),
            big.problems.length === 0 ? 'ok' : big.problems.join('; '),
          ],
        ],
        ['right', 'right', 'right', 'right', 'right', 'right', 'left'],
      ),
      '',
      'One NDJSON body generated while it is sent (no file), `wait=true`, through a new gateway process.' +
        (big.gatewaySettings !== undefined && big.gatewaySettings.length > 0
          ? ` The gateway ran with ${big.gatewaySettings.map((setting) => `\`${setting}\``).join(', ')}: ` +
            "Node's default request timeout of 300 s would cut a slower upload with a 408."
          : ''),
      '',
    );
  }

  const problems = summaries.flatMap((summary) =>
    summary.problems.map((problem) => `- ${runLabel(summary.id, meta.bulkClients)}, ${problem}`),
  );
  if (problems.length > 0) lines.push('## Problems', '', ...problems, '');

  lines.push(
    '## Every run',
    '',
    markdownTable(
      [
        'round',
        'run',
        'value',
        'unit',
        'seconds',
        'rows or 2xx',
        'p50 ms',
        'p99 ms',
        'CPU µs each',
        'per CPU-s',
        'peak RSS',
        'CPU s',
      ],
      results.map((result) => [
        String(result.round),
        result.id,
        formatCount(result.value),
        unitOf(result.id),
        formatSeconds(result.seconds),
        formatCount(result.count),
        blankIfMissing(result.p50Ms, formatMs),
        blankIfMissing(result.p99Ms, formatMs),
        blankIfMissing(cpuMicrosEach(result.unitsPerCpuSecond), formatMicros),
        blankIfMissing(result.unitsPerCpuSecond, formatCount),
        blankIfMissing(result.peakRssBytes, formatBytes),
        blankIfMissing(result.cpuSeconds, formatSeconds),
      ]),
      ['right', 'left', 'right', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
    ),
    '',
    '## How it was measured',
    '',
    "- One fresh database on the server above, migrated with the project's migrations and seeded with the",
    '  demo users and devices; `users` and `devices` are `ANALYZE`d once after seeding (the state autovacuum',
    '  reaches within a minute anyway; it decides how per-row foreign-key checks are planned).',
    '- `user_metrics_nofk` is `CREATE TABLE ... (LIKE user_metrics INCLUDING ALL)`: the same columns, defaults,',
    '  identity, checks and indexes, without foreign keys or triggers, the physical limit of this table shape.',
    '- Before every run: `TRUNCATE` of the metric tables, `VACUUM ANALYZE` of them and a `CHECKPOINT`; each',
    '  gateway or naive-server run gets a new process. The order of the contenders rotates from round to round.',
    '- Bulk: rows/s = rows ÷ wall time from the first byte sent to the last response (`wait=true`: committed);',
    "  the answers' `accepted` counts and the table's row count are checked. The parallel run sends one",
    '  consecutive part of the rows from each client at once; the run with UUIDv7 event_ids sends the same',
    '  rows from one client, each with a UUIDv7 `event_id` (the idempotent insert path).',
    '- COPY: rows/s = rows ÷ wall time of the `psql -c "\\copy ..."` process, connection included; the same',
    '  rows as the NDJSON, as COPY text with the columns the gateway writes (received_at included). The',
    `  parallel COPY (issue 15) runs ${meta.bulkClients} such processes at once, each on the consecutive part of the rows that`,
    '  the client of the same number in the parallel bulk run sends; rows/s = rows ÷ wall time from the first',
    '  start to the last exit. `user_metrics_nofk` has the keys of `user_metrics` (see above).',
    '- Single POSTs: autocannon in the benchmark process, req/s = 2xx responses ÷ measured seconds; p50 and',
    '  p99 latency from autocannon; non-2xx, errors and timeouts must be 0, and the table must hold at least',
    '  as many rows as there were 2xx answers (checked after the server has stopped and flushed).',
    '- Peak RSS is VmHWM of the server process from /proc; "CPU s, whole life" is its user + system time',
    '  from its start until it is told to stop (start-up and warm-up included).',
    '- Server CPU per row or request, and rows or requests per server CPU-s: the user + system time that the',
    '  server process (all its threads) spent during the measured upload or load alone, read from',
    '  /proc/PID/stat just before the first byte and just after the last answer (10 ms ticks), against the',
    '  rows stored (bulk, client) or the 2xx answers (single POSTs). Unlike rows/s or req/s, it does not',
    "  depend on what else the cores were doing (load generator, PostgreSQL). PostgreSQL's own CPU is not in",
    "  it; for psql there is none (the work is the server's).",
    '- Everything (load generator, gateway, PostgreSQL) shares this machine; trust ratios from one run more',
    '  than absolute numbers.',
    '',
  );
  return lines.join('\n');
}
