import type { Pool } from 'pg';
import { rejectionsIn } from '../../src/http/status-routes';
import { IngestStats } from '../../src/telemetry/ingest-stats';
import { createPrometheusTelemetry, type IngestTotals } from '../../src/telemetry/prometheus';
import { RecentRejections, shortMessage, type RecentRejection } from '../../src/telemetry/recent-rejections';

// The status page's server side without HTTP: the ring of recent rejections, the rates and history
// made from running totals, and how answers of the ingest endpoints become rejection entries.

const entry = (line: number): RecentRejection => ({
  time: '2026-01-01T00:00:00.000Z',
  endpoint: 'bulk',
  line,
  error: 'validation_failed',
  message: `line ${line}`,
});

describe('PrometheusTelemetry.totals', () => {
  it('reads the same instruments as /metrics, summed over endpoints', async () => {
    const telemetry = createPrometheusTelemetry({ totalCount: 0, idleCount: 0, waitingCount: 0 } as unknown as Pool);
    expect(await telemetry.totals()).toMatchObject({ acceptedRows: 0, flushedRows: 0, flushedBatches: 0 });
    const now = Date.now();
    telemetry.rowsAccepted('bulk', now, [now, now, now]);
    telemetry.rowsAccepted('single', now, [now]);
    telemetry.rowsRefused(3, 'validation_failed', 'bulk');
    telemetry.rowsRefused(1, 'validation_failed', 'single');
    telemetry.rowsRefused(2, 'invalid_json', 'bulk');
    telemetry.batcherObserver.flushed(3, 0.25);
    telemetry.batcherObserver.flushed(1, 0.5);
    telemetry.batcherObserver.refused(1, 'unknown_reference');

    const totals = await telemetry.totals();
    expect(totals).toMatchObject({ acceptedRows: 4, flushedRows: 4, flushedBatches: 2, flushSeconds: 0.75 });
    expect(totals.rejectedRows).toMatchObject({ validation_failed: 4, invalid_json: 2, overloaded: 0 });
    expect(totals.rejectedAtFlushRows).toEqual({ validation_failed: 0, unknown_reference: 1 });
  });
});

describe('RecentRejections', () => {
  it('keeps the last `capacity` entries, newest first, across wrap-around', () => {
    const ring = new RecentRejections(3);
    expect(ring.list()).toEqual([]);
    ring.add(entry(1));
    ring.add(entry(2));
    expect(ring.list().map((e) => e.line)).toEqual([2, 1]);
    for (const line of [3, 4, 5, 6, 7]) ring.add(entry(line));
    expect(ring.list().map((e) => e.line)).toEqual([7, 6, 5]);
  });

  it('cuts long messages and folds whitespace, so that no payload is kept whole', () => {
    const ring = new RecentRejections();
    ring.add({ ...entry(1), message: `bad\n\tvalue ${'x'.repeat(5000)}` });
    const [kept] = ring.list();
    expect(Array.from(kept?.message ?? '')).toHaveLength(200);
    expect(kept?.message).toMatch(/^bad value x+…$/);
    expect(shortMessage('😀'.repeat(300), 10)).toBe(`${'😀'.repeat(9)}…`);
  });

  it('refuses a capacity below one', () => {
    expect(() => new RecentRejections(0)).toThrow(RangeError);
  });
});

