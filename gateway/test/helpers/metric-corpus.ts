// NDJSON lines for differential tests of the bulk path: valid metrics as devices send them, the
// hostile values of the unit and integration tests, and seeded mutations of both, field by field.

import { INT4_MAX, TALKED_TIME_MAX_SECONDS } from '../../src/contract/schemas';
import { EARLIEST_EPOCH_MS } from '../../src/contract/json-schema';
import { createRandom, type Random } from '../../src/db/seeded-random';
import { generateMetrics } from '../../../seed/generate-metrics';
import { metric } from './metric';

/** The instant the corpus is checked at: its future times are counted from here. */
export const CORPUS_NOW = Date.UTC(2026, 0, 1);

/** Every field set, each to a value within its range. */
const VALID = metric({
  device_id: 'id847-gj-335-Vow6DhCP6',
  talked_time: 12.5,
  voice_sentiment: -0.25,
  time_recorded: '2025-12-31T10:00:00Z',
  event_id: '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f',
});

const NUMBERS: readonly unknown[] = [
  0,
  -0,
  1,
  -1,
  0.5,
  1.5,
  -1.0001,
  1.0001,
  5e-324,
  -5e-324,
  1e-7,
  TALKED_TIME_MAX_SECONDS,
  TALKED_TIME_MAX_SECONDS + 0.001,
  TALKED_TIME_MAX_SECONDS - 0.001,
  INT4_MAX,
  INT4_MAX + 1,
  2 ** 53,
  2 ** 53 + 2,
  1e21,
  1.7e308,
  -1.7e308,
  0.1 + 0.2,
  123456789.123,
  999999999.999,
  1000000000.001,
  '1',
  '',
  true,
  false,
  null,
  [],
  [1],
  {},
];

const STRINGS: readonly unknown[] = [
  '',
  'x',
  'x'.repeat(255),
  'x'.repeat(256),
  'é'.repeat(255),
  'é'.repeat(256),
  '🎙'.repeat(200),
  'nul\u0000inside',
  'lone \ud800 surrogate',
  'tab\there',
  'new\nline',
  'back\\slash',
  '\\N',
  'quote"',
  ' ',
  '\u007f',
  '\u0080',
  '\u2028',
  42,
  null,
  true,
  {},
];

const TIMES: readonly unknown[] = [
  '2025-12-31T10:00:00Z',
  '2025-12-31t10:00:00z',
  '2025-12-31T10:00:00.123Z',
  '2025-12-31T10:00:00.1Z',
  '2025-12-31T10:00:00.123456789+05:30',
  '2025-12-31T10:00:00.1234567890Z',
  '2025-12-31T10:00:00-15:59',
  '2025-12-31T10:00:00+16:00',
  '2025-12-31T10:00:00+01:60',
  '2025-12-31T10:00:00',
  '2025-12-31 10:00:00Z',
  '2024-02-29T10:00:00Z',
  '2023-02-29T10:00:00Z',
  '2100-02-29T10:00:00Z',
  '2025-04-31T10:00:00Z',
  '2025-13-01T10:00:00Z',
  '2025-00-01T10:00:00Z',
  '2025-01-00T10:00:00Z',
  '2025-01-01T24:00:00Z',
  '2025-01-01T23:60:00Z',
  '2025-01-01T23:59:60Z',
  '0000-01-01T00:00:00Z',
  '0001-01-01T00:00:00Z',
  '0001-01-01T00:00:00+00:01',
  '0099-12-31T23:59:59Z',
  '9999-12-31T23:59:59Z',
  '2026-01-02T00:00:00Z',
  '2026-01-02T00:00:00.001Z',
  '2026-01-03T00:00:00Z',
  '２０２５-12-31T10:00:00Z',
  '2025-12-31T10:00:00Z\n',
  ' 2025-12-31T10:00:00Z',
  '',
  CORPUS_NOW,
  CORPUS_NOW + 86_400_000,
  CORPUS_NOW + 86_400_001,
  0,
  -1,
  EARLIEST_EPOCH_MS,
  EARLIEST_EPOCH_MS - 1,
  1.5e12 + 0.5,
  1e20,
  true,
  null,
];

const EVENT_IDS: readonly unknown[] = [
  '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f',
  '9F1C2D3E-4B5A-4C6D-8E7F-0A1B2C3D4E5F',
  '9f1c2d3e4b5a4c6d8e7f0a1b2c3d4e5f',
  'urn:uuid:9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f',
  '{9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f}',
  '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5g',
  '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5@',
  '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5`',
  '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5\uff21',
  '9f1c2d3e4-b5a-4c6d-8e7f-0a1b2c3d4e5f',
  '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5',
  '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5ff',
  '--------------------------------------------',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f\n',
  'not-a-uuid',
  '',
  null,
  42,
];

const BOOLEANS: readonly unknown[] = [true, false, 0, 1, 'true', null];

const VALUES_BY_FIELD: Record<string, readonly unknown[]> = {
  user_id: NUMBERS,
  device_id: STRINGS,
  talked_time: NUMBERS,
  microphone_used: BOOLEANS,
  speaker_used: BOOLEANS,
  voice_sentiment: NUMBERS,
  time_recorded: TIMES,
  event_id: EVENT_IDS,
};

const EXTRA_KEYS = ['talk_time', 'USER_ID', '__proto__', 'constructor', 'toString', 'a/b~c', '', 'k'.repeat(300)];

