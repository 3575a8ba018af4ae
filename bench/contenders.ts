// What the benchmark runs, and which of its results are compared with which.

/** The groups that `--only` selects; `big` is the 2 GB streaming upload (`--big`). */
/** `citus` is bulk through a Citus coordinator (`--citus URL`), beside `bulk-1` on the single server. */
export const STEP_NAMES = ['bulk', 'copy', 'single', 'naive', 'client', 'big', 'citus'] as const;
export type StepName = (typeof STEP_NAMES)[number];

/** The runs that are repeated in rounds. */
export const RUN_IDS = [
  'bulk-1',
  'bulk-n',
  'copy-nofk',
  'copy-fk',
  'single-wait',
  'single-nowait',
  'naive',
  'bulk-v7',
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
  readonly step: Exclude<StepName, 'big'>;
  readonly unit: RunUnit;
}

export const RUN_SPECS: Readonly<Record<RunId, RunSpec>> = {
  'bulk-1': { id: 'bulk-1', step: 'bulk', unit: 'rows/s' },
  'bulk-n': { id: 'bulk-n', step: 'bulk', unit: 'rows/s' },
  'copy-nofk': { id: 'copy-nofk', step: 'copy', unit: 'rows/s' },
  'copy-fk': { id: 'copy-fk', step: 'copy', unit: 'rows/s' },
  'single-wait': { id: 'single-wait', step: 'single', unit: 'req/s' },
  'single-nowait': { id: 'single-nowait', step: 'single', unit: 'req/s' },
  naive: { id: 'naive', step: 'naive', unit: 'req/s' },
  'bulk-v7': { id: 'bulk-v7', step: 'client', unit: 'rows/s' },
  client: { id: 'client', step: 'client', unit: 'rows/s' },
  'bulk-citus': { id: 'bulk-citus', step: 'citus', unit: 'rows/s' },
};

/** What the runs are, in words, given the client count of the parallel bulk run. */
export function runLabel(id: RunId, bulkClients: number): string {
  switch (id) {
    case 'bulk-1':
      return 'gateway bulk NDJSON, 1 client, wait=true';
    case 'bulk-n':
      return `gateway bulk NDJSON, ${bulkClients} clients, wait=true`;
    case 'copy-nofk':
      return 'psql \\copy into user_metrics_nofk (no FK, no trigger)';
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
  return RUN_IDS.filter((id) => steps.has(RUN_SPECS[id].step));
}

export interface RatioSpec {
  readonly id: string;
  readonly numerator: RunId;
  readonly denominator: RunId;
  /** The ratio that issue 3 asks for, when it asks for one. */
  readonly target?: number;
}

export const RATIO_SPECS: readonly RatioSpec[] = [
  { id: 'bulk-1/copy-nofk', numerator: 'bulk-1', denominator: 'copy-nofk', target: 0.8 },
  { id: 'bulk-n/copy-nofk', numerator: 'bulk-n', denominator: 'copy-nofk', target: 0.8 },
  { id: 'bulk-1/copy-fk', numerator: 'bulk-1', denominator: 'copy-fk' },
  { id: 'bulk-n/copy-fk', numerator: 'bulk-n', denominator: 'copy-fk' },
  { id: 'single-wait/naive', numerator: 'single-wait', denominator: 'naive', target: 3 },
  { id: 'single-nowait/naive', numerator: 'single-nowait', denominator: 'naive' },
  // Issue 10: the client library within 0.8x of a bulk upload of the same rows, event_ids included
  // (the idempotent insert path costs the gateway the same on both sides); beside plain bulk for scale.
  { id: 'client/bulk-v7', numerator: 'client', denominator: 'bulk-v7', target: 0.8 },
  { id: 'client/bulk-1', numerator: 'client', denominator: 'bulk-1' },
  // Issue 12: the same upload through a Citus coordinator, beside the single server.
  { id: 'bulk-citus/bulk-1', numerator: 'bulk-citus', denominator: 'bulk-1' },
];

/** A short label of a ratio for the chart and the table. */
export function ratioLabel(spec: RatioSpec, bulkClients: number): string {
  const short: Record<RunId, string> = {
    'bulk-1': 'gateway bulk, 1 client',
    'bulk-n': `gateway bulk, ${bulkClients} clients`,
    'copy-nofk': 'psql \\copy, no FK',
    'copy-fk': 'psql \\copy into user_metrics',
    'single-wait': 'single wait=true',
    'single-nowait': 'single wait=false',
    naive: 'naive server',
    'bulk-v7': 'gateway bulk, UUIDv7 event_ids',
    client: 'client track()',
    'bulk-citus': 'gateway bulk via Citus',
  };
  return `${short[spec.numerator]} ÷ ${short[spec.denominator]}`;
}

/** Targets of issue 3 that are not ratios. */
export const SINGLE_WAIT_P99_TARGET_MS = 100;
export const BIG_UPLOAD_RSS_TARGET_BYTES = 300 * 1024 * 1024;
