import type { Logger } from 'pino';
import { AppError, type ErrorCode, type ErrorDetail } from '../contract/errors';
import { isDatabaseUnavailable } from '../db/sqlstate';
import { SpoolFull, type Spool } from '../spool/spool';
import type { Batcher } from './batcher';
import { encodeMetricRow } from './copy-encode';
import { NdjsonLineSplitter, type BadLineReason, type LineSink } from './ndjson';
import type { MissingReferences, ReferenceCache } from './references';
import { MAX_DETAIL_TEXT_CHARS, boundedText, checkMetric, type Metric } from './schema';
import { quickCheckMetric } from './quick-check';
import { IngestTicket } from './ticket';
import { recordedTimeText } from './time';
import {
  MAX_LISTED_ERRORS,
  MAX_LISTED_ERRORS_BYTES,
  type BulkProgress,
  type BulkResult,
  type LineError,
  type SingleResult as SingleAnswer,
} from '../contract/schemas';

/** Which endpoint rows came in through, for Prometheus and the status page. */
export type IntakeEndpoint = 'single' | 'bulk';

/**
 * When a request is answered (its `wait` parameter): `stored` once its rows are committed (201, or
 * 200 for bulk); `queued` once they are in the spool, or in the buffer when there is no spool (202).
 */
export type AckWhen = 'stored' | 'queued';

export interface IntakeOptions {
  readonly batcher: Batcher;
  readonly references: ReferenceCache;
  readonly ackTimeoutMs: number;
  readonly bulkBackpressureTimeoutMs: number;
  readonly maxLineBytes: number;
  /** With a spool, `wait=false` rows are on disk before they are acknowledged. */
  readonly spool?: Spool;
  /** Observes rows refused at the door, for Prometheus and the status page; optional. */
  readonly onRefused?: (rows: number, reason: ErrorCode, endpoint: IntakeEndpoint) => void;
  /**
   * Observes rows taken into the buffer, for Prometheus and the status page; optional. Called once
   * per request or bulk chunk with each row's time_recorded in epoch milliseconds, and the time they
   * were received.
   */
  readonly onAccepted?: (endpoint: IntakeEndpoint, receivedAtMs: number, recordedAtMs: readonly number[]) => void;
  /** Observes rows spooled without a reference check because PostgreSQL could not be asked; optional. */
  readonly onUnchecked?: (rows: number) => void;
  readonly logger?: Logger;
}

export interface SingleResult {
  readonly status: 201 | 202;
  readonly body: SingleAnswer;
}

/** How far a bulk upload got when it was answered part-way: every field is known here. */
type UploadProgress = BulkResult & Required<Pick<BulkProgress, 'pending' | 'resend_from_line'>>;

/** A bulk upload answered before all of it was durable: the error, plus how far the upload got. */
export class PartialUploadError extends AppError {
  constructor(
    cause: AppError,
    readonly progress: UploadProgress,
  ) {
    super(
      cause.code,
      `${cause.message}; ${progress.accepted} rows are stored, send again from line ${progress.resend_from_line}` +
        (progress.pending > 0 ? ` (${progress.pending} rows from there on may still be stored later)` : ''),
      {
        details: [
          ...cause.details,
          { path: '', message: 'lines from here on must be sent again', line: progress.resend_from_line },
        ],
        retryAfterSeconds: cause.retryAfterSeconds,
        cause,
      },
    );
  }

  override toJSON(): ReturnType<AppError['toJSON']> & UploadProgress {
    return { ...super.toJSON(), ...this.progress };
  }
}

/** 503 for rows that were taken but not committed in time: they may still commit later. */
function notCommittedInTime(rows: number): AppError {
  return new AppError(
    'unavailable',
    `${rows === 1 ? 'the metric was' : `${rows} rows were`} not committed: writing made no progress ` +
      'within ACK_TIMEOUT_MS; retry (with event_id to stay idempotent)',
  );
}

