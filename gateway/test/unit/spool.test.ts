import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import {
  Spool,
  SpoolFull,
  parseSegmentFileName,
  segmentFileName,
  type SpoolPosition,
  type SpoolSink,
} from '../../src/spool/spool';
import { until } from '../helpers/until';

const logger = pino({ level: 'silent' });
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mg-spool-unit-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const row = (n: number): string => `${n}\t\\N\t1\tt\tf\t\\N\t2024-01-01T00:00:00Z\t\\N\t2026-01-01T00:00:00.000Z\n`;

async function contents(): Promise<string[]> {
  const names = (await readdir(dir)).sort();
  return Promise.all(names.map((name) => readFile(path.join(dir, name), 'utf8')));
}

describe('Spool', () => {
  it('names segment files so that they sort and parse back', () => {
    const id = '0f8fad5b-d9cb-469f-a165-70867728950e';
    expect(parseSegmentFileName(segmentFileName(id, 12))).toEqual({ spoolId: id, segment: 12 });
    expect(parseSegmentFileName('spool.lock')).toBeUndefined();
  });

  it('numbers rows in call order and has them on disk when the append resolves', async () => {
    const spool = await Spool.open({ dir, segmentBytes: 1 << 20, logger });
    await Promise.all([spool.append([row(1), row(2)]), spool.append([row(3)])]);
    expect(await contents()).toEqual([`1\t${row(1)}2\t${row(2)}3\t${row(3)}`]);
    await spool.close();
  });

  it('rolls over to a new segment and removes a segment once all its rows are done', async () => {
    const spool = await Spool.open({ dir, segmentBytes: row(1).length * 2 + 10, logger });
    for (let i = 1; i <= 5; i++) await spool.append([row(i)]);
    expect((await readdir(dir)).length).toBe(3);
    await spool.rowsDone(1, 2);
    expect((await readdir(dir)).length).toBe(2);
    await spool.rowsDone(4, 4); // the second segment still holds row 3
    expect((await readdir(dir)).length).toBe(2);
    await spool.rowsDone(3, 3);
    expect(await readdir(dir)).toEqual([segmentFileName(spool.id, 3)]);
    await spool.close(); // row 5 is not done: its segment stays for a replay
    expect(await readdir(dir)).toEqual([segmentFileName(spool.id, 3)]);
  });

  it('leaves no file behind when every row is done by close()', async () => {
    const spool = await Spool.open({ dir, segmentBytes: 1 << 20, logger });
    await spool.append([row(1)]);
    await spool.rowsDone(1, 1);
    await spool.close();
    expect(await readdir(dir)).toEqual([]);
  });

  it('lists the files of earlier spools in order', async () => {
    const first = await Spool.open({ dir, segmentBytes: 1, logger });
    await first.append([row(1)]);
    await first.append([row(2)]);
    await first.close();
    const files = await Spool.leftovers(dir);
    expect(files.map((file) => [file.spoolId, file.segment])).toEqual([
      [first.id, 1],
      [first.id, 2],
    ]);
  });

  it('refuses an append that would take it past maxBytes, writing nothing', async () => {
    const spool = await Spool.open({ dir, segmentBytes: 1 << 20, maxBytes: 4 * row(1).length, logger });
    await spool.append([row(1), row(2)]);
    expect(() => spool.append([row(3), row(4), row(5)])).toThrow(SpoolFull);
    await spool.append([row(3)]);
    expect(await contents()).toEqual([`1\t${row(1)}2\t${row(2)}3\t${row(3)}`]);
    await spool.close();
  });

  it('gives sequence numbers without a gap when a write fails, and leaves no torn line', async () => {
    const spool = await Spool.open({ dir, segmentBytes: row(1).length + 10, logger });
    await spool.append([row(1)]);
    await rm(dir, { recursive: true, force: true }); // the next segment cannot be created
    await expect(spool.append([row(2)])).rejects.toThrow();
    await mkdir(dir);
    await spool.append([row(3)]);
    expect(await contents()).toEqual([`2\t${row(3)}`]);
    await spool.close();
  });

  it('feeds the sink from memory while it has room, and in order from disk once it had none', async () => {
    const sink = new FakeSink(3);
    const spool = await Spool.open({ dir, segmentBytes: 200, logger, sink });
    await spool.append([row(1)]);
    expect(sink.rows).toEqual([row(1)]); // straight from memory
    sink.room = 0;
    for (let n = 2; n <= 12; n++) await spool.append([row(n)]);
    expect(sink.rows).toHaveLength(1);
    expect(spool.backlogRows).toBe(11);
    sink.room = Infinity;
    sink.wakeWaiters();
    await until(() => sink.rows.length === 12, 'the 12 rows fed to the sink', 5000);
    expect(sink.rows).toEqual(Array.from({ length: 12 }, (_, i) => row(i + 1)));
    expect(sink.positions.map((p) => p.firstSeq)).toEqual(sink.firstSeqs());
    expect(sink.largestAppend).toBeLessThanOrEqual(3);
    expect(spool.backlogRows).toBe(0);
    await spool.rowsDone(1, 12);
    await spool.close();
    expect(await readdir(dir)).toEqual([]);
  });
});

/** A buffer of `capacity` rows that records what it is given; `room` says how many more it takes. */
class FakeSink implements SpoolSink {
  readonly rows: string[] = [];
  readonly positions: SpoolPosition[] = [];
  private readonly sizes: number[] = [];
  room = Infinity;
  largestAppend = 0;
  private waiters: (() => void)[] = [];

  constructor(readonly capacity: number) {}

  hasRoom(rows: number): boolean {
    return rows <= this.room;
  }

  append(rows: readonly string[], { spool }: { spool: SpoolPosition }): void {
    this.rows.push(...rows);
    this.positions.push(spool);
    this.sizes.push(rows.length);
    this.largestAppend = Math.max(this.largestAppend, rows.length);
  }

  async appendWhenRoom(
    rows: readonly string[],
    options: { spool: SpoolPosition },
    _t?: number,
    cancelled?: () => boolean,
  ) {
    while (!this.hasRoom(rows.length)) {
      if (cancelled?.()) return false;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    this.append(rows, options);
    return true;
  }

  wakeWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** The first sequence number each append should have had, given the sizes of the appends before. */
  firstSeqs(): number[] {
    let next = 1;
    return this.sizes.map((size) => ((next += size), next - size));
  }
}
