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
 * sequence numbers from 1. A segment is deleted once every row in it is committed or refused; a
 * segment left behind by a crash is replayed at start-up (see replay.ts).
 */
export interface SpoolOptions {
  readonly dir: string;
  readonly segmentBytes: number;
  readonly logger: Logger;
}

/** Where a run of appended rows went: sequence numbers firstSeq .. firstSeq + count - 1. */
export interface SpoolPosition {
  readonly spoolId: string;
  readonly firstSeq: number;
}

interface SegmentFile {
  readonly number: number;
  readonly path: string;
  readonly firstSeq: number;
  lastSeq: number;
  /** Bytes appended to this segment (written or queued). */
  bytes: number;
  /** Rows of this segment not yet committed or refused. */
  pending: number;
  /** Appends of this segment not yet written and fsync'd. */
  unwritten: number;
}

interface QueuedAppend {
  readonly segment: SegmentFile;
  readonly data: Buffer;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

export const SPOOL_FILE_SUFFIX = '.spool';

export function segmentFileName(spoolId: string, segment: number): string {
  return `${spoolId}-${String(segment).padStart(8, '0')}${SPOOL_FILE_SUFFIX}`;
}

export function parseSegmentFileName(name: string): { spoolId: string; segment: number } | undefined {
  const match = /^([0-9a-f-]{36})-(\d{8})\.spool$/.exec(name);
  return match ? { spoolId: match[1] as string, segment: Number(match[2]) } : undefined;
}

export class Spool {
  readonly id = randomUUID();
  private nextSeq = 1;
  /** Oldest first; the last one takes new appends. */
  private segments: SegmentFile[] = [];
  private handle: { segment: SegmentFile; file: FileHandle } | undefined;
  private queued: QueuedAppend[] = [];
  private writing: Promise<void> | undefined;
  private closed = false;

  private constructor(private readonly options: SpoolOptions) {}

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

  /**
   * Appends rows; `durable` resolves once they are fsync'd. Sequence numbers are assigned at once,
   * in call order, so the caller may hand the rows to the buffer before `durable` settles.
   */
  append(rows: readonly string[]): { position: SpoolPosition; durable: Promise<void> } {
    if (this.closed) throw new Error('the spool is closed');
    const position = { spoolId: this.id, firstSeq: this.nextSeq };
    let text = '';
    for (const row of rows) text += `${this.nextSeq++}\t${row}`;
    const data = Buffer.from(text);
    const segment = this.segmentFor(data.length, position.firstSeq);
    segment.lastSeq = this.nextSeq - 1;
    segment.bytes += data.length;
    segment.pending += rows.length;
    segment.unwritten += 1;
    const durable = new Promise<void>((resolve, reject) => this.queued.push({ segment, data, resolve, reject }));
    this.startWriter();
    return { position, durable };
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

  /** Waits until every append is durable, then closes the file; segments with pending rows stay. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.writing !== undefined) await this.writing;
    await this.handle?.file.close();
    this.handle = undefined;
    await this.removeFinishedSegments();
  }

  /** The segment that takes an append of `bytes`: the current one, or a new one once it is full. */
  private segmentFor(bytes: number, firstSeq: number): SegmentFile {
    const current = this.segments[this.segments.length - 1];
    if (current !== undefined && (current.bytes === 0 || current.bytes + bytes <= this.options.segmentBytes)) {
      return current;
    }
    const number = (current?.number ?? 0) + 1;
    const segment: SegmentFile = {
      number,
      path: path.join(this.options.dir, segmentFileName(this.id, number)),
      firstSeq,
      lastSeq: firstSeq - 1,
      bytes: 0,
      pending: 0,
      unwritten: 0,
    };
    this.segments.push(segment);
    return segment;
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
      try {
        let start = 0;
        while (start < group.length) {
          const segment = (group[start] as QueuedAppend).segment;
          let end = start;
          while (end < group.length && (group[end] as QueuedAppend).segment === segment) end++;
          const file = await this.fileFor(segment);
          const parts = group.slice(start, end).map((append) => append.data);
          await file.write(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts));
          await file.datasync();
          start = end;
        }
        for (const append of group) {
          append.segment.unwritten -= 1;
          append.resolve();
        }
      } catch (error) {
        this.options.logger.error({ err: error }, 'spool write failed');
        for (const append of group) {
          append.segment.unwritten -= 1;
          append.reject(error);
        }
      }
    }
    await this.removeFinishedSegments();
  }

  private async fileFor(segment: SegmentFile): Promise<FileHandle> {
    if (this.handle?.segment === segment) return this.handle.file;
    await this.handle?.file.close();
    this.handle = { segment, file: await open(segment.path, 'a') };
    return this.handle.file;
  }

  /** Segments that are no longer written to and whose rows are all committed or refused. */
  private async removeFinishedSegments(): Promise<void> {
    const current = this.segments[this.segments.length - 1];
    const finished = this.segments.filter(
      (segment) =>
        segment.pending === 0 &&
        segment.unwritten === 0 &&
        this.handle?.segment !== segment &&
        (segment !== current || this.closed),
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
