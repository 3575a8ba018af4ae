import type { Metric } from './schema';

/** The columns of user_metrics that a COPY row carries, in the order encodeMetricRow writes them. */
export const COPY_COLUMNS = [
  'user_id',
  'device_id',
  'talked_time',
  'microphone_used',
  'speaker_used',
  'voice_sentiment',
  'time_recorded',
  'event_id',
  'received_at',
] as const;

const NEEDS_ESCAPE = /[\\\n\r\t]/;
const ESCAPABLE = /[\\\n\r\t]/g;
const ESCAPES: Readonly<Record<string, string>> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** A text value in COPY's text format: backslash, tab, newline and carriage return escaped. */
export function escapeCopyText(value: string): string {
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPABLE, (ch) => ESCAPES[ch] ?? ch) : value;
}

/**
 * One row of `COPY user_metrics (COPY_COLUMNS) FROM STDIN` in text format, newline included.
 * The metric must already be valid: numbers finite, strings free of NUL, `timeRecorded` checked.
 */
export function encodeMetricRow(metric: Metric, timeRecorded: string, receivedAt: string): string {
  const device = metric.device_id == null ? '\\N' : escapeCopyText(metric.device_id);
  const sentiment = metric.voice_sentiment == null ? '\\N' : String(metric.voice_sentiment);
  const eventId = metric.event_id === undefined ? '\\N' : metric.event_id;
  const row =
    `${metric.user_id}\t${device}\t${metric.talked_time}\t${metric.microphone_used ? 't' : 'f'}\t` +
    `${metric.speaker_used ? 't' : 'f'}\t${sentiment}\t${timeRecorded}\t${eventId}\t${receivedAt}\n`;
  // The concatenation is a rope of a dozen pieces (over 1 KB a row); rows wait in the buffer, so
  // reading a character now makes V8 flatten it into one ~200-byte string. That halves peak memory.
  row.charCodeAt(0);
  return row;
}

const UNESCAPES: Readonly<Record<string, string>> = { '\\': '\\', n: '\n', r: '\r', t: '\t' };

function unescapeCopyText(field: string): string | null {
  if (field === '\\N') return null;
  return field.replace(/\\(.)/g, (_match, ch: string) => UNESCAPES[ch] ?? ch);
}

export interface DecodedRow {
  readonly metric: Record<string, unknown>;
  readonly receivedAt: string;
}

/**
 * The inverse of encodeMetricRow, for the rare rows that PostgreSQL refuses at flush time: they are
 * kept in rejected_metrics as JSON, so the buffer never has to hold an object per row.
 */
export function decodeMetricRow(row: string): DecodedRow {
  const fields = (row.endsWith('\n') ? row.slice(0, -1) : row).split('\t').map(unescapeCopyText);
  const [userId, deviceId, talkedTime, microphone, speaker, sentiment, timeRecorded, eventId, receivedAt] = fields;
  const metric: Record<string, unknown> = {
    user_id: Number(userId),
    device_id: deviceId ?? null,
    talked_time: Number(talkedTime),
    microphone_used: microphone === 't',
    speaker_used: speaker === 't',
    voice_sentiment: sentiment == null ? null : Number(sentiment),
    time_recorded: timeRecorded,
  };
  if (eventId != null) metric.event_id = eventId;
  return { metric, receivedAt: receivedAt ?? new Date().toISOString() };
}

// received_at, the last field, is always Date#toISOString(): 24 characters, then the newline.
const RECEIVED_AT_TAIL = 24 + 1;

/** Whether an encoded row carries an event_id: such rows take the idempotent insert path. */
export function hasEventId(row: string): boolean {
  // event_id is the field before received_at; without a value it is \N.
  const tab = row.length - RECEIVED_AT_TAIL - 1;
  const lastTab = row.charCodeAt(tab) === 9 ? tab : row.lastIndexOf('\t');
  return !row.startsWith('\t\\N\t', lastTab - 3);
}
