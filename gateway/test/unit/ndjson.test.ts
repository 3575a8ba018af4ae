import { createRandom } from '../../src/db/seeded-random';
import { NdjsonLineSplitter, type BadLineReason } from '../../src/ingest/ndjson';

function split(
  chunks: (string | Buffer)[],
  maxLineBytes = 1024,
): { lines: [number, string][]; bad: [number, BadLineReason][] } {
  const lines: [number, string][] = [];
  const bad: [number, BadLineReason][] = [];
  const sink = {
    line: (n: number, text: string) => lines.push([n, text]),
    badLine: (n: number, r: BadLineReason) => bad.push([n, r]),
  };
  const splitter = new NdjsonLineSplitter(maxLineBytes);
  for (const chunk of chunks) splitter.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk, sink);
  splitter.end(sink);
  return { lines, bad };
}

describe('NdjsonLineSplitter', () => {
  it('gives the same lines from whole chunks as one byte at a time (whole ASCII chunks are read at once)', () => {
    const random = createRandom(11);
    const pieces = ['{"a":1}', '{"b":"x y"}', '', ' ', '\t', '\r', 'ü', '🎙', '\u0000', 'x'.repeat(40), '\ufeff{}'];
    pieces.push('\u00a0', '\u2028', 'é'.repeat(6), '\ufeff', 'x'.repeat(9));
    for (let body = 0; body < 300; body++) {
      const lines = Array.from({ length: random.int(0, 40) }, () =>
        Array.from({ length: random.int(0, 3) }, () => random.pick(pieces)).join(''),
      );
      let bytes = Buffer.from(lines.join(random.pick(['\n', '\r\n'])) + random.pick(['', '\n']));
      if (random.chance(0.2)) {
        const at = random.int(0, bytes.length);
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([0xff]), bytes.subarray(at)]);
      }
      const oneByOne = split(
        [...bytes].map((byte) => Buffer.from([byte])),
        32,
      );
      for (const size of [1 + random.int(0, 20), 64, bytes.length + 1]) {
        const chunks: Buffer[] = [];
        for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
        expect(split(chunks, 32)).toEqual(oneByOne);
      }
    }
  });

  it('numbers lines from 1, counting blank ones, with or without a final newline', () => {
    expect(split(['a\n\nb\n   \nc'])).toEqual({
      lines: [
        [1, 'a'],
        [3, 'b'],
        [5, 'c'],
      ],
      bad: [],
    });
    expect(split(['a\nb\n'])).toEqual({
      lines: [
        [1, 'a'],
        [2, 'b'],
      ],
      bad: [],
    });
    expect(split([''])).toEqual({ lines: [], bad: [] });
  });

  it('takes CRLF line ends and drops a leading byte-order mark', () => {
    expect(split(['\ufeff{"a":1}\r\n{"b":2}\r\n'])).toEqual({
      lines: [
        [1, '{"a":1}'],
        [2, '{"b":2}'],
      ],
      bad: [],
    });
  });

  it('joins lines and multi-byte characters split across chunks', () => {
    const bytes = Buffer.from('{"name":"ünï🎙"}\n{"x":1}\n');
    const chunks = [...bytes].map((byte) => Buffer.from([byte]));
    expect(split(chunks).lines).toEqual([
      [1, '{"name":"ünï🎙"}'],
      [2, '{"x":1}'],
    ]);
  });

  it('reports an over-long line once, skips it without buffering it, and goes on', () => {
    const long = 'x'.repeat(50);
    expect(split([`ok\n${long}\nok2\n`], 10)).toEqual({
      lines: [
        [1, 'ok'],
        [3, 'ok2'],
      ],
      bad: [[2, 'too_long']],
    });
    // The same line arriving in small pieces, and as the last line without a newline.
    expect(split(['ok\n', long.slice(0, 20), long.slice(20), '\nok2'], 10)).toEqual({
      lines: [
        [1, 'ok'],
        [3, 'ok2'],
      ],
      bad: [[2, 'too_long']],
    });
    expect(split(['ok\n', long], 10)).toEqual({ lines: [[1, 'ok']], bad: [[2, 'too_long']] });
  });

  it('does not count the CR of a CRLF ending against the limit', () => {
    expect(split(['0123456789\r\n0123456789\n01234567890\r\n'], 10)).toEqual({
      lines: [
        [1, '0123456789'],
        [2, '0123456789'],
      ],
      bad: [[3, 'too_long']],
    });
  });

  it('reports invalid UTF-8 per line', () => {
    const chunk = Buffer.concat([Buffer.from('good\n'), Buffer.from([0xc3, 0x28]), Buffer.from('\nalso good\n')]);
    expect(split([chunk])).toEqual({
      lines: [
        [1, 'good'],
        [3, 'also good'],
      ],
      bad: [[2, 'invalid_utf8']],
    });
  });

  it("does not keep a reference to the caller's chunk", () => {
    const chunk = Buffer.from('{"partial":');
    const lines: string[] = [];
    const splitter = new NdjsonLineSplitter(100);
    const sink = { line: (_n: number, text: string) => lines.push(text), badLine: () => undefined };
    splitter.push(chunk, sink);
    chunk.fill(0x20);
    splitter.push(Buffer.from('1}\n'), sink);
    expect(lines).toEqual(['{"partial":1}']);
  });
});
