import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { metricSchema, type LineError } from '../../src/contract/schemas';
import type { MetricsWriter } from '../../src/db/metrics-writer';
import type { Queryable } from '../../src/db/pool';
import { Batcher } from '../../src/ingest/batcher';
import { escapeCopyText } from '../../src/ingest/copy-encode';
import { MetricIntake } from '../../src/ingest/intake';
import { NdjsonLineSplitter, type BadLineReason } from '../../src/ingest/ndjson';
import { SPECIALISED_FOR, quickCheckMetric, schemaIsAsSpecialised } from '../../src/ingest/quick-check';
import { ReferenceCache } from '../../src/ingest/references';
import { MAX_DETAIL_TEXT_CHARS, boundedText, checkMetric } from '../../src/ingest/schema';
import { generateMetrics } from '../../../seed/generate-metrics';
import { CORPUS_NOW, metricCorpus } from '../helpers/metric-corpus';

const CORPUS = metricCorpus(20_000);

function parsed(line: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(line) as unknown };
  } catch {
    return { ok: false };
  }
}

describe('quickCheckMetric', () => {
  it('is written for the Metric schema as it is: same fields, keywords and types', () => {
    expect(schemaIsAsSpecialised()).toBe(true);
    expect(Object.keys(SPECIALISED_FOR.fields)).toEqual(Object.keys(metricSchema.properties));
  });

  it('notices a schema that changed under it', () => {
    const properties = metricSchema.properties as unknown as Record<string, Record<string, unknown>>;
    const userId = properties.user_id as Record<string, unknown>;
    userId.multipleOf = 2;
    try {
      expect(schemaIsAsSpecialised()).toBe(false);
    } finally {
      delete userId.multipleOf;
    }
    expect(schemaIsAsSpecialised()).toBe(true);
  });

  it('accepts only what checkMetric accepts, with the same instant, on the whole corpus', () => {
    let quick = 0;
    let accepted = 0;
    for (const line of CORPUS) {
      const json = parsed(line);
      if (!json.ok) continue;
      const old = checkMetric(json.value, CORPUS_NOW);
      const recordedMs = quickCheckMetric(json.value, CORPUS_NOW);
      if (old.ok) accepted += 1;
      if (recordedMs === undefined) continue;
      quick += 1;
      if (!old.ok) throw new Error(`quick check accepted a line checkMetric refuses: ${line}`);
      expect(Object.is(recordedMs, old.timeRecordedMs)).toBe(true);
    }
    // The corpus has both kinds, and the fast path takes nearly every valid line.
    expect(accepted).toBeGreaterThan(CORPUS.length / 3);
    expect(accepted).toBeLessThan(CORPUS.length * 0.8);
    expect(quick).toBeGreaterThan(accepted * 0.9);
  });

  it('takes every row the bench generates, with and without event ids', () => {
    for (const withEventIds of [false, true]) {
      for (const metric of generateMetrics({ count: 5000, seed: 1, startMs: CORPUS_NOW, withEventIds })) {
        const value = JSON.parse(JSON.stringify(metric)) as unknown;
        const old = checkMetric(value, CORPUS_NOW);
        expect(old.ok).toBe(true);
        expect(quickCheckMetric(value, CORPUS_NOW)).toBe(old.ok ? old.timeRecordedMs : undefined);
      }
    }
  });

  it('leaves a metric with a prototype field or an inherited key to ajv', () => {
    const line = '{"user_id":1,"talked_time":1,"microphone_used":true,"speaker_used":true,"time_recorded":0}';
    expect(quickCheckMetric(JSON.parse(line), CORPUS_NOW)).toBe(0);
    expect(quickCheckMetric(JSON.parse(line.replace('{', '{"__proto__":null,')), CORPUS_NOW)).toBeUndefined();
    const inherited = Object.assign(Object.create({ extra: 1 }) as object, JSON.parse(line) as object);
    expect(quickCheckMetric(inherited, CORPUS_NOW)).toBeUndefined();
  });
});

// ---- The bulk path, old and new, on the same corpus ----

const MAX_LINE_BYTES = 4096;

const BAD_LINES: Record<BadLineReason, Pick<LineError, 'error' | 'details'>> = {
  too_long: { error: 'payload_too_large', details: [{ path: '', message: 'the line is longer than the limit' }] },
  invalid_utf8: { error: 'invalid_json', details: [{ path: '', message: 'the line is not valid UTF-8' }] },
};

/**
 * The bulk path as it was before the fast paths: the splitter one line at a time (fed byte by byte,
 * no line is ever whole in a chunk), JSON.parse and checkMetric (ajv) for every line, String() for
 * numbers. Gives each refused line's answer and each valid line's COPY row, received_at left out.
 */
function oldPath(body: Buffer, nowMs: number): { errors: LineError[]; rows: string[] } {
  const errors: LineError[] = [];
  const rows: string[] = [];
  const splitter = new NdjsonLineSplitter(MAX_LINE_BYTES);
  const sink = {
    line(line: number, text: string): void {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        const message = boundedText((error as Error).message, MAX_DETAIL_TEXT_CHARS);
        errors.push({ line, error: 'invalid_json', details: [{ path: '', message }] });
        return;
      }
      const check = checkMetric(value, nowMs);
      if (!check.ok) {
        errors.push({ line, error: 'validation_failed', details: check.details });
        return;
      }
      const m = check.metric;
      const optional = (v: number | string | null | undefined): string => (v == null ? '\\N' : String(v));
      rows.push(
        [
          m.user_id,
          m.device_id == null ? '\\N' : escapeCopyText(m.device_id),
          m.talked_time,
          m.microphone_used ? 't' : 'f',
          m.speaker_used ? 't' : 'f',
          optional(m.voice_sentiment),
          check.timeRecorded,
          optional(m.event_id),
        ].join('\t'),
      );
    },
    badLine(line: number, reason: BadLineReason): void {
      errors.push({ line, ...BAD_LINES[reason] });
    },
  };
  for (const byte of body) splitter.push(Buffer.from([byte]), sink);
  splitter.end(sink);
  return { errors, rows };
}

