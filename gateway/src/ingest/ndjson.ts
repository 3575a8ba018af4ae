import { isAscii, isUtf8 } from 'node:buffer';

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

export type BadLineReason = 'too_long' | 'invalid_utf8';

/** Receives the lines of an NDJSON body, numbered from 1; blank lines are counted but not passed on. */
export interface LineSink {
  line(number: number, text: string): void;
  badLine(number: number, reason: BadLineReason): void;
}

/**
 * Splits a byte stream into NDJSON lines as chunks arrive, without holding more than one line.
 * A line longer than `maxLineBytes` is reported and skipped up to its newline, never buffered whole.
 * Lines end with LF or CRLF; a UTF-8 byte-order mark at the very start is ignored.
 */
export class NdjsonLineSplitter {
  private carry: Buffer[] = [];
  private carryBytes = 0;
  /** True while skipping the rest of a line already reported as too long. */
  private skipping = false;
  private lineNumber = 0;

  /** The limit on a raw line: one byte more than the content's, for the CR of a CRLF ending. */
  private readonly maxRawBytes: number;

  constructor(private readonly maxLineBytes: number) {
    this.maxRawBytes = maxLineBytes + 1;
  }

  /** How many lines (blank ones included) have ended so far. */
  get linesSeen(): number {
    return this.lineNumber;
  }

  push(chunk: Buffer, sink: LineSink): void {
    const data = chunk;
    let start = 0;
    const lastNewline = data.lastIndexOf(NEWLINE);
    let blockTried = false;
    for (;;) {
      if (!blockTried && !this.skipping && this.carryBytes === 0 && lastNewline > start) {
        blockTried = true;
        if (this.emitBlock(data, start, lastNewline, sink)) {
          start = lastNewline + 1;
          break;
        }
      }
      const end = data.indexOf(NEWLINE, start);
      if (end === -1) break;
      this.lineNumber += 1;
      if (this.skipping) {
        this.skipping = false;
      } else if (this.carryBytes + (end - start) > this.maxRawBytes) {
        sink.badLine(this.lineNumber, 'too_long');
      } else {
        const piece = data.subarray(start, end);
        this.emit(this.carryBytes === 0 ? piece : Buffer.concat([...this.carry, piece]), sink);
      }
      this.carry = [];
      this.carryBytes = 0;
      start = end + 1;
    }
    if (start < data.length && !this.skipping) {
      const rest = data.subarray(start);
      if (this.carryBytes + rest.length > this.maxRawBytes) {
        sink.badLine(this.lineNumber + 1, 'too_long');
        this.skipping = true;
        this.carry = [];
        this.carryBytes = 0;
      } else {
        // Copy: the caller may reuse the chunk's memory.
        this.carry.push(Buffer.from(rest));
        this.carryBytes += rest.length;
      }
    }
  }

  /** The body ended: a last line without a newline still counts. */
  end(sink: LineSink): void {
    if (this.skipping) {
      this.lineNumber += 1;
      this.skipping = false;
      return;
    }
    if (this.carryBytes === 0) return;
    const last = Buffer.concat(this.carry);
    this.carry = [];
    this.carryBytes = 0;
    this.lineNumber += 1;
    this.emit(last, sink);
  }

  /**
   * The whole lines in data[start, end), when all are valid UTF-8, decoded at once rather than line by
   * line: the same lines as emit gives. False (nothing done) when a line is not, or a BOM comes first.
   */
  private emitBlock(data: Buffer, start: number, end: number, sink: LineSink): boolean {
    const block = data.subarray(start, end);
    // A character is a byte in ASCII, the common case; else a line's bytes are counted when it could be too long.
    const ascii = isAscii(block);
    if (!ascii && (!isUtf8(block) || (this.lineNumber === 0 && block.subarray(0, BOM.length).equals(BOM)))) {
      return false;
    }
    const text = data.toString(ascii ? 'latin1' : 'utf8', start, end);
    const maxChars = ascii ? this.maxLineBytes : Math.floor(this.maxLineBytes / 3);
    let from = 0;
    for (;;) {
      const newline = text.indexOf('\n', from);
      const lineEnd = newline === -1 ? text.length : newline;
      this.lineNumber += 1;
      const contentEnd = lineEnd > from && text.charCodeAt(lineEnd - 1) === CARRIAGE_RETURN ? lineEnd - 1 : lineEnd;
      const line = text.slice(from, contentEnd);
      if (line.length > maxChars && (ascii || Buffer.byteLength(line) > this.maxLineBytes)) {
        sink.badLine(this.lineNumber, 'too_long');
      } else if (line.length > 0) {
        // Most lines start with "{": only a line that starts with a space or a non-ASCII character can be blank.
        const first = line.charCodeAt(0);
        if ((first > 0x20 && first < 0x7f) || line.trim().length > 0) sink.line(this.lineNumber, line);
      }
      if (newline === -1) return true;
      from = newline + 1;
    }
  }

  private emit(bytes: Buffer, sink: LineSink): void {
    const length = bytes.length > 0 && bytes[bytes.length - 1] === CARRIAGE_RETURN ? bytes.length - 1 : bytes.length;
    const bomLength = this.lineNumber === 1 && bytes.subarray(0, BOM.length).equals(BOM) ? BOM.length : 0;
    const line = bytes.subarray(bomLength, Math.max(bomLength, length));
    if (length > this.maxLineBytes) {
      sink.badLine(this.lineNumber, 'too_long');
      return;
    }
    if (!isUtf8(line)) {
      sink.badLine(this.lineNumber, 'invalid_utf8');
      return;
    }
    const text = line.toString('utf8');
    if (text.trim().length > 0) sink.line(this.lineNumber, text);
  }
}
