/**
 * `time_recorded` arrives as an RFC 3339 string with an offset or as integer epoch milliseconds.
 * Both are checked here to be a real calendar instant that PostgreSQL stores as given.
 */

// 0001-01-01T00:00:00Z: PostgreSQL has no year 0, and older instants are surely client bugs.
export const EARLIEST_EPOCH_MS = -62_135_596_800_000;
export const MAX_FUTURE_MS = 24 * 60 * 60 * 1000;

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Epoch milliseconds of an RFC 3339 timestamp, or undefined if it is not one or not a real date. */
export function parseRfc3339(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offsetMinutes = 0;
  if (m[8] === undefined) {
    const offsetHours = Number(m[10]);
    const offsetMins = Number(m[11]);
    // RFC 3339 allows offsets up to 23:59, PostgreSQL up to 15:59; real zones span -12:00 to +14:00.
    if (offsetHours > 15 || offsetMins > 59) return undefined;
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  const fractionMs = m[7] === undefined ? 0 : Number(m[7]) * 1000;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // Date.UTC maps years 0..99 to 1900..1999
  date.setUTCHours(hour, minute, second, 0);
  return date.getTime() + fractionMs - offsetMinutes * 60_000;
}

export function isRfc3339(text: string): boolean {
  return parseRfc3339(text) !== undefined;
}

export type TimeCheck = { readonly ok: true; readonly text: string } | { readonly ok: false; readonly message: string };

/**
 * Checks an already schema-valid `time_recorded` against the clock and gives the text PostgreSQL
 * receives: strings as sent (upper-cased separators), epoch milliseconds as ISO 8601 in UTC.
 */
export function checkTimeRecorded(value: string | number, nowMs: number): TimeCheck {
  const epochMs = typeof value === 'number' ? value : parseRfc3339(value);
  if (epochMs === undefined) return { ok: false, message: 'must be an RFC 3339 timestamp with an offset' };
  if (epochMs < EARLIEST_EPOCH_MS) return { ok: false, message: 'must not be before year 1' };
  if (epochMs > nowMs + MAX_FUTURE_MS) return { ok: false, message: 'must not be more than 24 h in the future' };
  if (typeof value === 'number') return { ok: true, text: new Date(value).toISOString() };
  return { ok: true, text: /[tz]/.test(value) ? value.toUpperCase() : value };
}
