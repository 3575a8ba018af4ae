import type { Pool } from 'pg';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from '../contract/errors';
import type { BatcherObserver } from '../ingest/batcher';
import type { IntakeEndpoint } from '../ingest/intake';
import type { PartitionStats } from './partition-stats';

const PREFIX = 'metrics_gateway_';
const ENDPOINTS: readonly IntakeEndpoint[] = ['single', 'bulk'];
/** The reasons a row can be refused at the door; their series exist (at 0) from the start. */
const DOOR_REASONS: readonly ErrorCode[] = [
  'validation_failed',
  'invalid_json',
  'payload_too_large',
  'unsupported_media_type',
  'unknown_reference',
  'overloaded',
];
const FLUSH_REASONS: readonly ErrorCode[] = ['validation_failed', 'unknown_reference'];

const BATCH_SIZE_BUCKETS = [1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 50_000];
const FLUSH_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// From "live" (under a second) to "uploaded a week later".
const LAG_SECONDS_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 21_600, 86_400, 604_800];

export interface BufferGauge {
  readonly depth: number;
  readonly capacity: number;
}

/** The Prometheus instruments of one gateway, and the hooks that feed them. */
export interface PrometheusTelemetry {
  /** This gateway's own registry (not prom-client's global one), served at GET /metrics. */
  readonly registry: Registry;
  readonly batcherObserver: Required<Pick<BatcherObserver, 'flushed' | 'refused' | 'flushFailed'>>;
  rowsAccepted(endpoint: IntakeEndpoint, receivedAtMs: number, recordedAtMs: readonly number[]): void;
  rowsRefused(rows: number, reason: ErrorCode, endpoint: IntakeEndpoint): void;
  /** Every HTTP request once it ends: its route's declared path and its status (none: unanswered). */
  requestEnded(route: string, status: number | undefined): void;
  /** The buffer exists after the observer it reports to, so it is attached here. */
  trackBuffer(buffer: BufferGauge): void;
  /** The partitions of user_metrics, for their gauges. */
  trackPartitions(partitions: PartitionStats): void;
  /** The running totals that the status page shows, read from these same instruments. */
  totals(): Promise<IngestTotals>;
}

/** Running totals since start-up, as GET /metrics shows them (summed over endpoints). */
export interface IngestTotals {
  readonly acceptedRows: number;
  /** Rows refused at the door, by reason. */
  readonly rejectedRows: Readonly<Record<string, number>>;
  /** Accepted rows that PostgreSQL refused at flush time, by reason. */
  readonly rejectedAtFlushRows: Readonly<Record<string, number>>;
  readonly flushedRows: number;
  readonly flushedBatches: number;
  readonly flushSeconds: number;
}

type MetricValues = Awaited<ReturnType<Counter['get']>>['values'];

function total(values: MetricValues): number {
  return values.reduce((sum, { value }) => sum + value, 0);
}

function totalByReason(values: MetricValues): Record<string, number> {
  const out: Record<string, number> = {};
  for (const { labels, value } of values) {
    const reason = String(labels.reason);
    out[reason] = (out[reason] ?? 0) + value;
  }
  return out;
}