function referenceDetails(metric: Metric, missing: MissingReferences): ErrorDetail[] {
  const details: ErrorDetail[] = [];
  if (missing.users.has(metric.user_id))
    details.push({ path: '/user_id', message: `no user with id ${metric.user_id}` });
  if (metric.device_id != null && missing.devices.has(metric.device_id)) {
    details.push({
      path: '/device_id',
      message: `no device with id ${boundedText(JSON.stringify(metric.device_id), MAX_DETAIL_TEXT_CHARS)}`,
    });
  }
  return details;
}

const BAD_LINE_DETAILS: Record<BadLineReason, { error: ErrorCode; message: string }> = {
  too_long: { error: 'payload_too_large', message: 'the line is longer than the limit' },
  invalid_utf8: { error: 'invalid_json', message: 'the line is not valid UTF-8' },
};

const NOTHING_MISSING: MissingReferences = { users: new Set(), devices: new Set() };

/**
 * Writes rows to the spool; resolves once they are fsync'd, after which the spool hands them to the
 * buffer. A full spool is 429, any other failure 503: either way nothing of these rows was written.
 */
async function spoolRows(spool: Spool, rows: readonly string[]): Promise<void> {
  try {
    await spool.append(rows);
  } catch (error) {
    if (error instanceof SpoolFull) {
      throw new AppError('overloaded', `${error.message}: the database is not keeping up; retry later`, {
        retryAfterSeconds: 5,
      });
    }
    throw new AppError('unavailable', 'the rows could not be written to the spool; retry later', { cause: error });
  }
}

/** Validates metrics, checks their references, encodes them and hands them to the buffer. */
export class MetricIntake {
  constructor(private readonly options: IntakeOptions) {}

  async acceptOne(body: unknown, ack: AckWhen): Promise<SingleResult> {
    const { batcher, spool } = this.options;
    const check = checkMetric(body, Date.now());
    if (!check.ok) {
      this.options.onRefused?.(1, 'validation_failed', 'single');
      throw new AppError('validation_failed', 'the metric does not match the schema', {
        details: check.details,
      });
    }
    const { metric, timeRecorded } = check;
    const missing = await this.findMissing([metric.user_id], metric.device_id == null ? [] : [metric.device_id], ack);
    const unknown = referenceDetails(metric, missing);
    if (unknown.length > 0) {
      this.options.onRefused?.(1, 'unknown_reference', 'single');
      throw new AppError('unknown_reference', 'the metric names a user or device that does not exist', {
        details: unknown,
      });
    }
    const spooled = ack === 'queued' && spool !== undefined;
    if (!spooled && !batcher.hasRoom(1)) {
      this.options.onRefused?.(1, 'overloaded', 'single');
      throw new AppError('overloaded', 'the buffer is full; retry later');
    }
    const receivedAtMs = Date.now();
    const row = encodeMetricRow(metric, timeRecorded, new Date(receivedAtMs).toISOString());
    const echo = metric.event_id === undefined ? {} : { event_id: metric.event_id };
    if (ack === 'queued') {
      if (spool === undefined) batcher.append([row]);
      else await spoolRows(spool, [row]);
      this.options.onAccepted?.('single', receivedAtMs, [check.timeRecordedMs]);
      return { status: 202, body: { status: 'queued', ...echo } };
    }
    const ticket = new IngestTicket();
    batcher.append([row], { ticket });
    this.options.onAccepted?.('single', receivedAtMs, [check.timeRecordedMs]);
    ticket.seal();
    if (!(await ticket.settledWithin(this.options.ackTimeoutMs))) throw notCommittedInTime(1);
    const refused = ticket.rejections[0];
    if (refused !== undefined) throw new AppError(refused.error, refused.message);
    return { status: 201, body: { status: 'stored', ...echo } };
  }

