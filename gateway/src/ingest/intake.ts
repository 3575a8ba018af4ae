import { AppError, type ErrorCode, type ErrorDetail } from '../errors';
import type { Spool } from '../spool/spool';
import type { AppendOptions, Batcher } from './batcher';
import { encodeMetricRow } from './copy-encode';
import { NdjsonLineSplitter, type BadLineReason, type LineSink } from './ndjson';
import type { MissingReferences, ReferenceCache } from './references';
import { checkMetric, type Metric } from './schema';
import { IngestTicket } from './ticket';

export const MAX_LISTED_ERRORS = 1000;

/** Which endpoint rows came in through, for metrics. */
export type IntakeEndpoint = 'single' | 'bulk';

export interface IntakeOptions {
  readonly batcher: Batcher;
  readonly references: ReferenceCache;
  readonly ackTimeoutMs: number;
  readonly bulkBackpressureTimeoutMs: number;
  readonly maxLineBytes: number;
  /** With a spool, `wait=false` rows are on disk before they are acknowledged. */
  readonly spool?: Spool;
  /** Observes rows refused at the door, for metrics; optional. */
  readonly onRefused?: (rows: number, reason: ErrorCode, endpoint: IntakeEndpoint) => void;
  /**
   * Observes rows taken into the buffer, for metrics; optional. Called once per request or bulk chunk
   * with each row's time_recorded in epoch milliseconds, and the time they were received.
   */
  readonly onAccepted?: (endpoint: IntakeEndpoint, receivedAtMs: number, recordedAtMs: readonly number[]) => void;
}

export interface SingleResult {
  readonly status: 201 | 202;
  readonly body: { status: 'stored' | 'queued'; event_id?: string };
}

export interface LineError {
  readonly line: number;
  readonly error: ErrorCode;
  readonly details: readonly ErrorDetail[];
}

export interface BulkBody {
  accepted: number;
  rejected: number;
  errors: LineError[];
}

/** 503 for rows that were taken but not committed in time: they may still commit later. */
function notCommittedInTime(rows: number): AppError {
  return new AppError(
    'unavailable',
    `${rows === 1 ? 'the metric was' : `${rows} rows were`} not committed: writing made no progress ` +
      'within ACK_TIMEOUT_MS; retry (with event_id to stay idempotent)',
    [],
    5,
  );
}

function referenceDetails(metric: Metric, missing: MissingReferences): ErrorDetail[] {
  const details: ErrorDetail[] = [];
  if (missing.users.has(metric.user_id))
    details.push({ path: '/user_id', message: `no user with id ${metric.user_id}` });
  if (metric.device_id != null && missing.devices.has(metric.device_id)) {
    details.push({ path: '/device_id', message: `no device with id ${JSON.stringify(metric.device_id)}` });
  }
  return details;
}

const BAD_LINE_DETAILS: Record<BadLineReason, { error: ErrorCode; message: string }> = {
  too_long: { error: 'payload_too_large', message: 'the line is longer than the limit' },
  invalid_utf8: { error: 'invalid_json', message: 'the line is not valid UTF-8' },
};

/**
 * Hands rows to the buffer. Rows that will be acknowledged before they are committed (wait=false)
 * are first appended to the spool, if there is one; the returned promise resolves once they are on
 * disk. Rows that wait for their commit need no spool: their acknowledgement already means stored.
 */
function handOver(options: IntakeOptions, rows: readonly string[], append: AppendOptions): Promise<void> | undefined {
  const spool = append.ticket === undefined ? options.spool : undefined;
  if (spool === undefined) {
    options.batcher.append(rows, append);
    return undefined;
  }
  const { position, durable } = spool.append(rows);
  options.batcher.append(rows, { ...append, spool: position });
  const written = durable.catch((error: unknown) => {
    throw new AppError('unavailable', 'the rows could not be written to the spool; retry later', [], 5, {
      cause: error,
    });
  });
  // A bulk upload awaits its chunks' writes only at the end; a failure before then is not unhandled.
  written.catch(() => undefined);
  return written;
}

/** Validates metrics, checks their references, encodes them and hands them to the buffer. */
export class MetricIntake {
  constructor(private readonly options: IntakeOptions) {}