/** Builds a registry with the default process metrics and the gateway's own, read from `pool` and the hooks. */
export function createPrometheusTelemetry(pool: Pool): PrometheusTelemetry {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  const accepted = new Counter({
    name: `${PREFIX}rows_accepted_total`,
    help: 'Rows taken into the buffer, by endpoint (single or bulk)',
    labelNames: ['endpoint'] as const,
    registers,
  });
  const rejected = new Counter({
    name: `${PREFIX}rows_rejected_total`,
    help: 'Rows refused at the door, by endpoint and reason (the error code)',
    labelNames: ['endpoint', 'reason'] as const,
    registers,
  });
  const rejectedAtFlush = new Counter({
    name: `${PREFIX}rows_rejected_at_flush_total`,
    help: 'Accepted rows that PostgreSQL refused at flush time (kept in rejected_metrics), by reason',
    labelNames: ['reason'] as const,
    registers,
  });
  const flushed = new Counter({
    name: `${PREFIX}rows_flushed_total`,
    help: 'Rows written out by flushed batches (stored, repeats of an event_id, or refused into rejected_metrics)',
    registers,
  });
  const flushFailures = new Counter({
    name: `${PREFIX}flush_failures_total`,
    help: 'Batch writes that failed for a transient reason and were retried',
    registers,
  });
  const requests = new Counter({
    name: `${PREFIX}http_requests_total`,
    help: 'HTTP requests ended, by route (its declared path, or unmatched) and status code (aborted: unanswered)',
    labelNames: ['route', 'code'] as const,
    registers,
  });
  // One child per route and status, looked up by route then status: no label hashing or string built
  // per request, as labels() would.
  const requestCounters = new Map<string, Map<number | undefined, Counter.Internal>>();
  const batchSize = new Histogram({
    name: `${PREFIX}batch_size_rows`,
    help: 'Rows per flushed batch',
    buckets: BATCH_SIZE_BUCKETS,
    registers,
  });
  const flushDuration = new Histogram({
    name: `${PREFIX}flush_duration_seconds`,
    help: 'Time to write one batch, retries included',
    buckets: FLUSH_SECONDS_BUCKETS,
    registers,
  });
  const ingestLag = new Histogram({
    name: `${PREFIX}ingest_lag_seconds`,
    help: 'Time from time_recorded to the moment the gateway accepted the row (a future time_recorded counts as 0)',
    buckets: LAG_SECONDS_BUCKETS,
    registers,
  });

  let buffer: BufferGauge | undefined;
  new Gauge({
    name: `${PREFIX}buffer_depth_rows`,
    help: 'Rows buffered or being written',
    registers,
    collect() {
      if (buffer !== undefined) this.set(buffer.depth);
    },
  });
  new Gauge({
    name: `${PREFIX}buffer_capacity_rows`,
    help: 'Rows the buffer holds at most (BUFFER_MAX_ROWS)',
    registers,
    collect() {
      if (buffer !== undefined) this.set(buffer.capacity);
    },
  });
  new Gauge({
    name: `${PREFIX}db_pool_connections`,
    help: 'PostgreSQL connections open in the pool',
    registers,
    collect() {
      this.set(pool.totalCount);
    },
  });
  new Gauge({
    name: `${PREFIX}db_pool_idle_connections`,
    help: 'PostgreSQL connections open in the pool and not in use',
    registers,
    collect() {
      this.set(pool.idleCount);
    },
  });
  new Gauge({
    name: `${PREFIX}db_pool_waiting_requests`,
    help: 'Requests for a PostgreSQL connection waiting for the pool',
    registers,
    collect() {
      this.set(pool.waitingCount);
    },
  });

  let partitionStats: PartitionStats | undefined;
  new Gauge({
    name: `${PREFIX}partitions`,
    help: 'Partitions of user_metrics, the default one included',
    registers,
    async collect() {
      const overview = await partitionStats?.current();
      if (overview !== undefined) this.set(overview.partitions.length);
    },
  });
  new Gauge({
    name: `${PREFIX}partition_bytes`,
    help: 'Size of each partition of user_metrics (table, indexes and TOAST), by partition',
    labelNames: ['partition'] as const,
    registers,
    async collect() {
      const overview = await partitionStats?.current();
      if (overview === undefined) return;
      this.reset(); // a dropped partition's series goes
      for (const p of overview.partitions) this.set({ partition: p.name }, p.bytes);
    },
  });
  new Gauge({
    name: `${PREFIX}oldest_time_recorded_seconds`,
    help: 'The oldest time_recorded kept in user_metrics, Unix seconds (absent without rows)',
    registers,
    async collect() {
      const overview = await partitionStats?.current();
      if (overview === undefined) return;
      this.reset();
      if (overview.oldest !== null) this.set(overview.oldest.getTime() / 1000);
    },
  });

  // Series that exist from the start, so that rate() and alerts see a 0 before the first event.
  for (const endpoint of ENDPOINTS) {
    accepted.inc({ endpoint }, 0);
    for (const reason of DOOR_REASONS) rejected.inc({ endpoint, reason }, 0);
  }
  for (const reason of FLUSH_REASONS) rejectedAtFlush.inc({ reason }, 0);

  return {
    registry,
    batcherObserver: {
      flushed(rows, seconds) {
        flushed.inc(rows);
        batchSize.observe(rows);
        flushDuration.observe(seconds);
      },
      refused(rows, reason) {
        rejectedAtFlush.inc({ reason }, rows);
      },
      flushFailed() {
        flushFailures.inc();
      },
    },
    rowsAccepted(endpoint, receivedAtMs, recordedAtMs) {
      if (recordedAtMs.length === 0) return;
      accepted.inc({ endpoint }, recordedAtMs.length);
      for (const recorded of recordedAtMs) ingestLag.observe(Math.max(0, receivedAtMs - recorded) / 1000);
    },
    rowsRefused(rows, reason, endpoint) {
      rejected.inc({ endpoint, reason }, rows);
    },
    requestEnded(route, status) {
      let byStatus = requestCounters.get(route);
      if (byStatus === undefined) requestCounters.set(route, (byStatus = new Map()));
      let counter = byStatus.get(status);
      if (counter === undefined) {
        const code = status === undefined ? 'aborted' : String(status);
        byStatus.set(status, (counter = requests.labels({ route, code })));
      }
      counter.inc();
    },
    trackBuffer(source) {
      buffer = source;
    },
    trackPartitions(source) {
      partitionStats = source;
    },
    async totals() {
      const [acceptedNow, rejectedNow, rejectedAtFlushNow, flushedNow, durations] = await Promise.all([
        accepted.get(),
        rejected.get(),
        rejectedAtFlush.get(),
        flushed.get(),
        flushDuration.get(),
      ]);
      const histogramPart = (suffix: 'sum' | 'count'): number =>
        total(durations.values.filter((value) => value.metricName === `${PREFIX}flush_duration_seconds_${suffix}`));
      return {
        acceptedRows: total(acceptedNow.values),
        rejectedRows: totalByReason(rejectedNow.values),
        rejectedAtFlushRows: totalByReason(rejectedAtFlushNow.values),
        flushedRows: total(flushedNow.values),
        flushedBatches: histogramPart('count'),
        flushSeconds: histogramPart('sum'),
      };
    },
  };
}