class RecordingWriter implements MetricsWriter {
  readonly rows: string[] = [];
  async write(rows: readonly string[]): Promise<void> {
    this.rows.push(...rows);
  }
  async reject(): Promise<void> {}
}

/** Every user and device exists. */
const everyIdExists = {
  query: async (_sql: string, [ids]: [unknown[]]) => ({ rows: ids.map((id) => ({ id })) }),
} as unknown as Queryable;

async function newPath(body: Buffer, chunkBytes: number): Promise<{ errors: LineError[]; rows: string[] }> {
  const writer = new RecordingWriter();
  const batcher = new Batcher({
    batchMaxRows: 1000,
    batchMaxWaitMs: 0,
    bufferMaxRows: 1_000_000,
    flushConcurrency: 1,
    writer,
    logger: pino({ level: 'silent' }),
  });
  const intake = new MetricIntake({
    batcher,
    references: new ReferenceCache(everyIdExists),
    ackTimeoutMs: 10_000,
    bulkBackpressureTimeoutMs: 10_000,
    maxLineBytes: MAX_LINE_BYTES,
  });
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let at = 0; at < body.length; at += chunkBytes) yield body.subarray(at, at + chunkBytes);
  }
  const answer = await intake.acceptBulk(chunks(), 'queued');
  await batcher.drain();
  expect(answer.accepted).toBe(writer.rows.length);
  expect(answer.errors_omitted).toBeUndefined();
  // received_at is the time of the chunk: the one field the old path cannot know.
  return { errors: answer.errors, rows: writer.rows.map((row) => row.slice(0, row.lastIndexOf('\t'))) };
}

describe('the bulk path', () => {
  const corpus = CORPUS;
  // Both paths read the same clock, so that the edge of the future is the same for both.
  const realNow = Date.now;
  beforeAll(() => {
    Date.now = () => CORPUS_NOW;
  });
  afterAll(() => {
    Date.now = realNow;
  });

  /** Bodies of at most 900 refused lines, so that every answer lists them all. */
  function bodies(lines: readonly string[], ending: string): Buffer[] {
    const out: Buffer[] = [];
    for (let at = 0; at < lines.length; at += 1500) out.push(Buffer.from(lines.slice(at, at + 1500).join(ending)));
    return out;
  }

  it.each([
    ['LF, large chunks', '\n', 65_536],
    ['CRLF, odd chunks', '\r\n', 1000],
  ])('answers every line of the corpus as before, byte for byte (%s)', async (_name, ending, chunkBytes) => {
    for (const body of bodies(corpus, ending)) {
      const before = oldPath(body, CORPUS_NOW);
      expect(before.errors.length).toBeLessThan(1000);
      const after = await newPath(body, chunkBytes);
      expect(JSON.stringify(after.errors)).toBe(JSON.stringify(before.errors));
      expect(after.rows.join('\n')).toBe(before.rows.join('\n'));
    }
  });

  it('answers lines with blank lines, a byte-order mark, non-ASCII and over-long lines as before', async () => {
    const lines = [
      '\ufeff' + (corpus[100] as string),
      '',
      '   ',
      '\t',
      ...corpus.slice(0, 300),
      'x'.repeat(MAX_LINE_BYTES + 1),
      `{"device_id":"${'é'.repeat(MAX_LINE_BYTES)}"}`,
      ...corpus.slice(300, 600),
    ];
    const body = Buffer.concat([Buffer.from(lines.join('\n')), Buffer.from([0x0a, 0xff, 0xfe, 0x0a, 0x7b])]);
    const before = oldPath(body, CORPUS_NOW);
    for (const chunkBytes of [7, 4096, 1 << 20]) {
      const after = await newPath(body, chunkBytes);
      expect(JSON.stringify(after.errors)).toBe(JSON.stringify(before.errors));
      expect(after.rows.join('\n')).toBe(before.rows.join('\n'));
    }
  });
});

describe('the bulk path, memory', () => {
  it('keeps no chunk alive through a listed error that quotes its line', async () => {
    // JSON.parse's message quotes the line, and a line read from a whole chunk is a slice of the
    // chunk's text (ndjson.ts): listed as it came, each such error would keep its chunk (here 64 KB).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const blank = `${' '.repeat(MAX_LINE_BYTES - 1)}\n`;
    const chunk = `{"user_id":x1,"talked_time":1}\n${blank.repeat(16)}`;
    const chunks = 400;
    gc();
    const before = process.memoryUsage().heapUsed;
    const answer = await newPath(Buffer.from(chunk.repeat(chunks)), chunk.length);
    gc();
    const retained = process.memoryUsage().heapUsed - before;
    expect(answer.errors).toHaveLength(chunks);
    expect(answer.errors[0]?.details[0]?.message).toContain('"user_id":x1');
    expect(retained).toBeLessThan(chunks * 4096);
  });
});
