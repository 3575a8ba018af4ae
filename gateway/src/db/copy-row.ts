// The layout of a COPY text row of user_metrics, as ingest/copy-encode.ts writes it.

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

// received_at, the last field, is always Date#toISOString(): 24 characters, then the newline.
const RECEIVED_AT_TAIL = 24 + 1;

/** Whether an encoded row carries an event_id: such rows take the idempotent insert path. */
export function hasEventId(row: string): boolean {
  // event_id is the field before received_at; without a value it is \N.
  const tab = row.length - RECEIVED_AT_TAIL - 1;
  const lastTab = row.charCodeAt(tab) === 9 ? tab : row.lastIndexOf('\t');
  return !row.startsWith('\t\\N\t', lastTab - 3);
}
