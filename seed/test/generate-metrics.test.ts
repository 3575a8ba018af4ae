import { checkMetric } from '../../gateway/src/ingest/schema';
import { DEMO_DEVICE_IDS, DEMO_USER_IDS } from '../../gateway/src/db/demo-data';
import {
  BAD_LINE_KINDS,
  badLineKind,
  generateMetrics,
  generateNdjson,
  makeBadLine,
  MAX_TALKED_TIME,
  MIN_TALKED_TIME,
  TIME_WINDOW_MS,
  type GeneratedMetric,
} from '../generate-metrics';

const START_MS = Date.parse('2024-06-01T12:00:00Z');
const FIELDS = [
  'user_id',
  'device_id',
  'talked_time',
  'microphone_used',
  'speaker_used',
  'voice_sentiment',
  'time_recorded',
  'event_id',
];
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?(Z|[+-]\d{2}:\d{2})$/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function take(options: Parameters<typeof generateMetrics>[0]): GeneratedMetric[] {
  return [...generateMetrics(options)];
}

function epochMs(time: string | number): number {
  return typeof time === 'number' ? time : Date.parse(time);
}

/** What is wrong with a metric by the contract's rules (and this generator's ranges); empty when valid. */
function contractViolations(metric: GeneratedMetric, startMs: number): string[] {
  const problems: string[] = [];
  const unknown = Object.keys(metric).filter((key) => !FIELDS.includes(key));
  if (unknown.length > 0) problems.push(`unknown fields ${unknown.join(', ')}`);
  if (!DEMO_USER_IDS.includes(metric.user_id)) problems.push('user_id is not a demo user');
  const device = metric.device_id;
  if (device !== undefined && device !== null && !DEMO_DEVICE_IDS.includes(device)) {
    problems.push('device_id is not a demo device');
  }
  if (!(metric.talked_time >= MIN_TALKED_TIME && metric.talked_time <= MAX_TALKED_TIME)) {
    problems.push('talked_time out of range');
  }
  if (typeof metric.microphone_used !== 'boolean') problems.push('microphone_used is not a boolean');
  if (typeof metric.speaker_used !== 'boolean') problems.push('speaker_used is not a boolean');
  const sentiment = metric.voice_sentiment;
  if (sentiment !== undefined && sentiment !== null && !(sentiment >= -1 && sentiment <= 1)) {
    problems.push('voice_sentiment outside [-1, 1]');
  }
  const time = metric.time_recorded;
  if (typeof time === 'number' ? !Number.isInteger(time) : !RFC3339.test(time)) {
    problems.push('time_recorded is neither RFC 3339 nor integer epoch ms');
  }
  const ms = epochMs(time);
  if (!(ms <= startMs && ms >= startMs - TIME_WINDOW_MS)) problems.push('time_recorded outside the window');
  if (metric.event_id !== undefined && !UUID_V4.test(metric.event_id)) problems.push('event_id not a v4 UUID');
  return problems;
}