/** Lines that are no metric, or no JSON at all. */
const ODD_LINES = [
  'null',
  '[]',
  '1',
  '"x"',
  '{',
  '{"user_id":1,}',
  "{'user_id':1}",
  '{"user_id":1}{"user_id":2}',
  '{"user_id":1e400,"talked_time":-1e400}',
  '{"user_id":1,"user_id":2}',
  '{"__proto__":{"user_id":1}}',
  '\u0000',
  '{"device_id":"\\u0000"}',
  '{"device_id":"\\ud800"}',
  '\t{"user_id":1}',
];

function withField(base: Record<string, unknown>, field: string, value: unknown): Record<string, unknown> {
  const copy = { ...base };
  if (value === undefined) delete copy[field];
  else copy[field] = value;
  return copy;
}

/** JSON text of an object, keeping `__proto__` as a key of its own (a spread would set the prototype). */
function jsonOf(entries: [string, unknown][]): string {
  return `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`).join(',')}}`;
}

function mutate(random: Random, base: Record<string, unknown>): string {
  let entries = Object.entries(base);
  const changes = random.int(1, 3);
  for (let i = 0; i < changes; i++) {
    const what = random.float();
    if (what < 0.7) {
      const field = random.pick(Object.keys(VALUES_BY_FIELD));
      const value = random.chance(0.1) ? undefined : random.pick(VALUES_BY_FIELD[field] ?? []);
      entries = Object.entries(withField(Object.fromEntries(entries), field, value));
    } else if (what < 0.85) {
      entries.push([random.pick(EXTRA_KEYS), random.pick(NUMBERS)]);
    } else {
      entries = [...entries].sort(() => random.float() - 0.5);
    }
  }
  return jsonOf(entries);
}

/** Number tokens of a JSON text: where each starts and ends. */
function numberTokens(json: string): [number, number][] {
  return [...json.matchAll(/(?<=[:[,])-?\d+(\.\d+)?([eE][+-]?\d+)?/g)].map((m) => [m.index, m.index + m[0].length]);
}

/** The same JSON (or a near-miss of it) written another way: what a compact scanner must not misread. */
function rewrite(random: Random, json: string): string {
  const what = random.int(0, 9);
  const numbers = numberTokens(json);
  const [start, end] = numbers.length > 0 ? random.pick(numbers) : [0, 0];
  const token = json.slice(start, end);
  const replaceToken = (text: string): string => json.slice(0, start) + text + json.slice(end);
  switch (what) {
    case 0: {
      const at = random.pick([...json.matchAll(/[:,]/g)].map((m) => m.index + 1));
      return json.slice(0, at) + random.pick([' ', '\t', '\n', '\r']) + json.slice(at);
    }
    case 1:
      return replaceToken(token.includes('.') ? `${token}0` : `${token}.0`);
    case 2:
      return replaceToken(random.pick([Number(token).toExponential(), `${token}e0`, `${token}E+0`, `0${token}`]));
    case 3:
      return replaceToken(random.pick(['-0', '-0.0', '0.000', '-0.001', '0.0005', '1.2345', '1e-3', '86400.0']));
    case 4: {
      // A letter inside a string value, escaped: the same value to JSON.parse.
      const letters = [...json.matchAll(/(?<=:"[^"]*)[a-z0-9]/g)].map((m) => m.index);
      if (letters.length === 0) return json;
      const at = random.pick(letters);
      const escaped = `\\u${json.charCodeAt(at).toString(16).padStart(4, '0')}`;
      return json.slice(0, at) + escaped + json.slice(at + 1);
    }
    case 5:
      return json.replace(/}$/, random.pick([',"user_id":5}', ',"talked_time":1}', ',"event_id":null}', ',}']));
    case 6:
      return random.pick([` ${json}`, `${json} `, `${json}\t`, `[${json}]`, json.slice(0, -1)]);
    case 7:
      return json.replace(random.pick(['true', 'false', 'null']), random.pick(['True', '"true"', '1', 'nul']));
    case 8:
      return json.replace('"user_id"', random.pick(['"user_id "', '"User_id"', '"user_id":1,"user_id"']));
    default:
      return replaceToken(String(Number(token) + random.pick([1e-9, 0.0001, 1e6, -1e6])));
  }
}

/** `count` lines: about a third valid (generated as the bench generates them), the rest hostile. */
export function metricCorpus(count: number, seed = 1): string[] {
  const random = createRandom(seed);
  const lines: string[] = [...ODD_LINES];
  for (const [field, values] of Object.entries(VALUES_BY_FIELD)) {
    for (const value of values) lines.push(JSON.stringify(withField(VALID, field, value)));
    lines.push(JSON.stringify(withField(VALID, field, undefined)));
  }
  const generated = [
    ...generateMetrics({ count, seed, startMs: CORPUS_NOW - 60_000 }),
    ...generateMetrics({ count, seed: seed + 1, startMs: CORPUS_NOW - 60_000, withEventIds: true }),
  ];
  while (lines.length < count) {
    const base = random.pick(generated) as Record<string, unknown>;
    const line = random.chance(0.35) ? JSON.stringify(base) : mutate(random, base);
    lines.push(random.chance(0.25) ? rewrite(random, line) : line);
  }
  return lines;
}