  async acceptOne(body: unknown, wait: boolean): Promise<SingleResult> {
    const { batcher, references } = this.options;
    const check = checkMetric(body, Date.now());
    if (!check.ok) {
      this.options.onRefused?.(1, 'validation_failed', 'single');
      throw new AppError('validation_failed', 'the metric does not match the schema', check.details);
    }
    const { metric, timeRecorded } = check;
    const missing = await references.findMissing([metric.user_id], metric.device_id == null ? [] : [metric.device_id]);
    const unknown = referenceDetails(metric, missing);
    if (unknown.length > 0) {
      this.options.onRefused?.(1, 'unknown_reference', 'single');
      throw new AppError('unknown_reference', 'the metric names a user or device that does not exist', unknown);
    }
    if (!batcher.hasRoom(1)) {
      this.options.onRefused?.(1, 'overloaded', 'single');
      throw new AppError('overloaded', 'the buffer is full; retry later', [], 1);
    }
    const receivedAtMs = Date.now();
    const row = encodeMetricRow(metric, timeRecorded, new Date(receivedAtMs).toISOString());
    const echo = metric.event_id === undefined ? {} : { event_id: metric.event_id };
    if (!wait) {
      const durable = handOver(this.options, [row], {});
      this.options.onAccepted?.('single', receivedAtMs, [check.timeRecordedMs]);
      await durable;
      return { status: 202, body: { status: 'queued', ...echo } };
    }
    const ticket = new IngestTicket();
    handOver(this.options, [row], { ticket });
    this.options.onAccepted?.('single', receivedAtMs, [check.timeRecordedMs]);
    ticket.seal();
    if (!(await ticket.settledWithin(this.options.ackTimeoutMs))) throw notCommittedInTime(1);
    const refused = ticket.rejections[0];
    if (refused !== undefined) throw new AppError(refused.error, refused.message);
    return { status: 201, body: { status: 'stored', ...echo } };
  }

  /**
   * Reads an NDJSON body chunk by chunk. Each chunk's valid lines enter the buffer before the next
   * chunk is read, so a full buffer slows the reading of the socket instead of growing memory.
   */
  async acceptBulk(source: AsyncIterable<Buffer>, wait: boolean): Promise<BulkBody> {
    const upload = new BulkUpload(this.options, wait ? new IngestTicket() : undefined);
    try {
      for await (const chunk of source) {
        upload.splitter.push(chunk, upload);
        await upload.flushChunk();
      }
    } catch (error) {
      throw upload.interrupted(error);
    }
    upload.splitter.end(upload);
    await upload.flushChunk();
    return upload.finish();
  }
}

/** A body that broke off (400), stalled (408) or grew past a limit (413): the lines before it stand. */
const BODY_FAILURE_STATUSES = new Set([400, 408, 413]);

/** The state of one bulk upload: the current chunk's valid lines, and the running totals. */
class BulkUpload implements LineSink {
  readonly splitter: NdjsonLineSplitter;
  private readonly result: BulkBody = { accepted: 0, rejected: 0, errors: [] };
  /** The current chunk's bad lines; references are checked after parsing, so they come in out of order. */
  private chunkErrors: LineError[] = [];
  private metrics: Metric[] = [];
  private times: string[] = [];
  private lines: number[] = [];
  /** time_recorded of each of the chunk's valid lines, in epoch milliseconds. */
  private recordedMs: number[] = [];
  private receivedAt = '';
  private now = Date.now();
  /** Spool writes of this upload's chunks (wait=false), one promise per chunk. */
  private readonly spoolWrites: Promise<void>[] = [];

  constructor(
    private readonly options: IntakeOptions,
    private readonly ticket: IngestTicket | undefined,
  ) {
    this.splitter = new NdjsonLineSplitter(options.maxLineBytes);
  }