  /**
   * Reads an NDJSON body chunk by chunk. Each chunk's valid lines enter the buffer (or the spool)
   * before the next chunk is read, so a full buffer slows the reading of the socket instead of
   * growing memory. An upload that stops part-way is answered with how far it got (PartialUploadError).
   */
  async acceptBulk(source: AsyncIterable<Buffer>, ack: AckWhen): Promise<BulkResult> {
    const ticket = ack === 'stored' ? new IngestTicket() : undefined;
    const upload = new BulkUpload(this.options, ticket, (userIds, deviceIds) =>
      this.findMissing(userIds, deviceIds, ack),
    );
    try {
      for await (const chunk of source) {
        upload.splitter.push(chunk, upload);
        await upload.flushChunk();
      }
      upload.splitter.end(upload);
      await upload.flushChunk();
    } catch (error) {
      throw await upload.stoppedPartWay(error);
    }
    return upload.finish();
  }

  /**
   * The references among these that do not exist. Queued (wait=false) with a spool, rows whose
   * references cannot be checked now (PostgreSQL unreachable or too slow) are taken unchecked: they are
   * spooled, and checked when they are written, where a missing user or device sends the row to
   * rejected_metrics. Stored (wait=true): the client is waiting for the database anyway, 503.
   */
  private async findMissing(
    userIds: readonly number[],
    deviceIds: readonly string[],
    ack: AckWhen,
  ): Promise<MissingReferences> {
    try {
      return await this.options.references.findMissing(userIds, deviceIds);
    } catch (error) {
      if (ack === 'stored' || this.options.spool === undefined || !databaseUnreachable(error)) throw error;
      this.options.onUnchecked?.(userIds.length);
      this.options.logger?.warn(
        { err: error, rows: userIds.length },
        'references not checked (PostgreSQL unreachable): rows spooled, to be checked when written',
      );
      return NOTHING_MISSING;
    }
  }
}

function databaseUnreachable(error: unknown): boolean {
  return (error instanceof AppError && error.code === 'unavailable') || isDatabaseUnavailable(error);
}

/** A body that broke off (400), stalled (408) or grew past a limit (413): the lines before it stand. */
const BODY_FAILURE_STATUSES = new Set([400, 408, 413]);

/** The state of one bulk upload: the current chunk's valid lines, and the running totals. */
class BulkUpload implements LineSink {
  readonly splitter: NdjsonLineSplitter;
  private readonly errors = new BoundedLineErrors();
  private rejected = 0;
  /** Rows made durable without a ticket (wait=false: spooled; with SPOOL=false, buffered). */
  private rowsTaken = 0;
  /** Every line before this one has been taken into the buffer or spool, or refused. */
  private firstUnhandledLine = 1;
  /** The current chunk's bad lines; references are checked after parsing, so they come in out of order. */
  private chunkErrors: LineError[] = [];
  /** The current chunk's valid lines, column by column: no object per row. */
  private valid = new ValidLines();
  private receivedAt = '';
  private now = Date.now();

  constructor(
    private readonly options: IntakeOptions,
    private readonly ticket: IngestTicket | undefined,
    private readonly findMissing: (userIds: number[], deviceIds: string[]) => Promise<MissingReferences>,
  ) {
    this.splitter = new NdjsonLineSplitter(options.maxLineBytes);
  }

