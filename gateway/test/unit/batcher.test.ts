import pino from 'pino';
import { Batcher, type BatcherOptions } from '../../src/ingest/batcher';
import { encodeMetricRow } from '../../src/ingest/copy-encode';
import { IngestTicket } from '../../src/ingest/ticket';
import type { MetricsWriter, RejectedRow } from '../../src/db/metrics-writer';

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

function dbError(code: string, message = `error ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

/** A writer that records what it stored and fails as told. */
class FakeWriter implements MetricsWriter {
  readonly batches: string[][] = [];
  readonly rejected: RejectedRow[] = [];
  /** Rows whose user id is in here make a whole write fail with a foreign-key violation. */
  readonly refusedUsers = new Set<number>();
  transientFailures = 0;
  gate: Promise<void> | undefined;

  async write(rows: readonly string[]): Promise<void> {
    await this.gate;
    if (this.transientFailures > 0) {
      this.transientFailures -= 1;
      throw dbError('57P01', 'terminating connection due to administrator command');
    }
    if (rows.some((r) => this.refusedUsers.has(Number(r.split('\t')[0]))))
      throw dbError('23503', 'violates foreign key');
    this.batches.push([...rows]);
  }

  async reject(rows: readonly RejectedRow[]): Promise<void> {
    this.rejected.push(...rows);
  }

  get stored(): number[] {
    return this.batches.flat().map((r) => Number(r.split('\t')[0]));
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