  line(number: number, text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      this.refuse(number, 'invalid_json', [{ path: '', message: (error as Error).message }]);
      return;
    }
    const check = checkMetric(value, this.now);
    if (!check.ok) {
      this.refuse(number, 'validation_failed', check.details);
      return;
    }
    this.metrics.push(check.metric);
    this.times.push(check.timeRecorded);
    this.lines.push(number);
    this.recordedMs.push(check.timeRecordedMs);
  }

  badLine(number: number, reason: BadLineReason): void {
    const { error, message } = BAD_LINE_DETAILS[reason];
    this.refuse(number, error, [{ path: '', message }]);
  }

  /** Checks the references of the chunk's valid lines, encodes them and waits for buffer room. */
  async flushChunk(): Promise<void> {
    const { metrics, times, lines, recordedMs } = this;
    this.metrics = [];
    this.times = [];
    this.lines = [];
    this.recordedMs = [];
    this.now = Date.now();
    this.receivedAt = new Date(this.now).toISOString();
    if (metrics.length === 0) {
      this.listChunkErrors();
      return;
    }

    const deviceIds: string[] = [];
    for (const metric of metrics) if (metric.device_id != null) deviceIds.push(metric.device_id);
    const missing = await this.options.references.findMissing(
      metrics.map((metric) => metric.user_id),
      deviceIds,
    );
    const anyMissing = missing.users.size > 0 || missing.devices.size > 0;
    const rows: string[] = [];
    const rowLines: number[] = [];
    const rowRecordedMs = anyMissing ? [] : recordedMs;
    for (let i = 0; i < metrics.length; i++) {
      const metric = metrics[i] as Metric;
      if (anyMissing) {
        const unknown = referenceDetails(metric, missing);
        if (unknown.length > 0) {
          this.refuse(lines[i] as number, 'unknown_reference', unknown);
          continue;
        }
        rowRecordedMs.push(recordedMs[i] as number);
      }
      rows.push(encodeMetricRow(metric, times[i] as string, this.receivedAt));
      rowLines.push(lines[i] as number);
    }
    this.listChunkErrors();
    if (rows.length === 0) return;

    const { batcher, bulkBackpressureTimeoutMs } = this.options;
    if (!(await batcher.waitForRoom(rows.length, bulkBackpressureTimeoutMs))) {
      this.options.onRefused?.(rows.length, 'overloaded', 'bulk');
      throw new AppError(
        'overloaded',
        `the buffer stayed full for ${bulkBackpressureTimeoutMs} ms; lines from ${rowLines[0]} on were not taken`,
        [{ path: '', message: 'not taken', line: rowLines[0] as number, accepted: this.result.accepted }],
        5,
      );
    }
    const durable = handOver(this.options, rows, { ticket: this.ticket, lines: rowLines });
    if (durable !== undefined) this.spoolWrites.push(durable);
    this.result.accepted += rows.length;
    this.options.onAccepted?.('bulk', this.now, rowRecordedMs);
  }

  async finish(): Promise<BulkBody> {
    const { ticket, result } = this;
    if (ticket === undefined) {
      await Promise.all(this.spoolWrites);
      return result;
    }
    ticket.seal();
    if (!(await ticket.settledWithin(this.options.ackTimeoutMs))) throw notCommittedInTime(result.accepted);
    if (ticket.rejections.length > 0) {
      for (const refused of ticket.rejections) {
        result.accepted -= 1;
        result.rejected += 1;
        result.errors.push({
          line: refused.line ?? 0,
          error: refused.error,
          details: [{ path: '', message: refused.message }],
        });
      }
      result.errors.sort((a, b) => a.line - b.line);
      result.errors.length = Math.min(result.errors.length, MAX_LISTED_ERRORS);
    }
    return result;
  }

  /**
   * The body failed part-way (a corrupt gzip stream is a 400 from the source): the answer says how
   * far it got, since the lines before were already taken.
   */
  interrupted(error: unknown): unknown {
    if (!(error instanceof AppError) || !BODY_FAILURE_STATUSES.has(error.status)) return error;
    const line = this.splitter.linesSeen + 1;
    const { accepted } = this.result;
    return new AppError(error.code, `${error.message}; the ${accepted} valid lines before line ${line} were taken`, [
      ...error.details,
      { path: '', message: 'the body broke off here', line, accepted },
    ]);
  }

  private refuse(line: number, error: ErrorCode, details: readonly ErrorDetail[]): void {
    this.result.rejected += 1;
    this.options.onRefused?.(1, error, 'bulk');
    // Not capped here: a chunk is small, and its errors are only in line order once sorted.
    if (this.result.errors.length < MAX_LISTED_ERRORS) this.chunkErrors.push({ line, error, details });
  }

  private listChunkErrors(): void {
    if (this.chunkErrors.length === 0) return;
    this.chunkErrors.sort((a, b) => a.line - b.line);
    for (const error of this.chunkErrors) {
      if (this.result.errors.length < MAX_LISTED_ERRORS) this.result.errors.push(error);
    }
    this.chunkErrors = [];
  }
}
