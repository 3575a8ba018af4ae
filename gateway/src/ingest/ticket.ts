import type { ErrorCode } from '../contract/errors';

/** A row that PostgreSQL refused at flush time, reported to the request that sent it. */
export interface RowRejection {
  /** The NDJSON line number of a bulk row; absent for a single metric. */
  readonly line: number | undefined;
  readonly error: ErrorCode;
  readonly message: string;
}

/** The rows of one append to the buffer (a single metric, or one chunk of a bulk upload). */
export interface TicketChunk {
  /** NDJSON line number of the chunk's first row; undefined for a single metric. */
  readonly firstLine: number | undefined;
  /** Rows neither committed, refused nor withdrawn. */
  pending: number;
}

/**
 * What one request waits for: every row it handed to the buffer committed, refused or withdrawn.
 * Chunks are added while the request is read; `seal()` says no more will come. The ticket is
 * settled once it is sealed and no row is pending.
 *
 * Rows are tracked per chunk, in the order they were appended: the buffer writes them in that order,
 * so the first chunk with a pending row tells from which line on a client must send again when the
 * request is answered before everything settled.
 */
export class IngestTicket {
  private pendingRows = 0;
  private committedRows = 0;
  private readonly chunks: TicketChunk[] = [];
  /** Index of the first chunk that may still have pending rows. */
  private firstOpenChunk = 0;
  private sealed = false;
  /** When a row of this ticket last settled (or the wait began). */
  private lastProgressAt = 0;
  private readonly refused: RowRejection[] = [];
  private resolveSettled!: () => void;
  private readonly settled = new Promise<void>((resolve) => {
    this.resolveSettled = resolve;
  });

  get rejections(): readonly RowRejection[] {
    return this.refused;
  }

  /** Rows committed so far. */
  get committed(): number {
    return this.committedRows;
  }

  /** Rows handed to the buffer and not yet committed, refused or withdrawn. */
  get pending(): number {
    return this.pendingRows;
  }

  addChunk(rows: number, firstLine?: number): TicketChunk {
    if (this.sealed) throw new Error('rows added to a sealed ticket');
    const chunk: TicketChunk = { firstLine, pending: rows };
    this.chunks.push(chunk);
    this.pendingRows += rows;
    return chunk;
  }

  seal(): void {
    this.sealed = true;
    this.settleIfDone();
  }

  rowsCommitted(chunk: TicketChunk, count: number): void {
    this.committedRows += count;
    this.settle(chunk, count);
  }

  rowRefused(chunk: TicketChunk, rejection: RowRejection): void {
    this.refused.push(rejection);
    this.settle(chunk, 1);
  }

  /** Rows taken back out of the buffer before they were written: they will not be stored. */
  rowsWithdrawn(chunk: TicketChunk, count: number): void {
    this.settle(chunk, count);
  }

  /** The first line of the earliest chunk that still has a pending row; undefined when none has. */
  firstPendingLine(): number | undefined {
    while (
      this.firstOpenChunk < this.chunks.length &&
      (this.chunks[this.firstOpenChunk] as TicketChunk).pending === 0
    ) {
      this.firstOpenChunk++;
    }
    return this.chunks[this.firstOpenChunk]?.firstLine;
  }

  /**
   * Resolves true once settled, or false once `timeoutMs` pass without any of its rows settling. A
   * large upload whose rows keep committing is not cut off while the buffer works through them; a
   * stalled database is noticed within `timeoutMs`.
   */
  async settledWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<boolean>((resolve) => {
      const check = (): void => {
        const quietFor = Date.now() - this.lastProgressAt;
        if (quietFor >= timeoutMs) resolve(false);
        else timer = setTimeout(check, timeoutMs - quietFor);
      };
      this.lastProgressAt = Math.max(this.lastProgressAt, Date.now());
      timer = setTimeout(check, timeoutMs);
    });
    try {
      return await Promise.race([this.settled.then(() => true), stalled]);
    } finally {
      clearTimeout(timer);
    }
  }

  private settle(chunk: TicketChunk, count: number): void {
    this.lastProgressAt = Date.now();
    chunk.pending -= count;
    this.pendingRows -= count;
    this.settleIfDone();
  }

  private settleIfDone(): void {
    if (this.sealed && this.pendingRows === 0) this.resolveSettled();
  }
}