describe('generateMetrics', () => {
  it('yields exactly count metrics', () => {
    expect(take({ count: 0, startMs: START_MS })).toEqual([]);
    expect(take({ count: 1, startMs: START_MS })).toHaveLength(1);
    expect(take({ count: 1234, startMs: START_MS })).toHaveLength(1234);
  });

  it('is deterministic for a seed and start, and differs between seeds', () => {
    const a = take({ count: 500, seed: 9, startMs: START_MS, withEventIds: true });
    expect(take({ count: 500, seed: 9, startMs: START_MS, withEventIds: true })).toEqual(a);
    expect(take({ count: 500, seed: 10, startMs: START_MS, withEventIds: true })).not.toEqual(a);
  });

  it('gives a prefix of the longer run for a smaller count', () => {
    const long = take({ count: 300, seed: 2, startMs: START_MS });
    expect(take({ count: 100, seed: 2, startMs: START_MS })).toEqual(long.slice(0, 100));
  });

  it('keeps every field within the contract', () => {
    const violations = take({ count: 20_000, seed: 3, startMs: START_MS }).flatMap((metric) =>
      contractViolations(metric, START_MS).map((problem) => `${problem}: ${JSON.stringify(metric)}`),
    );
    expect(violations).toEqual([]);
  });

  it('passes the gateway validator, keys in the contract order', () => {
    const metrics = take({ count: 5000, seed: 4, startMs: START_MS, withEventIds: true });
    const refused = metrics.filter((metric) => !checkMetric(JSON.parse(JSON.stringify(metric)), START_MS).ok);
    expect(refused).toEqual([]);
    const misordered = metrics.filter((metric) => {
      const keys = Object.keys(metric);
      return keys.join() !== FIELDS.filter((field) => keys.includes(field)).join();
    });
    expect(misordered).toEqual([]);
  });

  it('produces every variant that clients send', () => {
    const metrics = take({ count: 5000, seed: 5, startMs: START_MS });
    const share = (predicate: (metric: GeneratedMetric) => boolean) =>
      metrics.filter(predicate).length / metrics.length;
    expect(share((m) => typeof m.device_id === 'string')).toBeGreaterThan(0.7);
    expect(share((m) => m.device_id === null)).toBeGreaterThan(0.05);
    expect(share((m) => !('device_id' in m))).toBeGreaterThan(0.05);
    expect(share((m) => m.voice_sentiment === null)).toBeGreaterThan(0.05);
    expect(share((m) => !('voice_sentiment' in m))).toBeGreaterThan(0.02);
    expect(share((m) => typeof m.time_recorded === 'number')).toBeGreaterThan(0.1);
    expect(share((m) => typeof m.time_recorded === 'string' && m.time_recorded.endsWith('Z'))).toBeGreaterThan(0.4);
    expect(
      share((m) => typeof m.time_recorded === 'string' && /[+-]\d{2}:\d{2}$/.test(m.time_recorded)),
    ).toBeGreaterThan(0.2);
    expect(share((m) => m.microphone_used)).toBeGreaterThan(0.8);
    expect(share((m) => !m.speaker_used)).toBeGreaterThan(0.2);
    expect(share((m) => !Number.isInteger(m.talked_time))).toBeGreaterThan(0.9);
    expect(new Set(metrics.map((m) => m.user_id)).size).toBe(100);
    // Mostly short sessions, some long ones.
    const sorted = metrics.map((m) => m.talked_time).sort((a, b) => a - b);
    expect(sorted[Math.floor(sorted.length / 2)]).toBeGreaterThan(20);
    expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThan(180);
    expect(sorted.at(-1)).toBeGreaterThan(900);
  });

  it('never yields a time in the future with the default start (now)', () => {
    const before = Date.now();
    const metrics = take({ count: 5000, seed: 6 });
    const now = Date.now();
    const times = metrics.map((metric) => epochMs(metric.time_recorded));
    expect(times.filter((ms) => ms > now)).toEqual([]);
    expect(times.filter((ms) => ms < before - TIME_WINDOW_MS)).toEqual([]);
  });

  it('keeps offset timestamps on the same instant as their UTC reading', () => {
    const offsets = take({ count: 2000, seed: 7, startMs: START_MS }).filter(
      (m) => typeof m.time_recorded === 'string' && !m.time_recorded.endsWith('Z'),
    );
    expect(offsets.some((m) => (m.time_recorded as string).endsWith('+05:45'))).toBe(true);
    expect(offsets.some((m) => /-\d{2}:\d{2}$/.test(m.time_recorded as string))).toBe(true);
    for (const m of offsets) expect(Date.parse(m.time_recorded as string)).toBeLessThanOrEqual(START_MS);
  });

  it('gives lowercase v4 UUID event ids, unique across a run, when asked', () => {
    const ids = take({ count: 20_000, seed: 8, startMs: START_MS, withEventIds: true }).map((m) => m.event_id);
    expect(ids.filter((id) => id === undefined || !UUID_V4.test(id))).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('leaves every other field unchanged when event ids are turned on', () => {
    const without = take({ count: 200, seed: 11, startMs: START_MS });
    const withIds = take({ count: 200, seed: 11, startMs: START_MS, withEventIds: true });
    expect(withIds.map(({ event_id: _, ...rest }) => rest)).toEqual(without);
  });

  it('draws from the users and devices it is given', () => {
    const metrics = take({ count: 1000, startMs: START_MS, users: [7, 8], devices: ['dev-a'] });
    expect(new Set(metrics.map((m) => m.user_id))).toEqual(new Set([7, 8]));
    expect(new Set(metrics.map((m) => m.device_id).filter((d) => typeof d === 'string'))).toEqual(new Set(['dev-a']));
    const noDevices = take({ count: 1000, startMs: START_MS, devices: [] });
    expect(noDevices.every((m) => m.device_id === undefined || m.device_id === null)).toBe(true);
  });

  it('refuses bad options at the call, before the first metric', () => {
    expect(() => generateMetrics({ count: -1 })).toThrow(RangeError);
    expect(() => generateMetrics({ count: 1.5 })).toThrow(RangeError);
    expect(() => generateMetrics({ count: 1, users: [] })).toThrow(RangeError);
    expect(() => generateMetrics({ count: 1, startMs: Number.NaN })).toThrow(RangeError);
  });
});

describe('makeBadLine', () => {
  const base: GeneratedMetric = {
    user_id: 5,
    device_id: DEMO_DEVICE_IDS[1] ?? null,
    talked_time: 12.5,
    microphone_used: true,
    speaker_used: true,
    voice_sentiment: 0.1,
    time_recorded: '2024-05-20T08:00:00Z',
  };
  const parse = (line: string) => JSON.parse(line) as Record<string, unknown>;

  it('cycles through every kind of error', () => {
    const kinds = BAD_LINE_KINDS.map((_, i) => badLineKind(i));
    expect(kinds).toEqual([...BAD_LINE_KINDS]);
    expect(badLineKind(BAD_LINE_KINDS.length)).toBe(BAD_LINE_KINDS[0]);
    expect(badLineKind(-1)).toBe(BAD_LINE_KINDS.at(-1));
  });

  it('changes exactly one thing in a valid metric', () => {
    const line = (kind: string) => makeBadLine(BAD_LINE_KINDS.indexOf(kind as never), base);
    const { talked_time, ...rest } = base;
    expect(parse(line('unknown_field'))).toEqual({ ...rest, talk_time: talked_time });
    expect(Object.keys(parse(line('unknown_field')))[2]).toBe('talk_time');
    expect(parse(line('negative_talked_time'))).toEqual({ ...base, talked_time: -12.5 });
    const { user_id: _, ...withoutUser } = base;
    expect(parse(line('missing_user_id'))).toEqual(withoutUser);
    expect(parse(line('user_id_zero'))).toEqual({ ...base, user_id: 0 });
    expect(parse(line('nul_in_string'))).toEqual({ ...base, device_id: `${base.device_id}\u0000` });
    expect(line('not_json')).toBe('not json');
    expect(parse(line('impossible_date'))).toEqual({ ...base, time_recorded: '2024-02-30T10:00:00Z' });
    expect(parse(line('unknown_user'))).toEqual({ ...base, user_id: 999999 });
  });

  it('keeps talked_time negative even when the base is zero', () => {
    expect(parse(makeBadLine(1, { ...base, talked_time: 0 })).talked_time).toBeLessThan(0);
  });

  it('gives lines that are single NDJSON lines, with a default base', () => {
    for (let i = 0; i < 16; i++) expect(makeBadLine(i)).not.toMatch(/[\r\n]/);
  });

  it('gives lines the gateway validator refuses, except the unknown user which only the database knows', () => {
    const nowMs = Date.parse('2024-06-01T00:00:00Z');
    BAD_LINE_KINDS.forEach((kind, i) => {
      const line = makeBadLine(i, base);
      if (kind === 'not_json') {
        expect(() => JSON.parse(line)).toThrow(SyntaxError);
        return;
      }
      const check = checkMetric(JSON.parse(line), nowMs);
      if (kind === 'unknown_user') {
        expect(check.ok).toBe(true);
        expect(DEMO_USER_IDS).not.toContain(999999);
      } else {
        expect({ kind, ok: check.ok }).toEqual({ kind, ok: false });
      }
    });
  });
});

describe('generateNdjson', () => {
  it('writes one JSON object per line, every line ending in a newline, in large chunks', () => {
    const chunks = [...generateNdjson({ count: 3000, seed: 12, startMs: START_MS })];
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) expect(chunk.endsWith('\n')).toBe(true);
    const lines = chunks.join('').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.map((line) => JSON.parse(line))).toEqual(take({ count: 3000, seed: 12, startMs: START_MS }));
  });

  it('replaces every Nth line with a bad one and keeps the count', () => {
    const lines = [...generateNdjson({ count: 100, seed: 13, startMs: START_MS, badEvery: 10 })]
      .join('')
      .trimEnd()
      .split('\n');
    const good = take({ count: 100, seed: 13, startMs: START_MS });
    expect(lines).toHaveLength(100);
    lines.forEach((line, i) => {
      if ((i + 1) % 10 === 0) expect(line).toBe(makeBadLine((i + 1) / 10 - 1, good[i]));
      else expect(JSON.parse(line)).toEqual(good[i]);
    });
  });

  it('is lazy: the first chunk of a huge run comes at once', () => {
    const chunks = generateNdjson({ count: 1e9, startMs: START_MS });
    const first = chunks.next();
    expect(first.done).toBe(false);
    expect((first.value as string).length).toBeLessThan(128 * 1024);
    chunks.return();
  });

  it('reports progress after each chunk', () => {
    const seen: number[] = [];
    const chunks = [...generateNdjson({ count: 2000, startMs: START_MS, onProgress: (n) => seen.push(n) })];
    expect(seen.length).toBeGreaterThan(0);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen.at(-1)).toBeLessThanOrEqual(2000);
    expect(chunks.length).toBeGreaterThanOrEqual(seen.length);
  });

  it('refuses a bad badEvery at the call', () => {
    expect(() => generateNdjson({ count: 1, badEvery: 0 })).toThrow(RangeError);
  });
});
