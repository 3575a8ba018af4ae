import { parseRfc3339 } from '../ingest/time';

/** Where a page ended: the last row's time_recorded (UTC, microseconds) and id. */
export interface PageCursor {
  readonly timeRecorded: string;
  /** user_metrics.id, a bigint, as decimal text. */
  readonly id: string;
}

const BIGINT_MAX = 9_223_372_036_854_775_807n;

/** Opaque to clients: base64url of a JSON pair, so that its form can change without a new parameter. */
export function encodePageCursor(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify([cursor.timeRecorded, cursor.id])).toString('base64url');
}

/** The cursor, or undefined when the text is not one that encodePageCursor made. */
export function decodePageCursor(text: string): PageCursor | undefined {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value.length !== 2) return undefined;
  const [timeRecorded, id] = value as unknown[];
  if (typeof timeRecorded !== 'string' || parseRfc3339(timeRecorded) === undefined) return undefined;
  if (typeof id !== 'string' || !/^[1-9][0-9]{0,18}$/.test(id) || BigInt(id) > BIGINT_MAX) return undefined;
  return { timeRecorded, id };
}
