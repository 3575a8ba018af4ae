import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip, createGzip, type Gzip } from 'node:zlib';
import { GZIP_OPTIONS, isBlank, restOfPart } from 'metrics-gateway-client';

const NEWLINE = 0x0a;
const NEWLINE_BYTE = Buffer.from('\n');
const GZIP_MAGIC = [0x1f, 0x8b];
/** Lines are handed to gzip in pieces of about this size: one write per line would cost more than the line. */
const GZIP_WRITE_BYTES = 256 * 1024;

/** Part of an NDJSON file, ready to be one request: its lines, gzip-compressed, each ending in a newline. */
export interface UploadChunk {
  /** File line number (from 1) of the chunk's first line: line L of the request is file line firstLine + L - 1. */
  readonly firstLine: number;
  /** Lines in the chunk, blank ones included (the gateway counts them too). */
  readonly lines: number;
  /** Lines that are not blank: the rows the gateway will accept or refuse. */
  readonly rows: number;
  /** The gzip body. */
  readonly body: Buffer;
  /** Bytes of the file read when the chunk was cut (compressed bytes for a .gz file), for progress. */
  readonly fileOffset: number;
  /** File lines longer than maxLineBytes: sent as blank lines, so that numbering stays, and reported here. */
  readonly oversized: readonly number[];
}

export interface ChunkOptions {
  readonly chunkLines: number;
  /** A chunk also ends once its lines reach this many (uncompressed) bytes. */
  readonly chunkBytes: number;
  /** Longer lines are not read into memory, let alone sent. */
  readonly maxLineBytes: number;
  /** Lines before this one are skipped (a resumed upload); numbering still counts them. */
  readonly startLine: number;
}

/** Whether a file starts with the gzip magic bytes, whatever its name. */
export async function isGzipFile(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await handle.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1];
  } finally {
    await handle.close();
  }
}

/**
 * Builds one chunk's gzip body as its lines arrive. `pending` holds lines not yet handed to gzip;
 * `compressed` what gzip has produced so far, which is all that a finished chunk keeps.
 */
class ChunkBuilder {
  lines = 0;
  rows = 0;
  rawBytes = 0;
  readonly oversized: number[] = [];
  private readonly gzip: Gzip = createGzip(GZIP_OPTIONS);
  private readonly compressed: Buffer[] = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(readonly firstLine: number) {
    this.gzip.on('data', (data: Buffer) => this.compressed.push(data));
  }

  /** Adds a line (without its newline); resolves at once unless gzip asks to wait. */
  async add(line: Buffer, blank: boolean): Promise<void> {
    this.lines += 1;
    if (!blank) this.rows += 1;
    this.pending.push(line, NEWLINE_BYTE);
    this.pendingBytes += line.length + 1;
    this.rawBytes += line.length + 1;
    if (this.pendingBytes >= GZIP_WRITE_BYTES) await this.hand();
  }

  async finish(fileOffset: number): Promise<UploadChunk> {
    await this.hand();
    this.gzip.end();
    await once(this.gzip, 'end');
    return {
      firstLine: this.firstLine,
      lines: this.lines,
      rows: this.rows,
      body: Buffer.concat(this.compressed),
      fileOffset,
      oversized: this.oversized,
    };
  }

  private async hand(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const piece = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.gzip.write(piece)) await once(this.gzip, 'drain');
  }
}

/**
 * Reads an NDJSON file (gzip or not, by its first bytes) and yields it in chunks of at most
 * `chunkLines` lines, each already gzip-compressed, holding no more than one chunk's compressed bytes
 * and one line in memory. Lines are split on LF and passed on byte for byte (CRLF, invalid UTF-8 and
 * all), so that the gateway judges them as it would the file itself.
 */
export async function* readChunks(file: string, options: ChunkOptions): AsyncGenerator<UploadChunk> {
  const { chunkLines, chunkBytes, maxLineBytes, startLine } = options;
  const input = createReadStream(file, { highWaterMark: 256 * 1024 });
  const source = (await isGzipFile(file)) ? input.pipe(createGunzip()) : input;
  // A broken file stream would not reach the gunzip stream that is read.
  if (source !== input) input.on('error', (error) => source.destroy(error));

  let lineNumber = 0; // lines ended so far
  let carry: Buffer[] = [];
  let carryBytes = 0;
  let tooLong = false;
  let chunk: ChunkBuilder | undefined;

  const endLine = async (last: Buffer): Promise<UploadChunk | undefined> => {
    lineNumber += 1;
    const line = carryBytes === 0 ? last : Buffer.concat([...carry, last]);
    const oversized = tooLong || line.length > maxLineBytes;
    carry = [];
    carryBytes = 0;
    tooLong = false;
    if (lineNumber < startLine) return undefined;
    chunk ??= new ChunkBuilder(lineNumber);
    if (oversized) {
      chunk.oversized.push(lineNumber);
      await chunk.add(Buffer.alloc(0), true);
    } else {
      await chunk.add(line, isBlank(line));
    }
    if (chunk.lines >= chunkLines || chunk.rawBytes >= chunkBytes) {
      const done = await chunk.finish(input.bytesRead);
      chunk = undefined;
      return done;
    }
    return undefined;
  };

  for await (const data of source as AsyncIterable<Buffer>) {
    let start = 0;
    for (;;) {
      const end = data.indexOf(NEWLINE, start);
      if (end === -1) break;
      const done = await endLine(tooLong ? Buffer.alloc(0) : data.subarray(start, end));
      if (done !== undefined) yield done;
      start = end + 1;
    }
    if (start < data.length && !tooLong) {
      const rest = data.subarray(start);
      if (carryBytes + rest.length > maxLineBytes) {
        // Too long to be sent: skip it up to its newline instead of holding it.
        tooLong = true;
        carry = [];
        carryBytes = 0;
      } else {
        carry.push(Buffer.from(rest)); // a copy: the stream may reuse its buffer
        carryBytes += rest.length;
      }
    }
  }
  // A last line without a newline still counts, as it does for the gateway.
  if (carryBytes > 0 || tooLong) {
    const done = await endLine(Buffer.alloc(0));
    if (done !== undefined) yield done;
  }
  if (chunk !== undefined && chunk.lines > 0) yield await (chunk as ChunkBuilder).finish(input.bytesRead);
}

/**
 * The part of a chunk from its `fromLine`-th line (counting from 1) on, as a chunk of its own: what
 * is sent again when the gateway took the lines before it (a 429 that names where it stopped).
 */
export function chunkFrom(chunk: UploadChunk, fromLine: number): UploadChunk {
  const rest = restOfPart(chunk, fromLine);
  return { ...rest, fileOffset: chunk.fileOffset, oversized: chunk.oversized.filter((line) => line >= rest.firstLine) };
}
