import {
  MAX_DETAIL_TEXT_CHARS,
  MAX_DETAILS_PER_METRIC,
  boundedText,
  checkMetric,
  checkNewDevice,
  checkNewUser,
} from '../../src/ingest/schema';
import { TALKED_TIME_MAX_SECONDS } from '../../src/contract/schemas';

const NOW = Date.parse('2026-06-01T12:00:00Z');
const valid = {
  user_id: 1,
  device_id: 'id847-gj-335-Vow6DhCP6',
  talked_time: 12.5,
  microphone_used: true,
  speaker_used: false,
  voice_sentiment: -0.25,
  time_recorded: '2026-05-31T10:00:00Z',
  event_id: '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f',
};

function pathsOf(value: unknown): string[] {
  const check = checkMetric(value, NOW);
  if (check.ok) return [];
  return check.details.map((detail) => detail.path).sort();
}

describe('checkMetric', () => {
  it('accepts a complete metric and the minimal one', () => {
    expect(checkMetric(valid, NOW).ok).toBe(true);
    const { user_id, talked_time, microphone_used, speaker_used, time_recorded } = valid;
    expect(checkMetric({ user_id, talked_time, microphone_used, speaker_used, time_recorded }, NOW).ok).toBe(true);
    expect(checkMetric({ ...valid, device_id: null, voice_sentiment: null }, NOW).ok).toBe(true);
  });

  it('refuses unknown fields such as a typo, naming them', () => {
    const { talked_time, ...rest } = valid;
    expect(pathsOf({ ...rest, talk_time: talked_time })).toEqual(['/talk_time', '/talked_time']);
  });

  it.each([
    ['user_id', 0],
    ['user_id', 2_147_483_648],
    ['user_id', 1.5],
    ['user_id', '1'],
    ['talked_time', -0.001],
    ['talked_time', 86_400.001],
    ['talked_time', 1.7e308],
    ['voice_sentiment', 1.0001],
    ['voice_sentiment', -1.5],
    ['voice_sentiment', 1e200],
    ['talked_time', '3'],
    ['microphone_used', 'true'],
    ['speaker_used', 1],
    ['voice_sentiment', 'high'],
    ['device_id', ''],
    ['device_id', 'x'.repeat(256)],
    ['device_id', 'nul\u0000inside'],
    ['device_id', 'lone \ud800 surrogate'],
    ['device_id', 42],
    ['event_id', 'not-a-uuid'],
    ['event_id', null],
    ['time_recorded', '2024-02-30T10:00:00Z'],
    ['time_recorded', '2023-02-29T10:00:00Z'],
    ['time_recorded', '2024-01-01T24:00:00Z'],
    ['time_recorded', '2024-01-01T10:00:60Z'],
    ['time_recorded', '2024-01-01T10:00:00'],
    ['time_recorded', '2024-01-01 10:00:00Z'],
    ['time_recorded', '0000-01-01T00:00:00Z'],
    ['time_recorded', '2024-01-01T10:00:00+24:00'],
    ['time_recorded', '2024-01-01T10:00:00-16:00'],
    ['event_id', 'urn:uuid:9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f'],
    ['event_id', '{9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f}'],
    ['time_recorded', '2026-06-02T12:00:01Z'],
    ['time_recorded', NOW + 24 * 3600 * 1000 + 1],
    ['time_recorded', 1.5e12 + 0.5],
    ['time_recorded', -62_135_596_800_001],
    ['time_recorded', true],
  ])('refuses %s = %p with a pointer to it', (field, value) => {
    expect(pathsOf({ ...valid, [field]: value })).toEqual([`/${field}`]);
  });

  it('accepts the ends of the ranges: a recording of up to a day, a sentiment from -1 to 1', () => {
    for (const [talked_time, voice_sentiment] of [
      [0, -1],
      [TALKED_TIME_MAX_SECONDS, 1],
      [5e-324, -0],
    ]) {
      expect(checkMetric({ ...valid, talked_time, voice_sentiment }, NOW).ok).toBe(true);
    }
  });

  it('says which bound a value is past', () => {
    expect(checkMetric({ ...valid, talked_time: 1e6, voice_sentiment: -2 }, NOW)).toEqual({
      ok: false,
      details: [
        { path: '/talked_time', message: 'must be <= 86400' },
        { path: '/voice_sentiment', message: 'must be >= -1' },
      ],
    });
  });

  it('refuses numbers that JSON.parse turns into Infinity', () => {
    const parsed = JSON.parse('{"talked_time": 1e400, "voice_sentiment": -1e400}') as object;
    expect(pathsOf({ ...valid, ...parsed })).toEqual(['/talked_time', '/voice_sentiment']);
  });

  it('escapes unknown field names in JSON pointers', () => {
    expect(pathsOf({ ...valid, 'a/b~c': 1 })).toEqual(['/a~1b~0c']);
  });

  it('lists every problem of a row and the missing required fields', () => {
    expect(pathsOf({ user_id: -1 })).toEqual([
      '/microphone_used',
      '/speaker_used',
      '/talked_time',
      '/time_recorded',
      '/user_id',
    ]);
    expect(pathsOf(null)).toEqual(['']);
    expect(pathsOf([valid])).toEqual(['']);
  });

  it('bounds the details of a 64 KiB line of distinct unknown keys, keeping the known fields first', () => {
    const keys: string[] = [];
    for (let i = 0, length = 0; length < 64 * 1024; i++) {
      const entry = `"k${i.toString(36)}":0`;
      keys.push(entry);
      length += entry.length + 1;
    }
    const line = `{"talked_time":-1,${keys.join(',')}}`;
    expect(line.length).toBeGreaterThan(64 * 1024);
    const check = checkMetric(JSON.parse(line), NOW);
    if (check.ok) throw new Error('accepted');
    expect(check.details).toHaveLength(MAX_DETAILS_PER_METRIC);
    // The missing required fields and the negative talked_time come before the unknown keys.
    expect(
      check.details
        .slice(0, 5)
        .map((detail) => detail.path)
        .sort(),
    ).toEqual(['/microphone_used', '/speaker_used', '/talked_time', '/time_recorded', '/user_id']);
    const unlisted = keys.length + 5 - (MAX_DETAILS_PER_METRIC - 1);
    expect(check.details.at(-1)).toEqual({ path: '', message: `and ${unlisted} more problems, not listed` });
    expect(JSON.stringify(check.details).length).toBeLessThan(2000);
  });

  it('cuts a 60 KB unknown key name in its path', () => {
    const name = 'k'.repeat(60_000);
    const check = checkMetric({ ...valid, [name]: 1 }, NOW);
    expect(check).toEqual({
      ok: false,
      details: [{ path: `/${'k'.repeat(MAX_DETAIL_TEXT_CHARS - 2)}…`, message: 'is not a known field' }],
    });
  });

  it('accepts offsets, fractions, lower-case separators and leap days, and normalizes for PostgreSQL', () => {
    const times: [string | number, string][] = [
      ['2024-02-29T23:59:59.123456+05:30', '2024-02-29T23:59:59.123456+05:30'],
      ['2024-01-01t10:00:00z', '2024-01-01T10:00:00Z'],
      ['2026-06-02T11:59:59Z', '2026-06-02T11:59:59Z'],
      [1_700_000_000_000, '2023-11-14T22:13:20.000Z'],
      [0, '1970-01-01T00:00:00.000Z'],
    ];
    for (const [input, expected] of times) {
      const check = checkMetric({ ...valid, time_recorded: input }, NOW);
      expect(check).toMatchObject({ ok: true, timeRecorded: expected });
    }
  });
});

