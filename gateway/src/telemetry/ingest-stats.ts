import type { BufferGauge, IngestTotals } from './prometheus';
import type { StatsPoint, StatsSnapshot } from '../contract/schemas';
import type { PartitionStats } from './partition-stats';
import type { RecentRejections } from './recent-rejections';

/** The totals at one moment, plus the buffer's depth then. */
interface Sample {
  readonly t: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly flushed: number;
  readonly batches: number;
  readonly flushSeconds: number;
  readonly depth: number;
}

export interface IngestStatsOptions {
  /** The running totals (PrometheusTelemetry.totals): the status page counts nothing of its own. */
  readonly readTotals: () => Promise<IngestTotals>;
  readonly buffer: BufferGauge;
  readonly rejections: RecentRejections;
  /** The partitions of user_metrics; without it, the snapshot's partitions are null. */
  readonly partitions?: PartitionStats;
  readonly intervalMs?: number;
  /** Points kept for the chart. */
  readonly historyPoints?: number;
  readonly rateWindowMs?: number;
  readonly now?: () => number;
}

const sumOf = (byReason: Readonly<Record<string, number>>): number =>
  Object.values(byReason).reduce((sum, value) => sum + value, 0);

/** Rounds for display: rates and latencies with three significant decimals at most. */
const round = (value: number): number => Math.round(value * 1000) / 1000;

/**
 * Turns the gateway's running totals into what a person watching wants: rates over the last few
 * seconds and a minute of history. A timer samples the totals once a second (unref'd: it never keeps
 * the process alive); GET /v1/stats compares a fresh reading with the sample `rateWindowMs` before.
 */
export class IngestStats {
  private readonly samples: Sample[] = [];
  private readonly intervalMs: number;
  private readonly historyPoints: number;
  private readonly rateWindowMs: number;
  private readonly now: () => number;
  private readonly startedAt: number;
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;

  constructor(private readonly options: IngestStatsOptions) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.historyPoints = options.historyPoints ?? 60;
    this.rateWindowMs = options.rateWindowMs ?? 5000;
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
  }

  /** Takes a sample now and then every interval, until stop(). */
  start(): void {
    if (this.timer !== undefined) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Records the totals now; a reading still under way makes this one a no-op. */
  async sample(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      this.samples.push(await this.read());
      // Enough for the chart, and for the rate window's base.
      const keep = Math.max(this.historyPoints + 1, Math.ceil(this.rateWindowMs / this.intervalMs) + 2);
      if (this.samples.length > keep) this.samples.splice(0, this.samples.length - keep);
    } catch {
      // A failed reading leaves a gap in the chart; the next one fills in.
    } finally {
      this.sampling = false;
    }
  }

  /** The figures now; the recent rejections' messages (what clients sent) only `withMessages`. */
  async snapshot({ withMessages = false }: { withMessages?: boolean } = {}): Promise<StatsSnapshot> {
    const [totals, partitions] = await Promise.all([this.options.readTotals(), this.partitionsView()]);
    const current = this.toSample(this.now(), totals);
    // The newest sample at least a window old, else the oldest one there is (just after start-up).
    const base = this.samples.findLast((s) => s.t <= current.t - this.rateWindowMs) ?? this.samples[0];
    const seconds = base === undefined ? 0 : (current.t - base.t) / 1000;
    const rate = (pick: (s: Sample) => number): number | null =>
      base === undefined || seconds <= 0 ? null : round(Math.max(0, pick(current) - pick(base)) / seconds);
    const batches = base === undefined ? 0 : current.batches - base.batches;
    const reasons = new Set([...Object.keys(totals.rejectedRows), ...Object.keys(totals.rejectedAtFlushRows)]);

    return {
      time: new Date(current.t).toISOString(),
      uptime_seconds: round((current.t - this.startedAt) / 1000),
      window_seconds: round(seconds),
      ingest: {
        accepted_rows_per_second: rate((s) => s.accepted),
        rejected_rows_per_second: rate((s) => s.rejected),
        flushed_rows_per_second: rate((s) => s.flushed),
      },
      buffer: { depth: current.depth, capacity: this.options.buffer.capacity },
      flush: {
        mean_latency_ms:
          base === undefined || batches <= 0
            ? null
            : round(((current.flushSeconds - base.flushSeconds) * 1000) / batches),
        mean_batch_rows: base === undefined || batches <= 0 ? null : round((current.flushed - base.flushed) / batches),
        batches: current.batches,
      },
      totals: {
        accepted_rows: totals.acceptedRows,
        rejected_rows: sumOf(totals.rejectedRows),
        rejected_at_flush_rows: sumOf(totals.rejectedAtFlushRows),
        flushed_rows: totals.flushedRows,
      },
      rejected_by_reason: [...reasons]
        .map((reason) => ({
          reason,
          at_door: totals.rejectedRows[reason] ?? 0,
          at_flush: totals.rejectedAtFlushRows[reason] ?? 0,
        }))
        .sort((a, b) => b.at_door + b.at_flush - (a.at_door + a.at_flush) || a.reason.localeCompare(b.reason)),
      recent_rejections: withMessages ? this.options.rejections.list() : this.options.rejections.summaries(),
      rejection_messages: withMessages ? 'shown' : 'need_admin_key',
      partitions,
      history: { interval_seconds: this.intervalMs / 1000, points: this.points() },
    };
  }

  private async partitionsView(): Promise<StatsSnapshot['partitions']> {
    const overview = await this.options.partitions?.current();
    if (overview === undefined) return null;
    const iso = (date: Date | null): string | null => date?.toISOString() ?? null;
    return {
      count: overview.partitions.length,
      total_bytes: overview.partitions.reduce((sum, p) => sum + p.bytes, 0),
      oldest_time_recorded: iso(overview.oldest),
      list: overview.partitions.map((p) => ({ name: p.name, from: iso(p.from), to: iso(p.to), bytes: p.bytes })),
    };
  }

  private async read(): Promise<Sample> {
    return this.toSample(this.now(), await this.options.readTotals());
  }

  private toSample(t: number, totals: IngestTotals): Sample {
    return {
      t,
      accepted: totals.acceptedRows,
      rejected: sumOf(totals.rejectedRows) + sumOf(totals.rejectedAtFlushRows),
      flushed: totals.flushedRows,
      batches: totals.flushedBatches,
      flushSeconds: totals.flushSeconds,
      depth: this.options.buffer.depth,
    };
  }

  /** One point per pair of consecutive samples, the last `historyPoints` of them. */
  private points(): StatsPoint[] {
    const points: StatsPoint[] = [];
    const from = Math.max(1, this.samples.length - this.historyPoints);
    for (let i = from; i < this.samples.length; i++) {
      const before = this.samples[i - 1] as Sample;
      const after = this.samples[i] as Sample;
      const seconds = (after.t - before.t) / 1000;
      if (seconds <= 0) continue;
      const batches = after.batches - before.batches;
      points.push({
        t: after.t,
        accepted_per_second: round(Math.max(0, after.accepted - before.accepted) / seconds),
        rejected_per_second: round(Math.max(0, after.rejected - before.rejected) / seconds),
        buffer_depth: after.depth,
        flush_latency_ms: batches > 0 ? round(((after.flushSeconds - before.flushSeconds) * 1000) / batches) : null,
      });
    }
    return points;
  }
}
