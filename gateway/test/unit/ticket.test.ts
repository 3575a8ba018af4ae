import { IngestTicket } from '../../src/ingest/ticket';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('IngestTicket', () => {
  it('settles once sealed and every row is committed or refused', async () => {
    const ticket = new IngestTicket();
    const chunk = ticket.addChunk(3, 5);
    ticket.rowsCommitted(chunk, 2);
    ticket.seal();
    expect(await ticket.settledWithin(30)).toBe(false);
    expect(ticket.firstPendingLine()).toBe(5);
    ticket.rowRefused(chunk, { line: 7, error: 'unknown_reference', message: 'gone' });
    expect(ticket.firstPendingLine()).toBeUndefined();
    expect(ticket.committed).toBe(2);
    expect(await ticket.settledWithin(30)).toBe(true);
    expect(ticket.rejections).toEqual([{ line: 7, error: 'unknown_reference', message: 'gone' }]);
  });

  it('keeps waiting past the timeout while rows keep committing, and gives up once they stop', async () => {
    const ticket = new IngestTicket();
    const chunk = ticket.addChunk(10);
    ticket.seal();
    const started = Date.now();
    const waiting = ticket.settledWithin(100);
    for (let i = 0; i < 5; i++) {
      await sleep(60);
      ticket.rowsCommitted(chunk, 1);
    }
    // 300 ms passed, but never 100 ms without progress; now the rest stalls.
    expect(await waiting).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
  });
});