describe('IngestStats', () => {
  let now: number;
  let totals: IngestTotals;
  const buffer = { depth: 0, capacity: 1000 };
  const make = (): IngestStats =>
    new IngestStats({
      readTotals: async () => totals,
      buffer,
      rejections: new RecentRejections(),
      intervalMs: 1000,
      historyPoints: 3,
      rateWindowMs: 2000,
      now: () => now,
    });

  beforeEach(() => {
    now = 1_000_000;
    buffer.depth = 0;
    totals = {
      acceptedRows: 0,
      rejectedRows: { validation_failed: 0, invalid_json: 0 },
      rejectedAtFlushRows: { unknown_reference: 0 },
      flushedRows: 0,
      flushedBatches: 0,
      flushSeconds: 0,
    };
  });

  it('has no rates before its first sample', async () => {
    const snapshot = await make().snapshot();
    expect(snapshot.ingest).toEqual({
      accepted_rows_per_second: null,
      rejected_rows_per_second: null,
      flushed_rows_per_second: null,
    });
    expect(snapshot.flush).toEqual({ mean_latency_ms: null, mean_batch_rows: null, batches: 0 });
    expect(snapshot.history.points).toEqual([]);
  });

  it('gives rates over the window, flush figures over the window, and a point per interval', async () => {
    const stats = make();
    await stats.sample(); // t = 0 s
    now += 1000;
    totals = { ...totals, acceptedRows: 100, flushedRows: 100, flushedBatches: 2, flushSeconds: 0.02 };
    buffer.depth = 7;
    await stats.sample(); // t = 1 s
    now += 1000;
    totals = {
      ...totals,
      acceptedRows: 400,
      rejectedRows: { validation_failed: 3, invalid_json: 1 },
      rejectedAtFlushRows: { unknown_reference: 2 },
      flushedRows: 400,
      flushedBatches: 3,
      flushSeconds: 0.05,
    };
    buffer.depth = 0;
    await stats.sample(); // t = 2 s
    now += 500;

    const snapshot = await stats.snapshot(); // t = 2.5 s: the base is the sample at 0 s, 2.5 s before
    expect(snapshot.window_seconds).toBe(2.5);
    expect(snapshot.ingest).toEqual({
      accepted_rows_per_second: 160,
      rejected_rows_per_second: 2.4,
      flushed_rows_per_second: 160,
    });
    expect(snapshot.flush).toEqual({ mean_latency_ms: 16.667, mean_batch_rows: 133.333, batches: 3 });
    expect(snapshot.totals).toEqual({
      accepted_rows: 400,
      rejected_rows: 4,
      rejected_at_flush_rows: 2,
      flushed_rows: 400,
    });
    expect(snapshot.rejected_by_reason).toEqual([
      { reason: 'validation_failed', at_door: 3, at_flush: 0 },
      { reason: 'unknown_reference', at_door: 0, at_flush: 2 },
      { reason: 'invalid_json', at_door: 1, at_flush: 0 },
    ]);
    expect(snapshot.buffer).toEqual({ depth: 0, capacity: 1000 });
    expect(snapshot.history).toEqual({
      interval_seconds: 1,
      points: [
        { t: 1_001_000, accepted_per_second: 100, rejected_per_second: 0, buffer_depth: 7, flush_latency_ms: 10 },
        { t: 1_002_000, accepted_per_second: 300, rejected_per_second: 6, buffer_depth: 0, flush_latency_ms: 30 },
      ],
    });
  });

  it('keeps only the last `historyPoints` points', async () => {
    const stats = make();
    for (let i = 0; i < 10; i++) {
      totals = { ...totals, acceptedRows: i * 10 };
      await stats.sample();
      now += 1000;
    }
    const { points } = (await stats.snapshot()).history;
    expect(points.map((p) => p.t)).toEqual([1_007_000, 1_008_000, 1_009_000]);
    expect(points.every((p) => p.accepted_per_second === 10 && p.flush_latency_ms === null)).toBe(true);
  });

  it('samples on a timer, until stopped', async () => {
    jest.useFakeTimers();
    try {
      const stats = new IngestStats({
        readTotals: async () => totals,
        buffer,
        rejections: new RecentRejections(),
        intervalMs: 20,
      });
      stats.start();
      await jest.advanceTimersByTimeAsync(150);
      stats.stop();
      const count = (await stats.snapshot()).history.points.length;
      // A sample at start and one every 20 ms: 8 samples, 7 points between them.
      expect(count).toBe(7);
      await jest.advanceTimersByTimeAsync(80);
      expect((await stats.snapshot()).history.points.length).toBe(count);
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('rejectionsIn (what an answer of the ingest endpoints refused)', () => {
  const time = '2026-01-01T00:00:00.000Z';

  it('takes the last refused lines of a bulk answer, with their line numbers', () => {
    const errors = Array.from({ length: 30 }, (_, i) => ({
      line: i + 1,
      error: 'validation_failed',
      details: [{ path: '/talked_time', message: 'is required' }],
    }));
    const entries = rejectionsIn('bulk', 200, { accepted: 5, rejected: 30, errors }, time, 20);
    expect(entries).toHaveLength(20);
    expect(entries[0]).toEqual({
      time,
      endpoint: 'bulk',
      line: 11,
      error: 'validation_failed',
      message: '/talked_time: is required',
    });
    expect(entries.at(-1)?.line).toBe(30);
  });

  it('takes a refused single metric with its details, and a refused upload with the line it stopped at', () => {
    expect(
      rejectionsIn(
        'single',
        422,
        { error: 'unknown_reference', message: 'no such user', details: [{ path: '/user_id', message: 'no user 9' }] },
        time,
        20,
      ),
    ).toEqual([{ time, endpoint: 'single', line: null, error: 'unknown_reference', message: '/user_id: no user 9' }]);
    expect(
      rejectionsIn(
        'bulk',
        429,
        { error: 'overloaded', message: 'the buffer stayed full', details: [{ path: '', message: 'x', line: 7 }] },
        time,
        20,
      ),
    ).toEqual([{ time, endpoint: 'bulk', line: 7, error: 'overloaded', message: 'the buffer stayed full' }]);
  });

  it('ignores success without errors, and 503, which is not a refusal', () => {
    expect(rejectionsIn('single', 201, { status: 'stored' }, time, 20)).toEqual([]);
    expect(rejectionsIn('bulk', 200, { accepted: 3, rejected: 0, errors: [] }, time, 20)).toEqual([]);
    expect(rejectionsIn('bulk', 503, { error: 'unavailable', message: 'later', details: [] }, time, 20)).toEqual([]);
    expect(rejectionsIn('bulk', 200, 'not an object', time, 20)).toEqual([]);
  });
});
