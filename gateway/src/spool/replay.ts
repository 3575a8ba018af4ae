import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { committedSpoolRanges, deleteSpoolCommits } from '../db/spool-commits';
import { Spool, type SpoolSink } from './spool';

const REPLAY_CHUNK_ROWS = 5000;

/** Committed ranges of one spool, sorted, for membership tests while its files are read. */
class CommittedRanges {
  private index = 0;
  constructor(private readonly ranges: readonly { first: number; last: number }[]) {}

  /** Sequence numbers must be asked in increasing order. */
  has(seq: number): boolean {
    while (this.index < this.ranges.length && (this.ranges[this.index] as { last: number }).last < seq) this.index++;
    const range = this.ranges[this.index];
    return range !== undefined && range.first <= seq;
  }
}

/**
 * Puts the rows that earlier processes spooled but did not commit back into the buffer, waits until
 * they are written, then removes their files and commit records. Bytes after a file's last newline
 * are an append that never reached the disk whole, and so was never acknowledged: they are skipped.
 */
export async function replaySpool(
  dir: string,
  pool: Pool,
  /** The buffer (the Batcher). */
  buffer: Pick<SpoolSink, 'appendWhenRoom'> & { drain(): Promise<void> },
  logger: Logger,
): Promise<{ files: number; replayed: number; alreadyCommitted: number; malformed: number }> {
  const files = await Spool.leftovers(dir);
  if (files.length === 0) return { files: 0, replayed: 0, alreadyCommitted: 0, malformed: 0 };
  let replayed = 0;
  let alreadyCommitted = 0;
  let malformed = 0;
  const spoolIds = [...new Set(files.map((file) => file.spoolId))];
  for (const spoolId of spoolIds) {
    const committed = new CommittedRanges(await committedSpoolRanges(pool, spoolId));
    // A run handed to the buffer must have consecutive sequence numbers: rows firstSeq, firstSeq + 1, ...
    let run: string[] = [];
    let firstSeq = 0;
    const handRun = async (): Promise<void> => {
      if (run.length === 0) return;
      await buffer.appendWhenRoom(run, { spool: { spoolId, firstSeq } });
      replayed += run.length;
      run = [];
    };
    const takeLine = async (line: string): Promise<void> => {
      const tab = line.indexOf('\t');
      const seq = Number(line.slice(0, tab));
      if (tab < 1 || !Number.isSafeInteger(seq) || seq < 1) {
        // Not something Spool.append wrote (a damaged disk, a hand edit): a row without its sequence
        // number could not be recorded as committed, so it is reported rather than stored.
        logger.error({ spoolId, line: line.slice(0, 200) }, 'malformed spool line skipped');
        malformed += 1;
        return;
      }
      if (committed.has(seq)) {
        alreadyCommitted += 1;
        return;
      }
      if (run.length > 0 && (seq !== firstSeq + run.length || run.length >= REPLAY_CHUNK_ROWS)) await handRun();
      if (run.length === 0) firstSeq = seq;
      run.push(`${line.slice(tab + 1)}\n`);
    };
    for (const file of files.filter((f) => f.spoolId === spoolId)) {
      let carry = '';
      for await (const chunk of createReadStream(file.path, { encoding: 'utf8' })) {
        const text = carry + (chunk as string);
        let start = 0;
        for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
          await takeLine(text.slice(start, end));
          start = end + 1;
        }
        carry = text.slice(start);
      }
      if (carry.length > 0) logger.warn({ file: file.path, bytes: carry.length }, 'torn spool append skipped');
    }
    await handRun();
  }
  await buffer.drain();
  for (const file of files) await unlink(file.path);
  await deleteSpoolCommits(pool, spoolIds);
  logger.info({ files: files.length, replayed, alreadyCommitted, malformed }, 'spool replayed');
  return { files: files.length, replayed, alreadyCommitted, malformed };
}
