import pino from 'pino';
import type { MetricsWriter } from '../../src/db/metrics-writer';
import { Batcher } from '../../src/ingest/batcher';
import { IngestTicket } from '../../src/ingest/ticket';

// Room in the buffer is checked and taken in one step, and an upload that stops can take its rows
// that are not yet being written back out of the buffer.

const logger = pino({ level: 'silent' });
const row = (n: number): string => `${n}\t\\N\t1\tt\tf\t\\N\t2024-01-01T00:00:00Z\t\\N\t2026-01-01T00:00:00.000Z\n`;
const rows = (from: number, count: number): string[] => Array.from({ length: count }, (_, i) => row(from + i));

/** Writes wait until `open()`; then every row is stored. */
class GatedWriter implements MetricsWriter {
  readonly stored: string[] = [];
  private opened!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.opened = resolve));

  open(): void {
    this.opened();
  }

  async write(written: readonly string[]): Promise<void> {
    await this.gate;
    this.stored.push(...written);
  }

  async reject(): Promise<void> {}
}

function makeBatcher(writer: MetricsWriter): Batcher {
  return new Batcher({ batchMaxRows: 10, batchMaxWaitMs: 1, bufferMaxRows: 20, flushConcurrency: 1, writer, logger });
}

describe('Batcher room and withdrawal', () => {
  it('lets waiters woken together in only as far as there is room', async () => {
    const writer = new GatedWriter();
    const batcher = makeBatcher(writer);
    batcher.append(rows(1, 20));
    let most = 0;
    const waiters = [0, 1, 2, 3].map((i) =>
      batcher.appendWhenRoom(rows(100 + i * 10, 8), {}, 5000).then((taken) => {
        most = Math.max(most, batcher.depth);
        return taken;
      }),
    );
    writer.open();
    expect(await Promise.all(waiters)).toEqual([true, true, true, true]);
    expect(most).toBeLessThanOrEqual(20);
    await batcher.drain();
    expect(writer.stored).toHaveLength(20 + 32);
  });

  it('withdraws the rows of a ticket that are not yet in a batch, and says from which line', async () => {
    const writer = new GatedWriter();
    const batcher = makeBatcher(writer);
    const ticket = new IngestTicket();
    batcher.append(rows(1, 10), { ticket, lines: rows(1, 10).map((_, i) => i + 1) });
    batcher.append(rows(11, 10), { ticket, lines: rows(11, 10).map((_, i) => i + 11) });
    await new Promise((resolve) => setTimeout(resolve, 20)); // the first batch of 10 is being written
    expect(batcher.withdraw(ticket)).toEqual({ rows: 10, firstLine: 11 });
    expect(ticket.pending).toBe(10);
    expect(ticket.firstPendingLine()).toBe(1);
    writer.open();
    ticket.seal();
    expect(await ticket.settledWithin(5000)).toBe(true);
    await batcher.drain();
    expect(ticket.committed).toBe(10);
    expect(writer.stored).toEqual(rows(1, 10));
    expect(batcher.depth).toBe(0);
  });
});
