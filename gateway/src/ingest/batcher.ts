import type { Logger } from 'pino';
import type { MetricsWriter, RejectedRow, WriteAttempts } from '../db/metrics-writer';
import type { SpoolRange } from '../db/spool-commits';
import type { SpoolPosition } from '../spool/spool';
import { classifyFailure, rejectionCode, sqlState } from '../db/sqlstate';
import { retryDelayMs } from './backoff';
import { decodeMetricRow } from './copy-encode';
import type { IngestTicket, TicketChunk } from './ticket';

export interface BatcherOptions {
  readonly batchMaxRows: number;
  readonly batchMaxWaitMs: number;
  readonly bufferMaxRows: number;
  readonly flushConcurrency: number;
  readonly writer: MetricsWriter;
  readonly logger: Logger;
  /** First and largest delay between retries of a batch that failed for a transient reason. */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  readonly observer?: BatcherObserver;
  /** Told of spooled rows that are now committed or refused, so their spool segments may go. */
  readonly onSpooledDone?: (ranges: readonly SpoolRange[]) => void;
  /** Told when PostgreSQL refuses a row for a user or device that does not exist (deleted since it was cached). */
  readonly onUnknownReference?: () => void;
}

/** Hooks for instrumentation (Prometheus, the status page); every one is optional. */
export interface BatcherObserver {
  flushed?(rows: number, seconds: number): void;
  refused?(rows: number, reason: string): void;
  flushFailed?(error: unknown): void;
}

/** What travels with appended rows besides the rows themselves. */
export interface AppendOptions {
  /** Told when each row is committed or refused. */
  readonly ticket?: IngestTicket;
  /** NDJSON line number of each row, for bulk uploads. */
  readonly lines?: readonly number[];
  /** Where the rows were spooled (wait=false), so the commit can record it. */
  readonly spool?: SpoolPosition;
}

/** The rows of one append: one request, or one chunk of a bulk upload; in COPY text format. */
interface RowGroup {
  readonly rows: readonly string[];
  /** NDJSON line number of each row, for bulk uploads. */
  readonly lines: readonly number[] | undefined;
  readonly ticket: IngestTicket | undefined;
  /** This group's rows as its ticket counts them. */
  readonly chunk: TicketChunk | undefined;
  readonly spool: SpoolPosition | undefined;
  readonly enqueuedAt: number;
  /** How many rows from the front are already in a batch. */
  taken: number;
  /** Rows from `end` on were withdrawn and will not be written. */
  end: number;
}

/** What an abort left unwritten: rows only in memory are lost; spooled ones stay in the spool. */
export interface UnwrittenRows {
  readonly inMemoryOnly: number;
  readonly spooled: number;
}

/** The part of a row group that a batch holds: rows [start, start + count) of the batch. */
interface Share {
  readonly group: RowGroup;
  readonly start: number;
  readonly count: number;
  /** Index in group.rows of the share's first row. */
  readonly offset: number;
}

interface Batch {
  readonly rows: string[];
  readonly shares: Share[];
}

/**
 * The in-memory buffer and its flusher.
 *
 * Rows wait in `queue` until a batch is due: `batchMaxRows` are waiting, the oldest has waited
 * `batchMaxWaitMs`, or the buffer is draining. Up to `flushConcurrency` batches are written at once;
 * rows that arrive meanwhile make the next batch larger. `depth` (queued plus in-flight rows) never
 * exceeds `bufferMaxRows` for callers that ask for room first.
 *
 * A batch that PostgreSQL refuses for a row's sake (SQLSTATE class 22 or 23) is split in halves
 * until the refused rows stand alone; they go to rejected_metrics and every other row is stored.
 * A batch that fails for any other reason is retried with jittered backoff until it succeeds or the
 * batcher is aborted, so an accepted row is never dropped while the process lives.
 */
export class Batcher {
  private readonly queue: RowGroup[] = [];
  private readonly inFlight = new Set<Batch>();
  private queuedRows = 0;
  private inFlightRows = 0;
  private inFlightBatches = 0;
  private timer: NodeJS.Timeout | undefined;
  private draining = false;
  private aborted = false;
  private readonly roomWaiters = new Set<() => void>();
  private readonly idleWaiters = new Set<() => void>();
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;

