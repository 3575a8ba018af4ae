import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Spool, parseSegmentFileName, segmentFileName } from '../../src/spool/spool';

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
});
