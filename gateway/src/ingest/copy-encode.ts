import type { Metric } from './schema';

const NEEDS_ESCAPE = /[\\\n\r\t]/;
const ESCAPABLE = /[\\\n\r\t]/g;
const ESCAPES: Readonly<Record<string, string>> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** A text value in COPY's text format: backslash, tab, newline and carriage return escaped. */
export function escapeCopyText(value: string): string {
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPABLE, (ch) => ESCAPES[ch] ?? ch) : value;
}

/** ".001" to ".999" without trailing zeros, and "" for 0: the fraction of a number of thousandths. */
const THOUSANDTHS: readonly string[] = Array.from({ length: 1000 }, (_, n) =>
  n === 0 ? '' : `.${String(n).padStart(3, '0')}`.replace(/0+$/, ''),
);
/** Below this, a whole number of thousandths has at most 12 digits, so no shorter decimal reads as it. */
const THOUSANDTHS_LIMIT = 1e9;

/**
 * `String(value)`, faster for numbers of at most three decimals (most measurements are): built from
 * the whole number of thousandths when that is exactly the value, which skips the shortest-digits search.
 */
export function numberText(value: number): string {
  const thousandths = Math.round(value * 1000);
  if (thousandths / 1000 !== value || !(Math.abs(value) < THOUSANDTHS_LIMIT)) return String(value);
  const magnitude = Math.abs(thousandths);
  const whole = String(Math.floor(magnitude / 1000)) + (THOUSANDTHS[magnitude % 1000] as string);
  return thousandths < 0 ? `-${whole}` : whole;
}

// The fields of the row being written, joined: the result is built flat at once. A template literal
// made a rope of a dozen pieces (over 0.5 KB of garbage a row) that was then flattened, for the rows'
// wait in the buffer, into a copy. One array serves every row, and the last field (received_at and
// the newline) is made once per value, not per row: a bulk chunk's rows share it.
const ROW_FIELDS: (string | number)[] = ['', '', '', '', '', '', '', '', ''];
let lastReceivedAt = '';
let lastReceivedAtField = '\n';

/**
 * One row of `COPY user_metrics (COPY_COLUMNS) FROM STDIN` in text format (db/copy-row.ts), newline included.
 * The metric must already be valid: numbers finite, strings free of NUL, `timeRecorded` checked.
 */
export function encodeMetricRow(metric: Metric, timeRecorded: string, receivedAt: string): string {
  if (receivedAt !== lastReceivedAt) {
    lastReceivedAt = receivedAt;
    lastReceivedAtField = `${receivedAt}\n`;
  }
  const fields = ROW_FIELDS;
  fields[0] = metric.user_id;
  fields[1] = metric.device_id == null ? '\\N' : escapeCopyText(metric.device_id);
  fields[2] = numberText(metric.talked_time);
  fields[3] = metric.microphone_used ? 't' : 'f';
  fields[4] = metric.speaker_used ? 't' : 'f';
  fields[5] = metric.voice_sentiment == null ? '\\N' : numberText(metric.voice_sentiment);
  fields[6] = timeRecorded;
  fields[7] = metric.event_id === undefined ? '\\N' : metric.event_id;
  fields[8] = lastReceivedAtField;
  return fields.join('\t');
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
