import { EventEmitter } from 'node:events';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { GZIP_OPTIONS, sendBulk, type Failure, type Retry, type SendOutcome } from './transport';
import { uuidv7 } from './uuidv7';
import type { Detail, Metric } from './wire';

const gzipAsync = promisify(gzip);

export interface ClientOptions {
  /** The gateway's base URL, e.g. `https://metrics.example.com`. */
  readonly url: string;
  /** An API key with the `ingest` scope, sent as `Authorization: Bearer KEY`. */
  readonly key?: string;
  /** Rows per bulk request; a request goes as soon as this many are queued. Default 5000. */
  readonly flushAt?: number;
  /** Queued rows go at the latest this long after the first of them was tracked. Default 1000 ms. */
  readonly flushIntervalMs?: number;
  /** Rows held at most (queued and in flight); when full, track() refuses the newest. Default 100,000. */
  readonly maxQueueRows?: number;
  /** One request's time limit. Default 30,000 ms. */
  readonly timeoutMs?: number;
  /** Retries of one batch after 429, 503 or a network error; then its rows are dropped. Default 10. */
  readonly retries?: number;
  /** A Retry-After longer than this is cut to it. Default 30,000 ms. */
  readonly maxRetryWaitMs?: number;
  /** Bulk requests in flight at once. Default 4. */
  readonly concurrency?: number;
}

/** A row the gateway refused, with its reason (never sent again: the same row would be refused again). */
export interface RefusedRow {
  readonly metric: Metric;
  /** The error code of the bulk answer's `errors` entry (`validation_failed`, `unknown_reference`, ...). */
  readonly error: string;
  readonly details: readonly Detail[];
}

/**
 * Why rows were given up without an answer for them: `queue_full` (track() found maxQueueRows held),
 * `closed` (track() after close()), `close_deadline` (close() ran out of time; rows in a request that
 * was cut may still have been stored), `retries_exhausted` (still 429/503/unreachable after the last
 * retry; they may have been stored), `request_refused` (the gateway refused the whole request, say 401,
 * or the answer was no bulk answer, say a proxy's page).
 */
export type DropReason = 'queue_full' | 'closed' | 'close_deadline' | 'retries_exhausted' | 'request_refused';

export interface ClientEvents {
  /** Rows committed by the gateway. */
  stored: [rows: readonly Metric[]];
  /** Rows refused, each with the reason from the bulk answer. */
  refused: [rows: readonly RefusedRow[]];
  /** Rows given up. */
  dropped: [rows: readonly Metric[], reason: DropReason, message: string];
  /** A request about to be sent again; `rows` of it. */
  retry: [retry: Retry & { readonly rows: number }];
}

/** What a client did over its life, as close() reports it. */
export interface ClientTotals {
  readonly tracked: number;
  readonly stored: number;
  readonly refused: number;
  readonly dropped: number;
}

const DEFAULTS = {
  flushAt: 5000,
  flushIntervalMs: 1000,
  maxQueueRows: 100_000,
  timeoutMs: 30_000,
  retries: 10,
  maxRetryWaitMs: 30_000,
  concurrency: 4,
} as const;

/**
 * The NDJSON line of a tracked metric, with a new UUIDv7 `event_id` first when it has none. Encoded
 * when tracked: the line is what is held, not a copy of the metric, so a metric changed by the caller
 * afterwards is sent as it was, and the held rows are flat strings, cheap for the garbage collector.
 */
function jsonLineOf(metric: Metric): string {
  const json: unknown = JSON.stringify(metric);
  if (typeof json !== 'string' || !json.startsWith('{')) {
    throw new TypeError('track() takes a metric that JSON encodes as an object');
  }
  // An event_id JSON leaves out (undefined, a function, a symbol) is none: the line gets a new one.
  const given: unknown = metric.event_id;
  if (given !== undefined && typeof given !== 'function' && typeof given !== 'symbol') return json;
  return json === '{}' ? `{"event_id":"${uuidv7()}"}` : `{"event_id":"${uuidv7()}",${json.slice(1)}`;
}