  constructor(private readonly options: BatcherOptions) {
    this.retryBaseMs = options.retryBaseMs ?? 100;
    this.retryMaxMs = options.retryMaxMs ?? 5000;
  }

  /** Rows buffered or being written. */
  get depth(): number {
    return this.queuedRows + this.inFlightRows;
  }

  get capacity(): number {
    return this.options.bufferMaxRows;
  }

  /** An empty buffer always has room, so a chunk larger than the whole buffer still gets in. */
  hasRoom(rows: number): boolean {
    return this.depth === 0 || this.depth + rows <= this.options.bufferMaxRows;
  }

  /**
   * Appends `rows` as soon as they fit, and resolves true; false when they did not fit within
   * `timeoutMs` (undefined: wait as long as it takes), the buffer was aborted, or `cancelled()` says so
   * when room is next looked for. The check for room and the append happen in one step, so callers
   * woken together cannot overshoot `bufferMaxRows`.
   */
  async appendWhenRoom(
    rows: readonly string[],
    options: AppendOptions,
    timeoutMs?: number,
    cancelled?: () => boolean,
  ): Promise<boolean> {
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      if (this.aborted || cancelled?.() === true) return false;
      if (this.hasRoom(rows.length)) {
        this.append(rows, options);
        return true;
      }
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.roomWaiters.delete(wake);
          resolve();
        };
        const timer = left === Infinity ? undefined : setTimeout(wake, left);
        this.roomWaiters.add(wake);
      });
    }
  }

  /** Takes rows (COPY text) into the buffer. The caller has checked `hasRoom` (or waited for it). */
  append(rows: readonly string[], { ticket, lines, spool }: AppendOptions = {}): void {
    if (this.aborted) throw new Error('the buffer is closed');
    if (rows.length === 0) return;
    const chunk = ticket?.addChunk(rows.length, lines?.[0]);
    this.queue.push({ rows, lines, ticket, chunk, spool, enqueuedAt: Date.now(), taken: 0, end: rows.length });
    this.queuedRows += rows.length;
    this.pump();
  }

  /**
   * Takes the rows of `ticket` that are not yet in a batch back out of the buffer: they will not be
   * written. Returns how many, and the line of the first one. Rows already in a batch are not touched;
   * since batches are cut in order, every row of the ticket before the first withdrawn one is in a
   * batch or settled.
   */
  withdraw(ticket: IngestTicket): { rows: number; firstLine: number | undefined } {
    let rows = 0;
    let firstLine: number | undefined;
    for (const group of this.queue) {
      if (group.ticket !== ticket || group.taken === group.end) continue;
      const count = group.end - group.taken;
      firstLine ??= group.lines?.[group.taken];
      group.end = group.taken;
      rows += count;
      ticket.rowsWithdrawn(group.chunk as TicketChunk, count);
    }
    if (rows === 0) return { rows, firstLine };
    this.queuedRows -= rows;
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const group = this.queue[i] as RowGroup;
      if (group.taken === group.end) this.queue.splice(i, 1);
    }
    for (const wake of this.roomWaiters) wake();
    this.pump();
    return { rows, firstLine };
  }

  /** Wakes every caller waiting for room, so that each looks again (and at its `cancelled`). */
  wakeWaiters(): void {
    for (const wake of this.roomWaiters) wake();
  }

  /** Writes out everything buffered now; resolves when nothing is queued or in flight. */
  async drain(): Promise<void> {
    if (this.depth === 0) return;
    this.draining = true;
    this.pump();
    await new Promise<void>((resolve) => this.idleWaiters.add(resolve));
  }

  /**
   * Stops retrying and refuses new rows; returns the rows still buffered or in flight, split by
   * whether a spool holds them. Only for a shutdown whose deadline has passed.
   */
  abort(): UnwrittenRows {
    this.aborted = true;
    clearTimeout(this.timer);
    for (const wake of this.roomWaiters) wake();
    for (const resolve of this.idleWaiters) resolve();
    this.idleWaiters.clear();
    let spooled = 0;
    for (const group of this.queue) if (group.spool !== undefined) spooled += group.end - group.taken;
    for (const batch of this.inFlight) {
      for (const share of batch.shares) if (share.group.spool !== undefined) spooled += share.count;
    }
    return { inMemoryOnly: this.depth - spooled, spooled };
  }

  private pump(): void {
    while (this.inFlightBatches < this.options.flushConcurrency && this.batchIsDue()) {
      void this.flush(this.cutBatch());
    }
    this.scheduleTimer();
  }

  private batchIsDue(): boolean {
    const oldest = this.queue[0];
    if (oldest === undefined || this.aborted) return false;
    return (
      this.draining ||
      this.queuedRows >= this.options.batchMaxRows ||
      Date.now() - oldest.enqueuedAt >= this.options.batchMaxWaitMs
    );
  }

  private scheduleTimer(): void {
    const oldest = this.queue[0];
    if (oldest === undefined && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    // With every flush slot busy, the end of a flush pumps again; a timer would only spin.
    const slotsBusy = this.inFlightBatches >= this.options.flushConcurrency;
    if (this.timer !== undefined || oldest === undefined || this.aborted || slotsBusy) return;
    const delay = Math.max(0, oldest.enqueuedAt + this.options.batchMaxWaitMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, delay);
  }

  private cutBatch(): Batch {
    const rows: string[] = [];
    const shares: Share[] = [];
    while (rows.length < this.options.batchMaxRows) {
      const group = this.queue[0];
      if (group === undefined) break;
      const offset = group.taken;
      const count = Math.min(group.end - offset, this.options.batchMaxRows - rows.length);
      shares.push({ group, start: rows.length, count, offset });
      for (let i = offset; i < offset + count; i++) rows.push(group.rows[i] as string);
      group.taken += count;
      if (group.taken === group.end) this.queue.shift();
    }
    this.queuedRows -= rows.length;
    this.inFlightRows += rows.length;
    this.inFlightBatches += 1;
    const batch = { rows, shares };
    this.inFlight.add(batch);
    return batch;
  }

  private async flush(batch: Batch): Promise<void> {
    const started = process.hrtime.bigint();
    try {
      await this.writeRange(batch, 0, batch.rows.length);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.options.observer?.flushed?.(batch.rows.length, seconds);
      this.options.logger.info({ rows: batch.rows.length, ms: Math.round(seconds * 1000) }, 'batch flushed');
    } catch (error) {
      // Only an abort gets here (writeRange retries everything else, refuseRow records every refusal);
      // the rows are counted by abort()'s caller.
      this.options.logger.error({ err: error, rows: batch.rows.length }, 'batch abandoned');
    } finally {
      this.inFlight.delete(batch);
      this.inFlightBatches -= 1;
      this.inFlightRows -= batch.rows.length;
      for (const wake of this.roomWaiters) wake();
      this.pump();
      if (this.depth === 0) {
        this.draining = false;
        for (const resolve of this.idleWaiters) resolve();
        this.idleWaiters.clear();
      }
    }
  }

  /** Stores rows [lo, hi) of the batch, isolating refused rows by halving. */
  private async writeRange(batch: Batch, lo: number, hi: number): Promise<void> {
    const attempts: WriteAttempts = {};
    for (let attempt = 0; ; attempt++) {
      try {
        const spooled = this.spoolRanges(batch, lo, hi);
        await this.options.writer.write(
          lo === 0 && hi === batch.rows.length ? batch.rows : batch.rows.slice(lo, hi),
          spooled,
          attempts,
        );
        this.settleCommitted(batch, lo, hi);
        if (spooled.length > 0) this.options.onSpooledDone?.(spooled);
        return;
      } catch (error) {
        if (classifyFailure(error) === 'row') {
          if (hi - lo === 1) return await this.refuseRow(batch, lo, error);
          const mid = lo + Math.floor((hi - lo) / 2);
          await this.writeRange(batch, lo, mid);
          await this.writeRange(batch, mid, hi);
          return;
        }
        await this.backOff(attempt, error, hi - lo);
      }
    }
  }

  private async refuseRow(batch: Batch, index: number, error: unknown): Promise<void> {
    const row = batch.rows[index] as string;
    const reason = error instanceof Error ? error.message : String(error);
    const detail = (error as { detail?: unknown }).detail;
    const rejected = rejectedRow(row, typeof detail === 'string' ? `${reason}: ${detail}` : reason);
    const spooled = this.spoolRanges(batch, index, index + 1);
    await this.recordRefusal(rejected, spooled, row);
    this.options.logger.warn({ sqlState: sqlState(error), reason: rejected.reason }, 'row refused at flush');
    const code = rejectionCode(error);
    this.options.observer?.refused?.(1, code);
    if (code === 'unknown_reference') this.options.onUnknownReference?.();
    const share = this.shareOf(batch, index);
    const position = share.offset + (index - share.start);
    const chunk = share.group.chunk;
    if (chunk !== undefined) {
      share.group.ticket?.rowRefused(chunk, {
        line: share.group.lines?.[position],
        error: rejectionCode(error),
        message: rejected.reason,
      });
    }
  }

  /**
   * Stores a refused row in rejected_metrics, retrying transient failures. If PostgreSQL refuses the
   * record itself (a damaged row whose received_at is no timestamp), the row is recorded again as its
   * raw text with the time of now, so it still ends somewhere.
   */
  private async recordRefusal(rejected: RejectedRow, spooled: SpoolRange[], row: string): Promise<void> {
    let record = rejected;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.options.writer.reject([record], spooled);
        if (spooled.length > 0) this.options.onSpooledDone?.(spooled);
        return;
      } catch (rejectError) {
        if (classifyFailure(rejectError) === 'row') {
          if (record.payload.raw_row !== undefined) {
            this.options.logger.error({ err: rejectError, reason: record.reason }, 'refused row could not be recorded');
            return;
          }
          record = rawRejectedRow(row, `${rejected.reason}; recording it failed: ${errorMessage(rejectError)}`);
          continue;
        }
        await this.backOff(attempt, rejectError, 1);
      }
    }
  }

  private async backOff(attempt: number, error: unknown, rows: number): Promise<void> {
    if (this.aborted) throw error;
    const delay = retryDelayMs(attempt, this.retryBaseMs, this.retryMaxMs);
    this.options.observer?.flushFailed?.(error);
    this.options.logger.warn(
      { err: error, sqlState: sqlState(error), rows, attempt, retryInMs: Math.round(delay) },
      'batch write failed; retrying',
    );
    await new Promise((resolve) => setTimeout(resolve, delay));
    if (this.aborted) throw error;
  }

  private settleCommitted(batch: Batch, lo: number, hi: number): void {
    for (const share of batch.shares) {
      const from = Math.max(lo, share.start);
      const to = Math.min(hi, share.start + share.count);
      const chunk = share.group.chunk;
      if (to > from && chunk !== undefined) share.group.ticket?.rowsCommitted(chunk, to - from);
    }
  }

  /** The spool sequence numbers of the spooled rows among rows [lo, hi) of the batch. */
  private spoolRanges(batch: Batch, lo: number, hi: number): SpoolRange[] {
    const ranges: SpoolRange[] = [];
    for (const share of batch.shares) {
      const spool = share.group.spool;
      const from = Math.max(lo, share.start);
      const to = Math.min(hi, share.start + share.count);
      if (spool === undefined || to <= from) continue;
      const firstSeq = spool.firstSeq + share.offset + (from - share.start);
      ranges.push({ spoolId: spool.spoolId, firstSeq, lastSeq: firstSeq + (to - from) - 1 });
    }
    return ranges;
  }

  private shareOf(batch: Batch, index: number): Share {
    const share = batch.shares.find((s) => index >= s.start && index < s.start + s.count);
    if (share === undefined) throw new Error(`row ${index} belongs to no share of its batch`);
    return share;
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A row as rejected_metrics keeps it: decoded when it can be, else its raw text. */
function rejectedRow(row: string, reason: string): RejectedRow {
  try {
    const decoded = decodeMetricRow(row);
    return { receivedAt: decoded.receivedAt, payload: decoded.metric, reason };
  } catch (error) {
    return rawRejectedRow(row, `${reason}; the row could not be decoded: ${errorMessage(error)}`);
  }
}

function rawRejectedRow(row: string, reason: string): RejectedRow {
  // JSON (jsonb) cannot hold NUL characters, which a damaged row may have.
  return { receivedAt: new Date().toISOString(), payload: { raw_row: row.replace(/\0/g, '\uFFFD') }, reason };
}
