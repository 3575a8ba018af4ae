import pino from 'pino';
import { Batcher, type BatcherOptions } from '../../src/ingest/batcher';
import { retryDelayMs } from '../../src/ingest/backoff';
import { encodeMetricRow } from '../../src/ingest/copy-encode';
import { IngestTicket } from '../../src/ingest/ticket';
import type { MetricsWriter, RejectedRow, WriteAttempts } from '../../src/db/metrics-writer';
import type { SpoolRange } from '../../src/db/spool-commits';

const logger = pino({ level: 'silent' });

function row(userId: number): string {
  return encodeMetricRow(
    {
      user_id: userId,
      talked_time: 1,
      microphone_used: true,
      speaker_used: false,
      time_recorded: '2024-01-01T00:00:00Z',
    },
    '2024-01-01T00:00:00Z',
    '2026-01-01T00:00:00.000Z',
  );
}

const userOf = (encoded: string): number => Number(encoded.split('\t')[0]);

function dbError(code: string, message = `error ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

/** Every sequence number the ranges name, in order. */
const seqsOf = (ranges: readonly SpoolRange[]): number[] =>
  ranges.flatMap((r) => Array.from({ length: r.lastSeq - r.firstSeq + 1 }, (_, i) => r.firstSeq + i));

/**
 * A writer that records what it is asked to write (rows, spool ranges, the retry state it is handed)
 * and fails as told. Only calls that succeed count as stored.
 */
class FakeWriter implements MetricsWriter {
  /** Successful writes, each with the spool ranges recorded in its transaction. */
  readonly writes: { rows: string[]; spooled: SpoolRange[] }[] = [];
  /** Successful rejects, likewise. */
  readonly rejects: { rows: RejectedRow[]; spooled: SpoolRange[] }[] = [];
  /** Every write() call, failed or not, with the retry state object it was given. */
  readonly writeCalls: { rows: string[]; attempts: WriteAttempts | undefined; lastTransactionId?: string }[] = [];
  rejectCalls = 0;
  /** Rows whose user id is in here make a whole write fail with a foreign-key violation. */
  readonly refusedUsers = new Set<number>();
  /** Thrown by the next write() calls, one each, before anything else; then transientFailures. */
  readonly writeFailures: unknown[] = [];
  readonly rejectFailures: unknown[] = [];
  transientFailures = 0;
  gate: Promise<void> | undefined;

  async write(rows: readonly string[], spooled: readonly SpoolRange[] = [], attempts?: WriteAttempts): Promise<void> {
    this.writeCalls.push({ rows: [...rows], attempts, lastTransactionId: attempts?.lastTransactionId });
    await this.gate;
    if (this.writeFailures.length > 0) throw this.writeFailures.shift();
    if (this.transientFailures > 0) {
      this.transientFailures -= 1;
      throw dbError('57P01', 'terminating connection due to administrator command');
    }
    if (rows.some((r) => this.refusedUsers.has(userOf(r)))) throw dbError('23503', 'violates foreign key');
    this.writes.push({ rows: [...rows], spooled: [...spooled] });
  }

  async reject(rows: readonly RejectedRow[], spooled: readonly SpoolRange[] = []): Promise<void> {
    this.rejectCalls += 1;
    if (this.rejectFailures.length > 0) throw this.rejectFailures.shift();
    this.rejects.push({ rows: [...rows], spooled: [...spooled] });
  }

  get batches(): string[][] {
    return this.writes.map((w) => w.rows);
  }

  get rejected(): RejectedRow[] {
    return this.rejects.flatMap((r) => r.rows);
  }

  get stored(): number[] {
    return this.batches.flat().map(userOf);
  }
}

function makeBatcher(writer: MetricsWriter, options: Partial<BatcherOptions> = {}): Batcher {
  return new Batcher({
    batchMaxRows: 10,
    batchMaxWaitMs: 5,
    bufferMaxRows: 100,
    flushConcurrency: 1,
    writer,
    logger,
    retryBaseMs: 1,
    retryMaxMs: 5,
    ...options,
  });
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

describe('Batcher', () => {
  it('flushes full batches at once and the rest after the wait', async () => {
    const writer = new FakeWriter();
    const batcher = makeBatcher(writer, { batchMaxWaitMs: 60_000 });
    batcher.append(range(1, 26).map(row));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(writer.batches.map((b) => b.length)).toEqual([10, 10]);
    await batcher.drain();
    expect(writer.stored).toEqual(range(1, 26));
    expect(batcher.depth).toBe(0);
  });

  it('flushes a small batch after batchMaxWaitMs', async () => {
    const writer = new FakeWriter();
    const batcher = makeBatcher(writer, { batchMaxWaitMs: 10 });
    const ticket = new IngestTicket();
    batcher.append([row(1), row(2)], { ticket });
    ticket.seal();
    expect(await ticket.settledWithin(1000)).toBe(true);
    expect(writer.batches).toEqual([[row(1), row(2)]]);
  });

  it('settles a ticket only when every row of it is committed, across batches', async () => {
    const writer = new FakeWriter();
    const batcher = makeBatcher(writer);
    const ticket = new IngestTicket();
    batcher.append(range(1, 8).map(row), { ticket });
    batcher.append(range(8, 16).map(row), { ticket });
    expect(await ticket.settledWithin(20)).toBe(false); // not sealed yet
    ticket.seal();
    expect(await ticket.settledWithin(1000)).toBe(true);
    expect(writer.stored.sort((a, b) => a - b)).toEqual(range(1, 16));
  });

  it('isolates refused rows by halving: the others are stored, refused ones recorded with their line', async () => {
    const writer = new FakeWriter();
    writer.refusedUsers.add(3).add(8);
    const batcher = makeBatcher(writer);
    const ticket = new IngestTicket();
    const users = range(1, 11);
    batcher.append(users.map(row), { ticket, lines: users.map((u) => u * 100) });
    ticket.seal();
    expect(await ticket.settledWithin(1000)).toBe(true);
    expect(writer.stored.sort((a, b) => a - b)).toEqual([1, 2, 4, 5, 6, 7, 9, 10]);
    expect(writer.rejected.map((r) => r.payload.user_id)).toEqual([3, 8]);
    expect(writer.rejected[0]?.reason).toContain('violates foreign key');
    expect(ticket.rejections).toEqual([
      expect.objectContaining({ line: 300, error: 'unknown_reference' }),
      expect.objectContaining({ line: 800, error: 'unknown_reference' }),
    ]);
  });

  it('retries transient failures until the batch is stored, storing it once', async () => {
    const writer = new FakeWriter();
    writer.transientFailures = 3;
    const batcher = makeBatcher(writer);
    const ticket = new IngestTicket();
    batcher.append([row(1), row(2)], { ticket });
    ticket.seal();
    expect(await ticket.settledWithin(2000)).toBe(true);
    expect(writer.stored).toEqual([1, 2]);
  });

  it('keeps depth within bufferMaxRows and wakes a waiter when a flush frees room', async () => {
    const writer = new FakeWriter();
    let open!: () => void;
    writer.gate = new Promise((resolve) => (open = resolve));
    const batcher = makeBatcher(writer, { bufferMaxRows: 20, batchMaxRows: 10 });
    batcher.append(range(1, 21).map(row));
    expect(batcher.depth).toBe(20);
    expect(batcher.hasRoom(1)).toBe(false);
    expect(await batcher.appendWhenRoom(range(21, 26).map(row), {}, 20)).toBe(false);
    expect(batcher.depth).toBe(20);
    const waiting = batcher.appendWhenRoom(range(21, 26).map(row), {}, 2000);
    open();
    expect(await waiting).toBe(true);
    await batcher.drain();
    expect(writer.stored).toHaveLength(25);
  });

  it('lets a chunk larger than the whole buffer into an empty one', () => {
    const batcher = makeBatcher(new FakeWriter(), { bufferMaxRows: 10 });
    expect(batcher.hasRoom(50)).toBe(true);
  });

  it('runs up to flushConcurrency writes at once', async () => {
    const writer = new FakeWriter();
    let inFlight = 0;
    let most = 0;
    const write = writer.write.bind(writer);
    writer.write = async (rows) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 10));
      await write(rows);
      inFlight -= 1;
    };
    const batcher = makeBatcher(writer, { flushConcurrency: 3, batchMaxRows: 5 });
    batcher.append(range(1, 41).map(row));
    await batcher.drain();
    expect(most).toBe(3);
    expect(writer.stored.sort((a, b) => a - b)).toEqual(range(1, 41));
  });

  it('abort() gives up on a batch that keeps failing and reports the rows left', async () => {
    const writer = new FakeWriter();
    writer.transientFailures = Number.POSITIVE_INFINITY;
    const batcher = makeBatcher(writer);
    batcher.append([row(1), row(2), row(3)]);
    const drained = batcher.drain();
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(batcher.abort()).toEqual({ inMemoryOnly: 3, spooled: 0 });
    await drained;
    expect(() => batcher.append([row(4)])).toThrow('closed');
  });
});

describe('Batcher with spooled rows', () => {
  it('records each spooled row exactly once, in the write or the reject that stores it, while halving', async () => {
    const writer = new FakeWriter();
    // Refused rows at a row group's edges, inside a batch and at a batch's edges.
    writer.refusedUsers.add(3).add(7).add(10).add(11).add(19).add(21);
    const spooledDone: SpoolRange[] = [];
    const batcher = makeBatcher(writer, { onSpooledDone: (ranges) => spooledDone.push(...ranges) });
    const ticket = new IngestTicket();
    // Row groups (appends) of 7, 2 (not spooled: wait=true), 8 and 4 rows; batches of 10 cut the last two part-way,
    // so that a batch holds a group from its middle. Row i has user i.
    const groups = [
      { users: range(1, 8), spool: { spoolId: 'spool-a', firstSeq: 100 } },
      { users: range(8, 10), spool: undefined },
      { users: range(10, 18), spool: { spoolId: 'spool-a', firstSeq: 107 } },
      { users: range(18, 22), spool: { spoolId: 'spool-b', firstSeq: 1 } },
    ];
    const seqOfUser = new Map<number, string>();
    for (const { users, spool } of groups) {
      const rows = users.map((user) => row(user));
      users.forEach((user, i) => spool && seqOfUser.set(user, `${spool.spoolId}:${spool.firstSeq + i}`));
      batcher.append(rows, { ticket, spool });
    }
    ticket.seal();
    expect(await ticket.settledWithin(2000)).toBe(true);

    // Within each call, the ranges name exactly the spooled rows it stores, in order.
    const rangeKeys = (ranges: readonly SpoolRange[]): string[] =>
      ranges.flatMap((r) => seqsOf([r]).map((seq) => `${r.spoolId}:${seq}`));
    for (const { rows, spooled } of writer.writes) {
      expect(rangeKeys(spooled)).toEqual(rows.flatMap((r) => seqOfUser.get(userOf(r)) ?? []));
    }
    for (const { rows, spooled } of writer.rejects) {
      expect(rangeKeys(spooled)).toEqual(rows.flatMap((r) => seqOfUser.get(r.payload.user_id as number) ?? []));
    }
    // Over all calls, every spooled row once; and the spool is told of each once.
    const recorded = [...writer.writes, ...writer.rejects].flatMap((call) => rangeKeys(call.spooled));
    const everySpooled = [...seqOfUser.values()];
    expect([...recorded].sort()).toEqual([...everySpooled].sort());
    expect(rangeKeys(spooledDone).sort()).toEqual([...everySpooled].sort());

    expect(writer.stored.sort((a, b) => a - b)).toEqual(range(1, 22).filter((u) => !writer.refusedUsers.has(u)));
    expect(writer.rejected.map((r) => r.payload.user_id)).toEqual([3, 7, 10, 11, 19, 21]);
    expect(writer.batches.length).toBeGreaterThan(3);
    expect(batcher.depth).toBe(0);
  });

  it('retries a reject() that fails for a transient reason, recording the row and its range once', async () => {
    const writer = new FakeWriter();
    writer.refusedUsers.add(2);
    writer.rejectFailures.push(dbError('08006', 'connection failure'), new Error('Connection terminated unexpectedly'));
    const spooledDone: SpoolRange[] = [];
    const batcher = makeBatcher(writer, { onSpooledDone: (ranges) => spooledDone.push(...ranges) });
    const ticket = new IngestTicket();
    batcher.append([row(1), row(2), row(3)], {
      ticket,
      lines: [1, 2, 3],
      spool: { spoolId: 's', firstSeq: 10 },
    });
    ticket.seal();
    expect(await ticket.settledWithin(2000)).toBe(true);
    expect(writer.rejectCalls).toBe(3);
    expect(writer.rejects).toEqual([
      {
        rows: [expect.objectContaining({ payload: expect.objectContaining({ user_id: 2 }) })],
        spooled: [{ spoolId: 's', firstSeq: 11, lastSeq: 11 }],
      },
    ]);
    expect(seqsOf(spooledDone).sort((a, b) => a - b)).toEqual([10, 11, 12]);
    expect(ticket.rejections).toEqual([expect.objectContaining({ line: 2, error: 'unknown_reference' })]);
    expect(writer.stored.sort((a, b) => a - b)).toEqual([1, 3]);
  });

  it('answers the request when reject() itself is refused for a row reason, without retrying it for ever', async () => {
    const writer = new FakeWriter();
    writer.refusedUsers.add(2);
    // Say the payload cannot go into jsonb (22P05: \u0000 in a string).
    writer.rejectFailures.push(dbError('22P05', 'unsupported Unicode escape sequence'));
    const batcher = makeBatcher(writer);
    const ticket = new IngestTicket();
    batcher.append([row(1), row(2), row(3)], { ticket, lines: [1, 2, 3] });
    ticket.seal();
    expect(await ticket.settledWithin(2000)).toBe(true);
    // At most one more try (say, the row recorded as raw text), never a loop.
    expect(writer.rejectCalls).toBeLessThanOrEqual(2);
    expect(ticket.rejections).toEqual([expect.objectContaining({ line: 2, error: 'unknown_reference' })]);
    expect(writer.stored.sort((a, b) => a - b)).toEqual([1, 3]);
    expect(batcher.depth).toBe(0);
  });
});

describe('Batcher retries', () => {
  it('retries a plain Error (no SQLSTATE) as transient: the batch is stored whole, nothing is refused', async () => {
    const writer = new FakeWriter();
    writer.writeFailures.push(
      new Error('Connection terminated unexpectedly'),
      Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
      'a thrown string',
    );
    const batcher = makeBatcher(writer);
    const ticket = new IngestTicket();
    batcher.append(
      range(1, 6).map((u) => row(u)),
      { ticket },
    );
    ticket.seal();
    expect(await ticket.settledWithin(2000)).toBe(true);
    expect(writer.writeCalls.map((call) => call.rows.length)).toEqual([5, 5, 5, 5]);
    expect(writer.batches).toEqual([range(1, 6).map((u) => row(u))]);
    expect(writer.rejectCalls).toBe(0);
    expect(ticket.rejections).toEqual([]);
  });

  it('hands every retry of the same rows the same retry state, so a lost COMMIT can be looked up', async () => {
    const writer = new FakeWriter();
    const write = writer.write.bind(writer);
    let calls = 0;
    writer.write = async (rows, spooled, attempts) => {
      calls += 1;
      // The first attempt names its transaction, then loses the connection at COMMIT.
      if (calls === 1 && attempts) {
        attempts.lastTransactionId = '4242';
        throw new Error('Connection terminated unexpectedly');
      }
      return write(rows, spooled, attempts);
    };
    const batcher = makeBatcher(writer);
    batcher.append([row(1), row(2)]);
    await batcher.drain();
    expect(calls).toBe(2);
    expect(writer.writeCalls).toHaveLength(1);
    expect(writer.writeCalls[0]?.lastTransactionId).toBe('4242');
    expect(writer.stored).toEqual([1, 2]);
  });
});

describe('retryDelayMs (the backoff schedule)', () => {
  const lowest = (): number => 0;
  const highest = (): number => 0.999_999;

  it('doubles from the base up to the cap, with jitter over the upper half of each step', () => {
    const ceilings = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];
    ceilings.forEach((ceiling, attempt) => {
      expect(retryDelayMs(attempt, 100, 5000, lowest)).toBe(ceiling / 2);
      expect(retryDelayMs(attempt, 100, 5000, highest)).toBeCloseTo(ceiling, 0);
      expect(retryDelayMs(attempt, 100, 5000, () => 0.5)).toBe(ceiling * 0.75);
    });
  });

  it('stays at the cap after any number of attempts, never Infinity or NaN', () => {
    for (const attempt of [30, 64, 1024, 1e6]) {
      expect(retryDelayMs(attempt, 100, 5000, highest)).toBeCloseTo(5000, 0);
      expect(retryDelayMs(attempt, 100, 5000, lowest)).toBe(2500);
    }
  });

  it('spreads retries: different random draws give different delays within the step', () => {
    const draws = [0.1, 0.4, 0.9].map((r) => retryDelayMs(3, 100, 5000, () => r));
    expect(draws).toEqual([440, 560, 760]);
  });

  it('uses Math.random by default, within the bounds of the step', () => {
    for (let i = 0; i < 100; i++) {
      const delay = retryDelayMs(2, 100, 5000);
      expect(delay).toBeGreaterThanOrEqual(200);
      expect(delay).toBeLessThanOrEqual(400);
    }
  });
});
