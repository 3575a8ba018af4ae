import { hasEventId } from '../../src/db/copy-row';
import { decodeMetricRow, encodeMetricRow, escapeCopyText } from '../../src/ingest/copy-encode';
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
