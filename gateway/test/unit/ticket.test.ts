import { IngestTicket } from '../../src/ingest/ticket';

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

  // On a fake clock: real sleeps of 60 ms against a 100 ms timeout fail whenever one overruns by 40 ms.
  it('keeps waiting past the timeout while rows keep committing, and gives up once they stop', async () => {
    jest.useFakeTimers();
    try {
      const ticket = new IngestTicket();
      const chunk = ticket.addChunk(10);
      ticket.seal();
      const started = Date.now();
      let outcome: boolean | undefined;
      void ticket.settledWithin(100).then((settled) => (outcome = settled));
      for (let i = 0; i < 5; i++) {
        await jest.advanceTimersByTimeAsync(60);
        expect(outcome).toBeUndefined();
        ticket.rowsCommitted(chunk, 1);
      }
      // 300 ms passed, but never 100 ms without progress; now the rest stalls.
      await jest.advanceTimersByTimeAsync(99);
      expect(outcome).toBeUndefined();
      await jest.advanceTimersByTimeAsync(1);
      expect(outcome).toBe(false);
      expect(Date.now() - started).toBe(400);
    } finally {
      jest.useRealTimers();
    }
  });
});
