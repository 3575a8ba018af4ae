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

/** The number written in `text` from `start` to `end` (exclusive), which hold only ASCII digits. */
function digits(text: string, start: number, end: number): number {
  let value = 0;
  for (let i = start; i < end; i++) value = value * 10 + (text.charCodeAt(i) - 48);
  return value;
}

/** Epoch milliseconds of an RFC 3339 timestamp, or undefined if it is not one or not a real date. */
export function parseRfc3339(text: string): number | undefined {
  // The shape is RFC3339's alone; past it every field sits at a fixed place, so it is read without
  // the match's ten substrings (this runs for most rows of every bulk upload).
  if (!RFC3339.test(text)) return undefined;
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 7);
  const day = digits(text, 8, 10);
  const hour = digits(text, 11, 13);
  const minute = digits(text, 14, 16);
  const second = digits(text, 17, 19);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const last = text.charCodeAt(text.length - 1);
  const zulu = last === 90 /* Z */ || last === 122; /* z */
  let offsetMinutes = 0;
  if (!zulu) {
    const offsetHours = digits(text, text.length - 5, text.length - 3);
    const offsetMins = digits(text, text.length - 2, text.length);
    // RFC 3339 allows offsets up to 23:59, PostgreSQL up to 15:59; real zones span -12:00 to +14:00.
    if (offsetHours > 15 || offsetMins > 59) return undefined;
    offsetMinutes = (text.charCodeAt(text.length - 6) === 45 /* - */ ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  const fractionEnd = zulu ? text.length - 1 : text.length - 6;
  // Three digits, the common case, are whole milliseconds: Number('.ddd') * 1000 is exactly ddd.
  const fractionMs =
    fractionEnd === 23 ? digits(text, 20, 23) : fractionEnd > 19 ? Number(text.slice(19, fractionEnd)) * 1000 : 0;
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
  const epochMs = instantOf(value);
  const problem = problemWith(epochMs, nowMs);
  if (problem !== undefined) return { ok: false, message: problem };
  return { ok: true, text: recordedTimeText(value), epochMs: epochMs as number };
}

/** The instant of a schema-valid `time_recorded` when checkTimeRecorded accepts it, else undefined. */
export function recordedTimeMs(value: string | number, nowMs: number): number | undefined {
  const epochMs = instantOf(value);
  return problemWith(epochMs, nowMs) === undefined ? epochMs : undefined;
}

function instantOf(value: string | number): number | undefined {
  return typeof value === 'number' ? value : parseRfc3339(value);
}

function problemWith(epochMs: number | undefined, nowMs: number): string | undefined {
  if (epochMs === undefined) return 'must be a real date and time with an offset of at most ±15:59';
  if (epochMs < EARLIEST_EPOCH_MS) return 'must not be before year 1';
  if (epochMs > nowMs + MAX_FUTURE_MS) return 'must not be more than 24 h in the future';
  return undefined;
}

/** The text PostgreSQL receives for a `time_recorded` that checkTimeRecorded accepted. */
export function recordedTimeText(value: string | number): string {
  if (typeof value === 'number') return new Date(value).toISOString();
  const lowerCase = value.charCodeAt(value.length - 1) === 122 /* z */ || value.charCodeAt(10) === 116; /* t */
  return lowerCase ? value.toUpperCase() : value;
}
