// What the benchmark runs, and which of its results are compared with which.

/** The groups that `--only` selects; `big` is the 2 GB streaming upload (`--big`). */
/** `citus` is bulk through a Citus coordinator (`--citus URL`), beside `bulk-1` on the single server. */
export const STEP_NAMES = ['bulk', 'copy', 'single', 'naive', 'client', 'big', 'citus'] as const;
export type StepName = (typeof STEP_NAMES)[number];

/** The runs that are repeated in rounds. */
export const RUN_IDS = [
  'bulk-1',
  'bulk-n',
  'bulk-v7',
  'copy-nofk',
  'copy-n',
  'copy-fk',
  'single-wait',
  'single-nowait',
  'naive',
  'client',
  'bulk-citus',
] as const;
export type RunId = (typeof RUN_IDS)[number];

/** The client step: rows the client may hold; the application waits (as one that watches pendingRows would) rather than drop. */
export const MAX_QUEUE_ROWS = 100_000;
/** The client step: the application yields to the event loop this often, as any that handles I/O does. */
export const YIELD_EVERY = 1000;

export type RunUnit = 'rows/s' | 'req/s';

export interface RunSpec {
  readonly id: RunId;
  /** The steps that select it (any of them). */
  readonly steps: readonly Exclude<StepName, 'big'>[];
  readonly unit: RunUnit;
}

export const RUN_SPECS: Readonly<Record<RunId, RunSpec>> = {
  'bulk-1': { id: 'bulk-1', steps: ['bulk'], unit: 'rows/s' },
  'bulk-n': { id: 'bulk-n', steps: ['bulk'], unit: 'rows/s' },
  // In the bulk step for issue 15 (gateway CPU per row with event_ids), in the client step as its baseline.
  'bulk-v7': { id: 'bulk-v7', steps: ['bulk', 'client'], unit: 'rows/s' },
  'copy-nofk': { id: 'copy-nofk', steps: ['copy'], unit: 'rows/s' },
  'copy-n': { id: 'copy-n', steps: ['copy'], unit: 'rows/s' },
  'copy-fk': { id: 'copy-fk', steps: ['copy'], unit: 'rows/s' },
  'single-wait': { id: 'single-wait', steps: ['single'], unit: 'req/s' },
  'single-nowait': { id: 'single-nowait', steps: ['single'], unit: 'req/s' },
  naive: { id: 'naive', steps: ['naive'], unit: 'req/s' },
  client: { id: 'client', steps: ['client'], unit: 'rows/s' },
  'bulk-citus': { id: 'bulk-citus', steps: ['citus'], unit: 'rows/s' },
};

/** What a run counts, in words: "µs per row", "µs per request". */
export function unitNoun(id: RunId): 'row' | 'request' {
  return RUN_SPECS[id].unit === 'rows/s' ? 'row' : 'request';
}

/** What the runs are, in words, given the client count of the parallel bulk run (and parallel psql). */
export function runLabel(id: RunId, bulkClients: number): string {
  switch (id) {
    case 'bulk-1':
      return 'gateway bulk NDJSON, 1 client, wait=true';
    case 'bulk-n':
      return `gateway bulk NDJSON, ${bulkClients} clients, wait=true`;
    case 'copy-nofk':
      return 'psql \\copy into user_metrics_nofk (no FK, no trigger)';
    case 'copy-n':
      return `${bulkClients} parallel psql \\copy into user_metrics_nofk (same keys as user_metrics, no FK, no trigger), one part each`;
    case 'copy-fk':
      return 'psql \\copy into user_metrics (as migrated)';
    case 'single-wait':
      return 'gateway single POST, wait=true';
    case 'single-nowait':
      return 'gateway single POST, wait=false';
    case 'naive':
      return 'naive server: INSERT + commit per request';
    case 'bulk-v7':
      return 'gateway bulk NDJSON, 1 client, wait=true, rows with UUIDv7 event_ids (as the client sends)';
    case 'client':
      return 'client library: track() per event, 1 process, wait=true batches';
    case 'bulk-citus':
      return 'gateway bulk NDJSON, 1 client, wait=true, through a Citus coordinator (--citus)';
  }
}

