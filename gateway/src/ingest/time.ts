/**
 * `time_recorded` arrives as an RFC 3339 string with an offset or as integer epoch milliseconds.
 * Both are checked here to be a real calendar instant that PostgreSQL stores as given.
 */
import { EARLIEST_EPOCH_MS, RFC3339 } from '../contract/json-schema';

export const MAX_FUTURE_MS = 24 * 60 * 60 * 1000;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number);
}

/** Epoch milliseconds of an RFC 3339 timestamp, or undefined if it is not one or not a real date. */
export function parseRfc3339(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (m === null) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offsetMinutes = 0;
  if (m[8] !== undefined) {
    const offsetHours = Number(m[9]);
    const offsetMins = Number(m[10]);
    // RFC 3339 allows offsets up to 23:59, PostgreSQL up to 15:59; real zones span -12:00 to +14:00.
    if (offsetHours > 15 || offsetMins > 59) return undefined;
    offsetMinutes = (m[8] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  const fractionMs = m[7] === undefined ? 0 : Number(m[7]) * 1000;
  // Date.UTC reads years 0..99 as 1900..1999; move such a date by 400 years (the calendar's period).
  const shift = year < 100 ? 400 : 0;
  const utc = Date.UTC(year + shift, month - 1, day, hour, minute, second) - (shift === 0 ? 0 : 12_622_780_800_000);
  return utc + fractionMs - offsetMinutes * 60_000;
}

export type TimeCheck =
  | { readonly ok: true; readonly text: string; readonly epochMs: number }
  | { readonly ok: false; readonly message: string };

/**
 * Checks a schema-valid `time_recorded` (a string of RFC 3339 shape, or an integer) for a real date
 * within range. Gives the instant (for the ingest-lag histogram) and the text PostgreSQL receives:
 * strings as sent (upper-cased separators), epoch milliseconds as ISO 8601 in UTC.
 */
export function checkTimeRecorded(value: string | number, nowMs: number): TimeCheck {
  const epochMs = typeof value === 'number' ? value : parseRfc3339(value);
  if (epochMs === undefined) {
    return { ok: false, message: 'must be a real date and time with an offset of at most ±15:59' };
  }
  if (epochMs < EARLIEST_EPOCH_MS) return { ok: false, message: 'must not be before year 1' };
  if (epochMs > nowMs + MAX_FUTURE_MS) return { ok: false, message: 'must not be more than 24 h in the future' };
  if (typeof value === 'number') return { ok: true, text: new Date(value).toISOString(), epochMs };
  const lowerCase = value.charCodeAt(value.length - 1) === 122 /* z */ || value.charCodeAt(10) === 116; /* t */
  return { ok: true, text: lowerCase ? value.toUpperCase() : value, epochMs };
}
