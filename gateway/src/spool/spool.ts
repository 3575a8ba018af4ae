import { randomUUID } from 'node:crypto';
import { open, readdir, mkdir, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

/**
 * A write-ahead spool for rows acknowledged with `wait=false`: a `202` means the rows are on disk.
 *
 * Rows (already in COPY text format) are appended to segment files `<spool id>-<segment>.spool`, one
 * line per row as `<seq>\t<row>`, and fsync'd in groups: every append waiting while a write and
 * fdatasync are under way goes out in the next one. Each process writes under a fresh spool id, with
 * sequence numbers from 1, given to rows when they are written, so a failed write leaves no gap.
 *
 * Durable rows go on to the buffer (the sink) in sequence order. While nothing older waits on disk
 * and the buffer has room, they go straight from memory; otherwise they stay on disk only (the
 * backlog) and a reader feeds them from the files whenever the buffer has room. So an outage of the
 * database fills the disk, not memory: memory holds at most the buffer's rows.
 *
 * A segment is deleted once every row in it is committed or refused; a segment left behind by a
 * crash is replayed at start-up (see replay.ts).
 */
export interface SpoolOptions {
  readonly dir: string;
  readonly segmentBytes: number;
  /** The segment files together may hold this many bytes; appends beyond it get SpoolFull. 0: no limit. */
  readonly maxBytes?: number;
  readonly logger: Logger;
  /** Where durable rows go; without one, rows stay on disk (tests of the files alone). */
  readonly sink?: SpoolSink;
}

/** The buffer, as far as the spool uses it. */
export interface SpoolSink {
  /** Rows the buffer holds at most. */
  readonly capacity: number;
  hasRoom(rows: number): boolean;
  append(rows: readonly string[], options: { spool: SpoolPosition }): void;
  appendWhenRoom(
    rows: readonly string[],
    options: { spool: SpoolPosition },
    timeoutMs?: number,
    cancelled?: () => boolean,
  ): Promise<boolean>;
  wakeWaiters(): void;
}

/** Where a run of appended rows went: sequence numbers firstSeq .. firstSeq + count - 1. */
export interface SpoolPosition {
  readonly spoolId: string;
  readonly firstSeq: number;
}

/** The spool has no room for more rows (SPOOL_MAX_BYTES); nothing was written. */
export class SpoolFull extends Error {
  constructor(readonly maxBytes: number) {
    super(`the spool is full (SPOOL_MAX_BYTES=${maxBytes})`);
    this.name = 'SpoolFull';
  }
}

interface SegmentFile {
  readonly number: number;
  readonly path: string;
  readonly firstSeq: number;
  /** Last sequence number written and fsync'd to this segment (firstSeq - 1 while empty). */
  lastSeq: number;
  /** Bytes written and fsync'd. */
  bytes: number;
  /** Rows of this segment not yet committed or refused. */
  pending: number;
}

interface QueuedAppend {
  readonly rows: readonly string[];
  /** Bytes the rows take on disk, with their sequence numbers (an estimate, for the size cap). */
  readonly estimatedBytes: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** One append as written: its rows, their first sequence number, and where in which segment they are. */
interface WrittenAppend {
  readonly append: QueuedAppend;
  readonly firstSeq: number;
  readonly segment: SegmentFile;
  readonly offset: number;
  readonly data: Buffer;
}

export const SPOOL_FILE_SUFFIX = '.spool';
/** Rows read back from disk and handed to the buffer at once. */
const BACKLOG_READ_ROWS = 5000;
const BACKLOG_READ_BYTES = 1 << 20;
/** A sequence number and its tab, at most. */
const SEQ_PREFIX_BYTES = 17;

export function segmentFileName(spoolId: string, segment: number): string {
  return `${spoolId}-${String(segment).padStart(8, '0')}${SPOOL_FILE_SUFFIX}`;
}

export function parseSegmentFileName(name: string): { spoolId: string; segment: number } | undefined {
  const match = /^([0-9a-f-]{36})-(\d{8})\.spool$/.exec(name);
  return match ? { spoolId: match[1] as string, segment: Number(match[2]) } : undefined;
}

/** fsyncs a directory, so that a file created or removed in it survives a crash. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class Spool {
  readonly id = randomUUID();
  /** Sequence number of the next row written. */
  private nextSeq = 1;
  /** Every row up to this one is written and fsync'd. */
  private durableSeq = 0;
  /** Every row up to this one is in the buffer (or done). */
  private handedSeq = 0;
  /** Oldest first; the last one takes new appends. */
  private segments: SegmentFile[] = [];
  private handle: { segment: SegmentFile; file: FileHandle } | undefined;
  private queued: QueuedAppend[] = [];
  /** Bytes of appends accepted but not yet written. */
  private queuedBytes = 0;
  private writing: Promise<void> | undefined;
  /** The last segment takes no more appends (a failed write could not be cut off its end). */
  private lastSegmentSealed = false;
  /** The backlog reader, while it runs; and where it stopped reading. */
  private reading: Promise<void> | undefined;
  private cursor: { segment: SegmentFile; offset: number } | undefined;
  private feeding = true;
  private closed = false;

  /** The directory must exist; open() creates it. */
  constructor(private readonly options: SpoolOptions) {}

  static async open(options: SpoolOptions): Promise<Spool> {
    await mkdir(options.dir, { recursive: true });
    return new Spool(options);
  }

  /** Segment files of earlier processes in this directory, in order per spool id. */
  static async leftovers(dir: string): Promise<{ spoolId: string; segment: number; path: string }[]> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const files: { spoolId: string; segment: number; path: string }[] = [];
    for (const name of names) {
      const parsed = parseSegmentFileName(name);
      if (parsed !== undefined) files.push({ ...parsed, path: path.join(dir, name) });
    }
    return files.sort((a, b) => a.spoolId.localeCompare(b.spoolId) || a.segment - b.segment);
  }

  /** Bytes on disk in this spool's segments. */
  get bytes(): number {
    let bytes = 0;
    for (const segment of this.segments) bytes += segment.bytes;
    return bytes;
  }

  /** Durable rows not yet in the buffer: they wait on disk only. */
  get backlogRows(): number {
    return this.durableSeq - this.handedSeq;
  }

  /** Rows on disk not yet committed or refused: what a restart would replay. */
  get pendingRows(): number {
    let rows = 0;
    for (const segment of this.segments) rows += segment.pending;
    return rows;
  }

  /**
   * Appends rows and resolves once they are fsync'd; from then on the spool delivers them to the
   * buffer. Throws SpoolFull at once, writing nothing, when they would take the spool past maxBytes.
   */
  append(rows: readonly string[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the spool is closed'));
    let estimatedBytes = 0;
    for (const row of rows) estimatedBytes += row.length * 3 + SEQ_PREFIX_BYTES;
    const maxBytes = this.options.maxBytes ?? 0;
    // Estimated high (3 bytes a character) only past the first MiB, so a nearly empty spool never refuses.
    if (maxBytes > 0 && this.bytes + this.queuedBytes + estimatedBytes > maxBytes) {
      const exact = Buffer.byteLength(rows.join('')) + rows.length * SEQ_PREFIX_BYTES;
      if (this.bytes + this.queuedBytes + exact > maxBytes) throw new SpoolFull(maxBytes);
      estimatedBytes = exact;
    }
    this.queuedBytes += estimatedBytes;
    const durable = new Promise<void>((resolve, reject) => this.queued.push({ rows, estimatedBytes, resolve, reject }));
    this.startWriter();
    return durable;
  }

  /** Rows firstSeq..lastSeq of this spool are committed or refused: their segment may go. */
  async rowsDone(firstSeq: number, lastSeq: number): Promise<void> {
    for (const segment of this.segments) {
      const from = Math.max(firstSeq, segment.firstSeq);
      const to = Math.min(lastSeq, segment.lastSeq);
      if (to >= from) segment.pending -= to - from + 1;
    }
    await this.removeFinishedSegments();
  }

  /**
   * Resolves once every append is written and every durable row is in the buffer (the buffer must be
   * flushing meanwhile), or once feeding stops; for a shutdown that flushes everything it can.
   */
  async feedBacklog(): Promise<void> {
    while (this.feeding && (this.writing !== undefined || this.backlogRows > 0)) {
      const before = this.handedSeq;
      await this.writing;
      this.startReader();
      await this.reading;
      // A reader that took nothing could not read its files (it logged why): the rows stay for a replay.
      if (this.handedSeq === before && this.writing === undefined) return;
    }
  }

  /** Stops handing rows to the buffer; what is still on disk stays there for the next start. */
  async stopFeeding(): Promise<void> {
    this.feeding = false;
    this.options.sink?.wakeWaiters();
    await this.reading;
  }

  /** Waits until every append is durable, then closes the file; segments with pending rows stay. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.writing !== undefined) await this.writing;
    await this.stopFeeding();
    await this.handle?.file.close();
    this.handle = undefined;
    await this.removeFinishedSegments();
  }

  /** One writer at a time; appends that arrive while it finishes up get a new one. */
  private startWriter(): void {
    if (this.writing !== undefined) return;
    this.writing = this.writeQueued().finally(() => {
      this.writing = undefined;
      if (this.queued.length > 0) this.startWriter();
    });
  }

  /** Writes and fsyncs everything queued, in groups, until the queue stays empty. */
  private async writeQueued(): Promise<void> {
    while (this.queued.length > 0) {
      const group = this.queued;
      this.queued = [];
      for (const append of group) this.queuedBytes -= append.estimatedBytes;
      const before = { nextSeq: this.nextSeq, segments: this.segments.length, bytes: this.segmentBytes() };
      try {
        const written = await this.writeGroup(group);
        this.durableSeq = this.nextSeq - 1;
        for (const { append, firstSeq, segment, offset, data } of written) {
          append.resolve();
          this.deliver(append.rows, firstSeq, segment, offset + data.length);
        }
      } catch (error) {
        this.options.logger.error({ err: error, appends: group.length }, 'spool write failed');
        await this.undoGroup(before);
        for (const append of group) append.reject(error);
      }
    }
    await this.removeFinishedSegments();
  }

  /** Writes one group, segment by segment, each fsync'd; sequence numbers are given here. */
  private async writeGroup(group: readonly QueuedAppend[]): Promise<WrittenAppend[]> {
    const written: WrittenAppend[] = [];
    let pendingWrites: { segment: SegmentFile; parts: Buffer[] } | undefined;
    const flushWrites = async (): Promise<void> => {
      if (pendingWrites === undefined) return;
      const { segment, parts } = pendingWrites;
      const file = await this.fileFor(segment);
      await writeFully(file, parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts));
      await file.datasync();
      for (const part of parts) segment.bytes += part.length;
      pendingWrites = undefined;
    };
    let offsetInSegment = 0;
    for (const append of group) {
      const firstSeq = this.nextSeq;
      let text = '';
      for (const row of append.rows) text += `${this.nextSeq++}\t${row}`;
      const data = Buffer.from(text);
      const segment = this.segmentFor(data.length, pendingWrites, firstSeq);
      if (pendingWrites !== undefined && pendingWrites.segment !== segment) await flushWrites();
      let writes = pendingWrites;
      if (writes === undefined) {
        writes = pendingWrites = { segment, parts: [] };
        offsetInSegment = segment.bytes;
      }
      written.push({ append, firstSeq, segment, offset: offsetInSegment, data });
      writes.parts.push(data);
      offsetInSegment += data.length;
      segment.lastSeq = this.nextSeq - 1;
      segment.pending += append.rows.length;
    }
    await flushWrites();
    return written;
  }

  /** A failed group leaves the files as they were: torn bytes cut off, segments it started removed. */
  private async undoGroup(before: { nextSeq: number; segments: number; bytes: number[] }): Promise<void> {
    this.nextSeq = before.nextSeq;
    const added = this.segments.splice(before.segments);
    await this.handle?.file.close().catch(() => undefined);
    this.handle = undefined;
    for (const segment of added) await unlink(segment.path).catch(() => undefined);
    for (const [index, segment] of this.segments.entries()) {
      segment.lastSeq = Math.min(segment.lastSeq, before.nextSeq - 1);
      segment.pending = Math.min(segment.pending, segment.lastSeq - segment.firstSeq + 1);
      const bytes = before.bytes[index] as number;
      if (segment.bytes === bytes) continue;
      segment.bytes = bytes;
      try {
        const file = await open(segment.path, 'r+');
        try {
          await file.truncate(bytes);
          await file.datasync();
        } finally {
          await file.close();
        }
      } catch (error) {
        // The torn tail cannot be cut: append to a new file. Replay skips a torn last line.
        this.options.logger.error(
          { err: error, file: segment.path },
          'spool segment not restored after a failed write',
        );
        this.lastSegmentSealed = true;
      }
    }
  }

  private segmentBytes(): number[] {
    return this.segments.map((segment) => segment.bytes);
  }

  /** The segment that takes `bytes` more: the current one, or a new one once it is full. */
  private segmentFor(
    bytes: number,
    pendingWrites: { segment: SegmentFile; parts: Buffer[] } | undefined,
    firstSeq: number,
  ): SegmentFile {
    const current = this.segments[this.segments.length - 1];
    let queuedInCurrent = 0;
    if (pendingWrites !== undefined && pendingWrites.segment === current) {
      for (const part of pendingWrites.parts) queuedInCurrent += part.length;
    }
    const used = current === undefined ? 0 : current.bytes + queuedInCurrent;
    if (current !== undefined && !this.lastSegmentSealed) {
      if (used === 0 || used + bytes <= this.options.segmentBytes) return current;
    }
    this.lastSegmentSealed = false;
    const number = (current?.number ?? 0) + 1;
    const segment: SegmentFile = {
      number,
      path: path.join(this.options.dir, segmentFileName(this.id, number)),
      firstSeq,
      lastSeq: firstSeq - 1,
      bytes: 0,
      pending: 0,
    };
    this.segments.push(segment);
    return segment;
  }

  private async fileFor(segment: SegmentFile): Promise<FileHandle> {
    if (this.handle?.segment === segment) return this.handle.file;
    await this.handle?.file.close();
    this.handle = undefined;
    const file = await open(segment.path, 'a');
    this.handle = { segment, file };
    // The new file's directory entry must survive a crash too, or its fsync'd rows could vanish.
    await syncDirectory(this.options.dir);
    return file;
  }

  /**
   * Hands durable rows to the buffer straight from memory when they are next in order and fit;
   * otherwise they stay on disk and the backlog reader takes them from there.
   */
  private deliver(rows: readonly string[], firstSeq: number, segment: SegmentFile, endOffset: number): void {
    const sink = this.options.sink;
    if (sink === undefined || !this.feeding) return;
    if (this.reading === undefined && this.handedSeq === firstSeq - 1 && sink.hasRoom(rows.length)) {
      sink.append(rows, { spool: { spoolId: this.id, firstSeq } });
      this.handedSeq = firstSeq + rows.length - 1;
      this.cursor = { segment, offset: endOffset };
      return;
    }
    this.startReader();
  }

  private startReader(): void {
    if (this.reading !== undefined || !this.feeding) return;
    this.reading = this.readBacklog().finally(() => {
      this.reading = undefined;
      // Rows that became durable while the last chunk was handed over found the reader still running.
      if (this.feeding && this.backlogRows > 0) this.startReader();
    });
  }

  /** Feeds the buffer from the files until it has every durable row. */
  private async readBacklog(): Promise<void> {
    const sink = this.options.sink as SpoolSink;
    try {
      while (this.feeding && this.backlogRows > 0) {
        const chunk = await this.readNextRows();
        if (chunk === undefined) return;
        const taken = await sink.appendWhenRoom(
          chunk.rows,
          { spool: { spoolId: this.id, firstSeq: chunk.firstSeq } },
          undefined,
          () => !this.feeding,
        );
        if (!taken) return;
        this.handedSeq = chunk.firstSeq + chunk.rows.length - 1;
        this.cursor = chunk.cursor;
      }
    } catch (error) {
      // The rows stay on disk; the next append tries again, and a restart replays them.
      this.options.logger.error({ err: error }, 'spool backlog could not be read');
    }
  }

  /**
   * The next rows after handedSeq, read from their segment: consecutive sequence numbers, whole lines
   * only, and only bytes that are fsync'd.
   */
  private async readNextRows(): Promise<
    { rows: string[]; firstSeq: number; cursor: { segment: SegmentFile; offset: number } } | undefined
  > {
    const firstSeq = this.handedSeq + 1;
    const most = Math.min(BACKLOG_READ_ROWS, Math.max(1, (this.options.sink?.capacity ?? 0) >> 1));
    const lastSeq = Math.min(this.durableSeq, firstSeq + most - 1);
    const segment = this.segments.find((s) => s.firstSeq <= firstSeq && firstSeq <= s.lastSeq);
    if (segment === undefined || lastSeq < firstSeq) return undefined;
    let offset = this.cursor?.segment === segment ? this.cursor.offset : 0;
    const rows: string[] = [];
    const file = await open(segment.path, 'r');
    try {
      while (firstSeq + rows.length <= lastSeq && offset < segment.bytes) {
        const length = Math.min(BACKLOG_READ_BYTES, segment.bytes - offset);
        const buffer = Buffer.allocUnsafe(length);
        const { bytesRead } = await file.read(buffer, 0, length, offset);
        const whole = buffer.lastIndexOf(10, bytesRead - 1) + 1;
        if (whole === 0) throw new Error(`spool segment ${segment.path} has a line longer than ${length} bytes`);
        let start = 0;
        while (start < whole && firstSeq + rows.length <= lastSeq) {
          const end = buffer.indexOf(10, start);
          const tab = buffer.indexOf(9, start);
          const seq = Number(buffer.toString('latin1', start, tab));
          if (seq > firstSeq + rows.length) break; // past what is wanted (cannot happen in order)
          if (seq === firstSeq + rows.length) rows.push(buffer.toString('utf8', tab + 1, end + 1));
          start = end + 1;
        }
        offset += start;
        if (start < whole) break;
      }
    } finally {
      await file.close();
    }
    return rows.length === 0 ? undefined : { rows, firstSeq, cursor: { segment, offset } };
  }

  /** Segments that are no longer written to and whose rows are all committed or refused. */
  private async removeFinishedSegments(): Promise<void> {
    const current = this.segments[this.segments.length - 1];
    const finished = this.segments.filter(
      (segment) =>
        segment.pending === 0 &&
        this.handle?.segment !== segment &&
        (segment !== current || this.closed || this.lastSegmentSealed),
    );
    if (finished.length === 0) return;
    this.segments = this.segments.filter((segment) => !finished.includes(segment));
    for (const segment of finished) {
      await unlink(segment.path).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT')
          this.options.logger.warn({ err: error, file: segment.path }, 'spool segment not removed');
      });
    }
  }
}

/** Appends all of `data`, however many calls it takes: a short write is not success. */
async function writeFully(file: FileHandle, data: Buffer): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await file.write(data, done, data.length - done, null);
    if (bytesWritten <= 0) throw new Error('the spool file took no bytes (is the disk full?)');
    done += bytesWritten;
  }
}
