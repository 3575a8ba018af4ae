import { hasEventId } from '../../src/db/copy-row';
import { decodeMetricRow, encodeMetricRow, escapeCopyText, numberText } from '../../src/ingest/copy-encode';
import { createRandom } from '../../src/db/seeded-random';
import type { Metric } from '../../src/ingest/schema';

const metric: Metric = {
  user_id: 7,
  device_id: 'id847-gj-335-Vow6DhCP6',
  talked_time: 0.1 + 0.2,
  microphone_used: true,
  speaker_used: false,
  voice_sentiment: -1e-7,
  time_recorded: '2024-01-01T00:00:00Z',
  event_id: '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f',
};
const RECEIVED = '2026-01-01T00:00:00.000Z';

describe('escapeCopyText', () => {
  it('escapes backslash, tab, newline and carriage return, and nothing else', () => {
    expect(escapeCopyText('plain "quoted" ünïcødé 🎙')).toBe('plain "quoted" ünïcødé 🎙');
    expect(escapeCopyText('a\\b\tc\nd\re')).toBe('a\\\\b\\tc\\nd\\re');
    expect(escapeCopyText('\\N')).toBe('\\\\N');
  });
});

describe('numberText', () => {
  it('writes what String() writes, for thousandths, other fractions, the edges and the odd ones', () => {
    const random = createRandom(3);
    const values = [0, -0, 1, -1, 0.5, 1e-7, 5e-324, 0.1 + 0.2, 999_999_999.999, 1e9, 1e9 + 0.001, 1e21, 1.7e308];
    values.push(-1e-7, NaN, Infinity, -Infinity, 86_400, 123_456_789.123, 0.001, -0.001, 0.0005, 2 ** 53);
    for (let i = 0; i < 200_000; i++) {
      const scale = 10 ** random.int(0, 12);
      const thousandths = Math.round((random.float() - 0.3) * scale);
      values.push(thousandths / 1000, thousandths / 100, thousandths / 7, random.normal(0, 1e4), random.float());
    }
    for (const value of values) {
      if (numberText(value) !== String(value)) throw new Error(`${String(value)}: ${numberText(value)}`);
    }
  });
});

describe('encodeMetricRow', () => {
  it('writes one tab-separated line in COPY_COLUMNS order', () => {
    expect(encodeMetricRow(metric, '2024-01-01T00:00:00Z', RECEIVED)).toBe(
      '7\tid847-gj-335-Vow6DhCP6\t0.30000000000000004\tt\tf\t-1e-7\t2024-01-01T00:00:00Z\t' +
        '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f\t2026-01-01T00:00:00.000Z\n',
    );
  });

  it('writes \\N for absent and null optional fields', () => {
    const row = encodeMetricRow(
      { ...metric, device_id: null, voice_sentiment: undefined, event_id: undefined },
      'T',
      RECEIVED,
    );
    expect(row).toBe('7\t\\N\t0.30000000000000004\tt\tf\t\\N\tT\t\\N\t2026-01-01T00:00:00.000Z\n');
  });

  it('round-trips through decodeMetricRow, odd strings included', () => {
    for (const deviceId of ['tab\there', 'new\nline', 'back\\slash', '\\N', 'quote"\'', 'ünï 🎙', '\r\n\t\\']) {
      const decoded = decodeMetricRow(
        encodeMetricRow({ ...metric, device_id: deviceId }, metric.time_recorded as string, RECEIVED),
      );
      expect(decoded).toEqual({ metric: { ...metric, device_id: deviceId }, receivedAt: RECEIVED });
    }
  });

  it('tells rows with an event_id from rows without', () => {
    expect(hasEventId(encodeMetricRow(metric, 'T', RECEIVED))).toBe(true);
    expect(hasEventId(encodeMetricRow({ ...metric, event_id: undefined }, 'T', RECEIVED))).toBe(false);
    expect(hasEventId(encodeMetricRow({ ...metric, device_id: '\\N', event_id: undefined }, 'T', RECEIVED))).toBe(
      false,
    );
  });
});
