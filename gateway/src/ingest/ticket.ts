import type { ErrorCode } from '../errors';

/** A row that PostgreSQL refused at flush time, reported to the request that sent it. */
export interface RowRejection {
  /** The NDJSON line number of a bulk row; absent for a single metric. */
  readonly line: number | undefined;
  readonly error: ErrorCode;
  readonly message: string;
}

/**
 * What one request waits for: every row it handed to the buffer committed or refused.
 * Rows are added while the request is read; `seal()` says no more will come. The ticket is settled
 * once it is sealed and no row is pending.
 */
export class IngestTicket {
  private pendingRows = 0;
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

  addRows(count: number): void {
    if (this.sealed) throw new Error('rows added to a sealed ticket');
    this.pendingRows += count;
  }

  seal(): void {
    this.sealed = true;
    this.settleIfDone();
  }

  rowsCommitted(count: number): void {
    this.lastProgressAt = Date.now();
    this.pendingRows -= count;
    this.settleIfDone();
  }

  rowRefused(rejection: RowRejection): void {
    this.lastProgressAt = Date.now();
    this.refused.push(rejection);
    this.pendingRows -= 1;
    this.settleIfDone();
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

  private settleIfDone(): void {
    if (this.sealed && this.pendingRows === 0) this.resolveSettled();
  }
}