/** Runs of the selected steps, in their canonical order. */
export function selectedRuns(steps: ReadonlySet<StepName>): RunId[] {
  return RUN_IDS.filter((id) => RUN_SPECS[id].steps.some((step) => steps.has(step)));
}

export interface RatioSpec {
  readonly id: string;
  readonly numerator: RunId;
  readonly denominator: RunId;
  /** The lowest ratio that an issue asks for, when one does. */
  readonly target?: number;
  /** The issue that sets the target. */
  readonly issue?: number;
}

export const RATIO_SPECS: readonly RatioSpec[] = [
  { id: 'bulk-1/copy-nofk', numerator: 'bulk-1', denominator: 'copy-nofk', target: 0.8, issue: 3 },
  { id: 'bulk-n/copy-nofk', numerator: 'bulk-n', denominator: 'copy-nofk', target: 0.8, issue: 3 },
  // Issue 15: as many parallel uploads as cores against as many parallel COPYs of the same parts.
  { id: 'bulk-n/copy-n', numerator: 'bulk-n', denominator: 'copy-n', target: 0.8, issue: 15 },
  { id: 'bulk-1/copy-fk', numerator: 'bulk-1', denominator: 'copy-fk' },
  { id: 'bulk-n/copy-fk', numerator: 'bulk-n', denominator: 'copy-fk' },
  { id: 'single-wait/naive', numerator: 'single-wait', denominator: 'naive', target: 3, issue: 3 },
  { id: 'single-nowait/naive', numerator: 'single-nowait', denominator: 'naive' },
  // Issue 10: the client library within 0.8x of a bulk upload of the same rows, event_ids included
  // (the idempotent insert path costs the gateway the same on both sides); beside plain bulk for scale.
  { id: 'client/bulk-v7', numerator: 'client', denominator: 'bulk-v7', target: 0.8, issue: 10 },
  { id: 'client/bulk-1', numerator: 'client', denominator: 'bulk-1' },
  // Issue 12: the same upload through a Citus coordinator, beside the single server.
  { id: 'bulk-citus/bulk-1', numerator: 'bulk-citus', denominator: 'bulk-1' },
];

/** A short label of a run, for ratios and targets. */
function shortRunLabel(id: RunId, bulkClients: number): string {
  const short: Record<RunId, string> = {
    'bulk-1': 'gateway bulk, 1 client',
    'bulk-n': `gateway bulk, ${bulkClients} clients`,
    'copy-nofk': 'psql \\copy, no FK',
    'copy-n': `${bulkClients} parallel psql \\copy, same keys`,
    'copy-fk': 'psql \\copy into user_metrics',
    'single-wait': 'single wait=true',
    'single-nowait': 'single wait=false',
    naive: 'naive server',
    'bulk-v7': 'gateway bulk, UUIDv7 event_ids',
    client: 'client track()',
    'bulk-citus': 'gateway bulk via Citus',
  };
  return short[id];
}

/** A short label of a ratio for the chart and the table. */
export function ratioLabel(spec: RatioSpec, bulkClients: number): string {
  return `${shortRunLabel(spec.numerator, bulkClients)} ÷ ${shortRunLabel(spec.denominator, bulkClients)}`;
}

/** Targets of issue 3 that are not ratios. */
export const SINGLE_WAIT_P99_TARGET_MS = 100;
export const BIG_UPLOAD_RSS_TARGET_BYTES = 300 * 1024 * 1024;

/** Issue 15: the gateway's CPU time (user + system, during the upload) per bulk row stored, at most. */
export const BULK_CPU_TARGET_US_PER_ROW = 2.5;

export interface CpuTargetSpec {
  readonly run: RunId;
  /** Whether the run's rows carry an event_id (the idempotent insert path). */
  readonly eventIds: boolean;
}

/** The runs that BULK_CPU_TARGET_US_PER_ROW is checked on: one upload, rows without and with event_id. */
export const BULK_CPU_TARGETS: readonly CpuTargetSpec[] = [
  { run: 'bulk-1', eventIds: false },
  { run: 'bulk-v7', eventIds: true },
];