  line(number: number, text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      this.refuse(number, 'invalid_json', [
        { path: '', message: boundedText((error as Error).message, MAX_DETAIL_TEXT_CHARS) },
      ]);
      return;
    }
    const recordedMs = quickCheckMetric(value, this.now);
    if (recordedMs !== undefined) {
      this.valid.add(number, value as Metric, recordedMs);
      return;
    }
    const check = checkMetric(value, this.now);
    if (!check.ok) {
      this.refuse(number, 'validation_failed', check.details);
      return;
    }
    this.valid.add(number, check.metric, check.timeRecordedMs);
  }

  badLine(number: number, reason: BadLineReason): void {
    const { error, message } = BAD_LINE_DETAILS[reason];
    this.refuse(number, error, [{ path: '', message }]);
  }

  /** Checks the references of the chunk's valid lines, encodes them and hands them over. */
  async flushChunk(): Promise<void> {
    const valid = this.valid;
    const linesSeen = this.splitter.linesSeen;
    this.valid = new ValidLines();
    this.now = Date.now();
    this.receivedAt = new Date(this.now).toISOString();
    if (valid.metrics.length === 0) {
      this.listChunkErrors();
      this.firstUnhandledLine = linesSeen + 1;
      return;
    }

    const missing = await this.findMissing(valid.userIds, valid.deviceIds);
    const anyMissing = missing.users.size > 0 || missing.devices.size > 0;
    const taken = anyMissing ? this.withoutUnknownReferences(valid, missing) : valid;
    const { metrics } = taken;
    const rows: string[] = new Array<string>(metrics.length);
    for (let i = 0; i < metrics.length; i++) {
      const metric = metrics[i] as Metric;
      rows[i] = encodeMetricRow(metric, recordedTimeText(metric.time_recorded), this.receivedAt);
    }
    if (rows.length > 0) await this.spoolOrBuffer(rows, taken.lines);
    this.listChunkErrors();
    this.firstUnhandledLine = linesSeen + 1;
    if (rows.length > 0) this.options.onAccepted?.('bulk', this.now, taken.recordedMs);
  }

  /** The lines whose user and device exist; the others are refused. */
  private withoutUnknownReferences(valid: ValidLines, missing: MissingReferences): ValidLines {
    const known = new ValidLines();
    for (let i = 0; i < valid.metrics.length; i++) {
      const metric = valid.metrics[i] as Metric;
      const line = valid.lines[i] as number;
      const unknown = referenceDetails(metric, missing);
      if (unknown.length > 0) this.refuse(line, 'unknown_reference', unknown);
      else known.add(line, metric, valid.recordedMs[i] as number);
    }
    return known;
  }

  /** Into the spool (queued, with a spool) or the buffer; a 429 when neither takes them in time. */
  private async spoolOrBuffer(rows: string[], rowLines: number[]): Promise<void> {
    const { batcher, spool, bulkBackpressureTimeoutMs } = this.options;
    if (this.ticket === undefined && spool !== undefined) {
      await spoolRows(spool, rows);
      this.rowsTaken += rows.length;
      return;
    }
    const taken = await batcher.appendWhenRoom(
      rows,
      { ticket: this.ticket, lines: rowLines },
      bulkBackpressureTimeoutMs,
    );
    if (!taken) {
      this.options.onRefused?.(rows.length, 'overloaded', 'bulk');
      throw new AppError(
        'overloaded',
        `the buffer stayed full for ${bulkBackpressureTimeoutMs} ms (BULK_BACKPRESSURE_TIMEOUT_MS)`,
        { retryAfterSeconds: 5 },
      );
    }
    if (this.ticket === undefined) this.rowsTaken += rows.length;
  }

  async finish(): Promise<BulkResult> {
    const { ticket } = this;
    if (ticket === undefined) return this.answer(this.rowsTaken);
    ticket.seal();
    if (!(await ticket.settledWithin(this.options.ackTimeoutMs))) {
      throw await this.stoppedPartWay(notCommittedInTime(ticket.pending), { waitForWrites: false });
    }
    return this.answer(ticket.committed);
  }

  /**
   * The upload stopped part-way (a body that broke off, stalled or grew too large; a full buffer or
   * spool; rows not committed in time): the answer says what is durable and from which line to send
   * again. Rows of this upload still waiting in the buffer are taken out of it, and rows already being
   * written are given until ACK_TIMEOUT_MS to settle, so that the answer can be exact.
   */
  async stoppedPartWay(thrown: unknown, { waitForWrites = true } = {}): Promise<unknown> {
    const cause = thrown instanceof AppError ? thrown : databaseUnreachable(thrown) ? unavailable(thrown) : undefined;
    const stoppedUpload =
      cause !== undefined && (BODY_FAILURE_STATUSES.has(cause.status) || cause.status === 429 || cause.status === 503);
    let resendFrom = this.firstUnhandledLine;
    let accepted = this.rowsTaken;
    let pending = 0;
    const { ticket } = this;
    if (ticket !== undefined) {
      const withdrawn = this.options.batcher.withdraw(ticket);
      if (withdrawn.firstLine !== undefined) resendFrom = Math.min(resendFrom, withdrawn.firstLine);
      ticket.seal();
      if (waitForWrites) await ticket.settledWithin(this.options.ackTimeoutMs);
      resendFrom = Math.min(resendFrom, ticket.firstPendingLine() ?? resendFrom);
      accepted = ticket.committed;
      pending = ticket.pending;
    }
    if (!stoppedUpload) return thrown;
    return new PartialUploadError(cause, { ...this.answer(accepted), pending, resend_from_line: resendFrom });
  }

  /** The answer's counts: durable rows, refused lines (at the door and at flush), the bounded list. */
  private answer(accepted: number): BulkResult {
    const refusedAtFlush = this.ticket?.rejections ?? [];
    for (const refused of refusedAtFlush) {
      this.errors.add({
        line: refused.line ?? 0,
        error: refused.error,
        details: [{ path: '', message: refused.message }],
      });
    }
    const rejected = this.rejected + refusedAtFlush.length;
    const errors = this.errors.sorted();
    const body: BulkResult = { accepted, rejected, errors };
    if (rejected > errors.length) body.errors_omitted = rejected - errors.length;
    return body;
  }

  private refuse(line: number, error: ErrorCode, details: readonly ErrorDetail[]): void {
    this.rejected += 1;
    this.options.onRefused?.(1, error, 'bulk');
    // Not capped here: a chunk is small, and its errors are only in line order once sorted.
    if (!this.errors.full) this.chunkErrors.push({ line, error, details: [...details] });
  }

  private listChunkErrors(): void {
    if (this.chunkErrors.length === 0) return;
    this.chunkErrors.sort((a, b) => a.line - b.line);
    for (const error of this.chunkErrors) this.errors.add(error);
    this.chunkErrors = [];
  }
}