/** The metrics of held lines, for the events that report rows (decoded only when someone listens). */
function metricsOf(jsonLines: readonly string[]): Metric[] {
  return jsonLines.map((line) => JSON.parse(line) as Metric);
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive integer, not ${value}`);
  return value;
}

/**
 * Tracks metrics one at a time and sends them in gzip NDJSON bulk requests. Each row gets an
 * `event_id` (UUIDv7) when it has none, so a retry never stores it twice.
 *
 * Rows move: queue -> a batch in flight -> stored, refused or dropped (each row ends in exactly one
 * of these events). `queue` holds rows not yet in a batch from `head` on; `taken` (derived) counts
 * rows ever put in a batch and `flushUpTo` how many of them may go in a batch smaller than `flushAt`
 * (flush(), the interval, close()). `inFlight` holds the batches taken, at most `concurrency`, each
 * compressed and then sent. `held` (queued and in flight) never exceeds `maxQueueRows`.
 */
export class MetricsClient extends EventEmitter<ClientEvents> {
  private readonly options: Required<Omit<ClientOptions, 'key'>> & { readonly key?: string };
  /** The NDJSON lines of the rows tracked and not yet in a batch (from `head` on). */
  private queue: string[] = [];
  private head = 0;
  private tracked = 0;
  private flushUpTo = 0;
  private held = 0;
  private readonly inFlight = new Set<{ readonly firstRow: number; readonly done: Promise<void> }>();
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<ClientTotals> | undefined;
  private readonly abort = new AbortController();
  private readonly totals = { stored: 0, refused: 0, dropped: 0 };

  constructor(options: ClientOptions) {
    super();
    new URL(options.url); // a bad URL fails here, not at the first flush
    const merged = { ...DEFAULTS, ...options };
    for (const name of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) positiveInteger(name, merged[name]);
    this.options = merged;
  }

  /** Rows ever put in a batch: every row tracked but those still queued. */
  private get taken(): number {
    return this.tracked - (this.queue.length - this.head);
  }

  /** Rows held: queued, or in a request not yet answered. */
  get pendingRows(): number {
    return this.held;
  }

  /**
   * Queues one metric and returns true; returns false (and emits `dropped`) when the queue holds
   * maxQueueRows already, or the client is closed: the newest row is refused, never the queue grown.
   * The metric is encoded now, with an `event_id` (UUIDv7) added when it has none: changing the object
   * afterwards changes nothing sent. Throws a TypeError for what is not an object JSON can encode.
   */
  track(metric: Metric): boolean {
    if (metric === null || typeof metric !== 'object') throw new TypeError('track() takes a metric object');
    if (this.closing !== undefined) return this.drop([metric], 'closed', 'the client is closed');
    if (this.held >= this.options.maxQueueRows) {
      return this.drop([metric], 'queue_full', `${this.options.maxQueueRows} rows are held (maxQueueRows)`);
    }
    this.queue.push(jsonLineOf(metric));
    this.held += 1;
    this.tracked += 1;
    const queued = this.queue.length - this.head;
    // Once per full batch: a pump that cannot start it runs again when a batch in flight ends.
    if (queued === this.options.flushAt) setImmediate(() => this.pump());
    else if (queued === 1) this.armTimer();
    return true;
  }

  /** Sends every row tracked so far; resolves once each is stored, refused or dropped. */
  async flush(): Promise<void> {
    const target = this.tracked;
    this.flushUpTo = Math.max(this.flushUpTo, target);
    for (;;) {
      this.pump();
      const before = [...this.inFlight].filter((batch) => batch.firstRow < target);
      // Rows are batched in order, so none before target is left once no batch before it is in flight.
      if (before.length === 0) return;
      await Promise.race(before.map((batch) => batch.done));
    }
  }

  /**
   * Refuses new rows, sends what is held and resolves within `deadlineMs` (default 10 s): rows not
   * answered for by then are dropped (`close_deadline`). Idempotent. Await it before a short-lived
   * process exits.
   */
  close({ deadlineMs = 10_000 }: { readonly deadlineMs?: number } = {}): Promise<ClientTotals> {
    return (this.closing ??= (async () => {
      clearTimeout(this.timer);
      let deadline: NodeJS.Timeout | undefined;
      const expired = new Promise<void>((resolve) => {
        deadline = setTimeout(resolve, deadlineMs);
      });
      await Promise.race([this.flush(), expired]);
      clearTimeout(deadline);
      if (this.held > 0) {
        this.abort.abort(); // requests in flight end as dropped
        const rows = this.queue.slice(this.head);
        this.queue = [];
        this.head = 0;
        this.held -= rows.length;
        if (rows.length > 0) {
          this.drop(metricsOf(rows), 'close_deadline', `not sent within ${deadlineMs} ms of close()`);
        }
        await Promise.all([...this.inFlight].map((batch) => batch.done));
      }
      return { tracked: this.tracked, ...this.totals };
    })());
  }

  private armTimer(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flushUpTo = Math.max(this.flushUpTo, this.tracked);
      this.pump();
    }, this.options.flushIntervalMs);
    // Not what keeps a process alive: close() is (README: short-lived processes).
    this.timer.unref();
  }

  /** Starts batches while there is room in flight and rows that may go. */
  private pump(): void {
    const { flushAt, concurrency } = this.options;
    while (this.inFlight.size < concurrency) {
      const queued = this.queue.length - this.head;
      if (queued === 0 || (queued < flushAt && this.taken >= this.flushUpTo)) break;
      const firstRow = this.taken;
      const rows = this.queue.slice(this.head, this.head + flushAt);
      this.head += rows.length;
      if (this.head > 65_536 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      const batch = { firstRow, done: this.send(rows) };
      this.inFlight.add(batch);
      void batch.done.then(() => {
        this.inFlight.delete(batch);
        this.pump();
      });
    }
    if (this.queue.length - this.head > 0) this.armTimer();
  }

  private async send(rows: readonly string[]): Promise<void> {
    let outcome: SendOutcome;
    try {
      const body = await gzipAsync(`${rows.join('\n')}\n`, GZIP_OPTIONS);
      outcome = await sendBulk(
        { firstLine: 1, lines: rows.length, rows: rows.length, body },
        {
          url: this.options.url,
          ...(this.options.key === undefined ? {} : { key: this.options.key }),
          retries: this.options.retries,
          maxRetryWaitMs: this.options.maxRetryWaitMs,
          requestTimeoutMs: this.options.timeoutMs,
          signal: this.abort.signal,
          onRetry: (retry) => this.emit('retry', { ...retry, rows: retry.throughLine - retry.fromLine + 1 }),
        },
      );
    } catch (error) {
      // Not an answer (gzip failed, say): the batch is given up, and says why.
      outcome = {
        accepted: 0,
        rejects: [],
        rejectedRows: 0,
        retries: 0,
        uncertainRetries: 0,
        failure: { fromLine: 1, reason: String(error), kind: 'refused' },
      };
    } finally {
      this.held -= rows.length;
    }
    this.settle(rows, outcome);
  }

  /** Tells of each row of a batch once: stored, refused or dropped. */
  private settle(rows: readonly string[], outcome: SendOutcome): void {
    const answeredLines = outcome.failure === undefined ? rows.length : outcome.failure.fromLine - 1;
    const refused = new Map<number, RefusedRow>();
    for (const record of outcome.rejects) {
      const through = Math.min(record.through ?? record.line, answeredLines);
      for (let line = record.line; line <= through; line++) {
        const row = rows[line - 1];
        if (row === undefined || refused.has(line)) continue;
        const details =
          record.through === undefined
            ? record.details
            : [{ message: `one of ${record.count} rows refused among lines ${record.line}..${record.through}` }];
        refused.set(line, { metric: JSON.parse(row) as Metric, error: record.error, details });
      }
    }
    const storedCount = answeredLines - refused.size;
    if (storedCount > 0) {
      this.totals.stored += storedCount;
      if (this.listenerCount('stored') > 0) {
        this.emit('stored', metricsOf(rows.slice(0, answeredLines).filter((_, index) => !refused.has(index + 1))));
      }
    }
    if (refused.size > 0) {
      this.totals.refused += refused.size;
      this.emit('refused', [...refused.values()]);
    }
    if (outcome.failure !== undefined) {
      this.drop(metricsOf(rows.slice(answeredLines)), dropReason(outcome.failure), outcome.failure.reason);
    }
  }

  private drop(rows: readonly Metric[], reason: DropReason, message: string): false {
    this.totals.dropped += rows.length;
    this.emit('dropped', rows, reason, message);
    return false;
  }
}

function dropReason(failure: Failure): DropReason {
  if (failure.kind === 'aborted') return 'close_deadline';
  return failure.kind === 'retries_exhausted' ? 'retries_exhausted' : 'request_refused';
}
