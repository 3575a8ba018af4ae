import { checkTimeRecorded, parseRfc3339 } from '../../src/ingest/time';

describe('parseRfc3339', () => {
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

  it('allows up to 24 h into the future and no more', () => {
    expect(checkTimeRecorded(now + 24 * 3600_000, now).ok).toBe(true);
    expect(checkTimeRecorded(now + 24 * 3600_000 + 1, now)).toEqual({
      ok: false,
      message: expect.stringContaining('24 h'),
    });
  });
});