describe('boundedText', () => {
  it('keeps text up to the bound and cuts longer text to it, ending in an ellipsis', () => {
    expect(boundedText('', 5)).toBe('');
    expect(boundedText('abcde', 5)).toBe('abcde');
    expect(boundedText('abcdef', 5)).toBe('abcd…');
    expect(boundedText('abcdef', 1)).toBe('…');
    expect(boundedText('abcdef', 0)).toBe('');
  });

  it('never cuts a surrogate pair in two', () => {
    const cut = boundedText('abc😀def', 5);
    expect(cut).toBe('abc…');
    expect(cut.isWellFormed()).toBe(true);
    expect(boundedText('abcd😀ef', 5)).toBe('abcd…');
  });
});

describe('checkNewUser and checkNewDevice', () => {
  it('bound their details too', () => {
    const body = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`extra${i}`, i]));
    const check = checkNewUser({ name: 'Ada', ...body });
    expect(check.ok).toBe(false);
    if (!check.ok) expect(check.details).toHaveLength(MAX_DETAILS_PER_METRIC);
  });

  it('accept valid bodies', () => {
    expect(checkNewUser({ name: 'Ada Lovelace', age: 36 }).ok).toBe(true);
    expect(checkNewUser({ name: 'Ada', age: null }).ok).toBe(true);
    expect(checkNewDevice({ id: 'id774-wc-935-uJq2AcOUx', type: 'Android 8.1', name: 'vivo V11i' }).ok).toBe(true);
  });

  it('refuse bad ones with pointers', () => {
    expect(checkNewUser({ name: '', age: 200, extra: 1 })).toMatchObject({
      ok: false,
      details: expect.arrayContaining([
        expect.objectContaining({ path: '/name' }),
        expect.objectContaining({ path: '/age' }),
        expect.objectContaining({ path: '/extra' }),
      ]),
    });
    expect(checkNewDevice({ type: 'x' })).toMatchObject({ ok: false, details: [{ path: '/id' }] });
    expect(checkNewDevice({ id: 'a\u0000b' })).toMatchObject({ ok: false, details: [{ path: '/id' }] });
  });
});
