import { RFC3339 } from '../../src/contract/json-schema';
import { createRandom } from '../../src/db/seeded-random';
import { checkTimeRecorded, parseRfc3339, recordedTimeMs } from '../../src/ingest/time';

/** parseRfc3339 as it was written first, on the regex's ten captures: what the fast one must give. */
function parseByCaptures(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as number[] as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  if (year < 1 || month < 1 || month > 12 || day < 1 || days === undefined || day > days) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offsetMinutes = 0;
  if (m[8] !== undefined) {
    const offsetHours = Number(m[9]);
    const offsetMins = Number(m[10]);
    if (offsetHours > 15 || offsetMins > 59) return undefined;
    offsetMinutes = (m[8] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  const fractionMs = m[7] === undefined ? 0 : Number(m[7]) * 1000;
  const shift = year < 100 ? 400 : 0;
  const utc = Date.UTC(year + shift, month - 1, day, hour, minute, second) - (shift === 0 ? 0 : 12_622_780_800_000);
  return utc + fractionMs - offsetMinutes * 60_000;
}

describe('parseRfc3339', () => {
  it('reads three-digit fractions as whole milliseconds, as Number() did', () => {
    for (let n = 0; n < 1000; n++) {
      const fraction = `.${String(n).padStart(3, '0')}`;
      expect(parseRfc3339(`2025-01-01T00:00:00${fraction}Z`)).toBe(Date.UTC(2025, 0, 1) + Number(fraction) * 1000);
    }
  });

  it('gives what the regex captures gave, bit for bit, on random timestamps and near-misses', () => {
    const random = createRandom(7);
    const digit = (): string => String(random.int(0, 9));
    const field = (n: number): string => Array.from({ length: n }, digit).join('');
    const pieces = [
      () => field(4),
      () => '-',
      () => field(2),
      () => '-',
      () => field(2),
      () => random.pick(['T', 't', ' ', 'X']),
      () => field(2),
      () => ':',
      () => field(2),
      () => ':',
      () => field(2),
      () => (random.chance(0.5) ? '' : `.${field(random.int(0, 10))}`),
      () =>
        random.pick([
          'Z',
          'z',
          '',
          'Zz',
          `+${field(2)}:${field(2)}`,
          `-${field(2)}:${field(2)}`,
          `+${field(2)}${field(2)}`,
        ]),
    ];
    for (let i = 0; i < 50_000; i++) {
      let text = pieces.map((piece) => piece()).join('');
      // Small years, real months, days and offsets, most of the time: the paths that compute.
      if (random.chance(0.7)) {
        const year = random.chance(0.2) ? random.int(0, 120) : random.int(1, 9999);
        const shape = `${String(year).padStart(4, '0')}-${String(random.int(1, 12)).padStart(2, '0')}-${String(random.int(1, 31)).padStart(2, '0')}`;
        text = shape + text.slice(10);
      }
      if (random.chance(0.05)) text = text.slice(0, random.int(0, text.length));
      const expected = parseByCaptures(text);
      const got = parseRfc3339(text);
      if (!Object.is(got, expected)) throw new Error(`${text}: ${got} instead of ${expected}`);
    }
  });

  it('agrees with Date.parse on ordinary timestamps', () => {
    let seed = 42;
    const random = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 2000; i++) {
      const ms = Math.floor(random() * 4e12) - 1e12;
      const offset = Math.floor(random() * 28 - 14) * 60 + (random() < 0.2 ? 30 : 0);
      const sign = offset < 0 ? '-' : '+';
      const abs = Math.abs(offset);
      const local = new Date(ms + offset * 60_000).toISOString().slice(0, 23);
      const text = `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
      expect(parseRfc3339(text)).toBe(ms);
      expect(parseRfc3339(text)).toBe(Date.parse(text));
    }
  });

  it('reads the first centuries right and keeps sub-millisecond digits out of the way', () => {
    expect(parseRfc3339('0001-01-01T00:00:00Z')).toBe(Date.parse('0001-01-01T00:00:00Z'));
    expect(parseRfc3339('0099-12-31T23:59:59Z')).toBe(Date.parse('0099-12-31T23:59:59Z'));
    expect(parseRfc3339('0100-03-01T00:00:00Z')).toBe(Date.parse('0100-03-01T00:00:00Z'));
    expect(parseRfc3339('2024-02-29T12:00:00.123456789Z')).toBeCloseTo(
      Date.parse('2024-02-29T12:00:00.123Z') + 0.456789,
      6,
    );
  });

  it.each([
    '2023-02-29T00:00:00Z',
    '2100-02-29T00:00:00Z',
    '2024-04-31T00:00:00Z',
    '2024-13-01T00:00:00Z',
    '2024-00-01T00:00:00Z',
    '2024-01-00T00:00:00Z',
    '0000-06-01T00:00:00Z',
    '2024-01-01T23:60:00Z',
    '2024-01-01T10:00:00+16:00',
    '2024-01-01T10:00:00+01:60',
    '2024-01-01T10:00:00',
    '2024-01-01',
  ])('refuses %s', (text) => {
    expect(parseRfc3339(text)).toBeUndefined();
  });

  it('accepts 29 February of leap years, 2000 included', () => {
    expect(parseRfc3339('2000-02-29T00:00:00Z')).toBe(Date.UTC(2000, 1, 29));
    expect(parseRfc3339('2024-02-29T00:00:00-15:59')).toBe(Date.UTC(2024, 1, 29, 15, 59));
  });
});

describe('checkTimeRecorded', () => {
  const now = Date.UTC(2026, 5, 1);

  it('gives PostgreSQL the string as sent, separators upper-cased, and epoch ms as ISO 8601', () => {
    expect(checkTimeRecorded('2026-01-01T10:00:00+02:00', now)).toEqual({
      ok: true,
      text: '2026-01-01T10:00:00+02:00',
      epochMs: Date.UTC(2026, 0, 1, 8),
    });
    expect(checkTimeRecorded('2026-01-01t10:00:00z', now)).toMatchObject({ ok: true, text: '2026-01-01T10:00:00Z' });
    expect(checkTimeRecorded(0, now)).toEqual({ ok: true, text: '1970-01-01T00:00:00.000Z', epochMs: 0 });
  });

  it('agrees with recordedTimeMs, which gives the instant without the verdict', () => {
    for (const value of [
      0,
      -62_135_596_800_001,
      now + 24 * 3600_000,
      now + 24 * 3600_000 + 1,
      '2026-01-01T00:00:00Z',
      '2023-02-29T00:00:00Z',
      'x',
    ]) {
      const check = checkTimeRecorded(value, now);
      expect(recordedTimeMs(value, now)).toBe(check.ok ? check.epochMs : undefined);
    }
  });

  it('allows up to 24 h into the future and no more', () => {
    expect(checkTimeRecorded(now + 24 * 3600_000, now).ok).toBe(true);
    expect(checkTimeRecorded(now + 24 * 3600_000 + 1, now)).toEqual({
      ok: false,
      message: expect.stringContaining('24 h'),
    });
  });
});