/** Valid lines, column by column, in line order. */
class ValidLines {
  readonly lines: number[] = [];
  readonly metrics: Metric[] = [];
  /** time_recorded in epoch milliseconds. */
  readonly recordedMs: number[] = [];
  readonly userIds: number[] = [];
  readonly deviceIds: string[] = [];

  add(line: number, metric: Metric, recordedMs: number): void {
    this.lines.push(line);
    this.metrics.push(metric);
    this.recordedMs.push(recordedMs);
    this.userIds.push(metric.user_id);
    if (metric.device_id != null) this.deviceIds.push(metric.device_id);
  }
}

function unavailable(cause: unknown): AppError {
  return new AppError('unavailable', undefined, { cause });
}

/** The refused lines an answer lists: the first MAX_LISTED_ERRORS, within MAX_LISTED_ERRORS_BYTES. */
class BoundedLineErrors {
  private readonly list: LineError[] = [];
  private bytes = 0;
  private closed = false;

  get full(): boolean {
    return this.closed;
  }

  add(error: LineError): void {
    if (this.closed) return;
    // Stringifying also flattens each message: an invalid_json message quotes a slice of its line,
    // and a line is a slice of its whole chunk's text (ndjson.ts), which it would otherwise keep alive.
    const bytes = JSON.stringify(error).length + 1;
    if (this.list.length >= MAX_LISTED_ERRORS || this.bytes + bytes > MAX_LISTED_ERRORS_BYTES) {
      this.closed = true;
      return;
    }
    this.bytes += bytes;
    this.list.push(error);
  }

  sorted(): LineError[] {
    return this.list.sort((a, b) => a.line - b.line);
  }
}
