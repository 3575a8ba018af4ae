import type { ErrorObject } from 'ajv/dist/2020';
import type { ErrorDetail } from '../contract/errors';
import { ajv } from '../contract/json-schema';
import {
  metricSchema,
  newDeviceSchema,
  newUserSchema,
  type Metric,
  type NewDevice,
  type NewUser,
} from '../contract/schemas';
import { checkTimeRecorded } from './time';

export type { Metric } from '../contract/schemas';

/** At most this many details for one metric (or user or device body); the last then says how many more there were. */
export const MAX_DETAILS_PER_METRIC = 10;
/** A detail's path and message are cut to this many characters: unknown field names come from the client. */
export const MAX_DETAIL_TEXT_CHARS = 200;

const compiledMetric = ajv.compile<Metric>(metricSchema);
const compiledUser = ajv.compile<NewUser>(newUserSchema);
const compiledDevice = ajv.compile<NewDevice>(newDeviceSchema);

/** A property name as a JSON-pointer segment (RFC 6901). */
function pointerSegment(name: unknown): string {
  return String(name).replace(/~/g, '~0').replace(/\//g, '~1');
}

function describe(error: ErrorObject): ErrorDetail {
  switch (error.keyword) {
    case 'additionalProperties':
      return {
        path: `${error.instancePath}/${pointerSegment(error.params.additionalProperty)}`,
        message: 'is not a known field',
      };
    case 'required':
      return { path: `${error.instancePath}/${pointerSegment(error.params.missingProperty)}`, message: 'is required' };
    case 'x-storable-text':
      return { path: error.instancePath, message: 'must not contain NUL characters or unpaired surrogates' };
    case 'format':
      return error.params.format === 'rfc3339-instant'
        ? { path: error.instancePath, message: 'must be an RFC 3339 timestamp with an offset, or epoch milliseconds' }
        : { path: error.instancePath, message: `must be a ${String(error.params.format)}` };
    case 'pattern':
      return error.instancePath.endsWith('/event_id')
        ? { path: error.instancePath, message: 'must be a UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e' }
        : { path: error.instancePath, message: error.message ?? 'is invalid' };
    default:
      return { path: error.instancePath, message: error.message ?? 'is invalid' };
  }
}

/** `text` cut to at most `max` characters, the last of them an ellipsis when it was cut. */
export function boundedText(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max < 1) return '';
  let end = max - 1;
  // Never keep half of a surrogate pair: it could not be encoded as UTF-8.
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}

/** ajv's errors as details, those about known fields first: an unknown key is the least useful to read. */
function describeAll(errors: readonly ErrorObject[] | null | undefined): ErrorDetail[] {
  const all = errors ?? [];
  const isUnknownField = (error: ErrorObject): boolean => error.keyword === 'additionalProperties';
  return [...all.filter((error) => !isUnknownField(error)), ...all.filter(isUnknownField)].map(describe);
}

/**
 * At most MAX_DETAILS_PER_METRIC details, each with bounded text: ajv's allErrors reports every unknown
 * key, so one 64 KiB line could otherwise fill an answer with thousands of them.
 */
function boundedDetails(problems: readonly ErrorDetail[]): ErrorDetail[] {
  const kept = problems.length <= MAX_DETAILS_PER_METRIC ? problems : problems.slice(0, MAX_DETAILS_PER_METRIC - 1);
  const bounded = kept.map(({ path, message }) => ({
    path: boundedText(path, MAX_DETAIL_TEXT_CHARS),
    message: boundedText(message, MAX_DETAIL_TEXT_CHARS),
  }));
  const leftOut = problems.length - kept.length;
  if (leftOut > 0) bounded.push({ path: '', message: `and ${leftOut} more problems, not listed` });
  return bounded;
}

function details(errors: readonly ErrorObject[] | null | undefined): ErrorDetail[] {
  return boundedDetails(describeAll(errors));
}

export type MetricCheck =
  | { readonly ok: true; readonly metric: Metric; readonly timeRecorded: string; readonly timeRecordedMs: number }
  | { readonly ok: false; readonly details: ErrorDetail[] };

/** Validates one parsed metric; on success also gives `time_recorded` as PostgreSQL will receive it. */
export function checkMetric(value: unknown, nowMs: number): MetricCheck {
  if (!compiledMetric(value)) {
    const problems = describeAll(compiledMetric.errors);
    // The schema checks only the shape of time_recorded; name an impossible date among the other errors too.
    const time = (value as { time_recorded?: unknown } | null)?.time_recorded;
    if (
      (typeof time === 'string' || Number.isSafeInteger(time)) &&
      !problems.some((p) => p.path === '/time_recorded')
    ) {
      const check = checkTimeRecorded(time as string | number, nowMs);
      if (!check.ok) problems.unshift({ path: '/time_recorded', message: check.message });
    }
    return { ok: false, details: boundedDetails(problems) };
  }
  const time = checkTimeRecorded(value.time_recorded, nowMs);
  if (!time.ok) return { ok: false, details: [{ path: '/time_recorded', message: time.message }] };
  return { ok: true, metric: value, timeRecorded: time.text, timeRecordedMs: time.epochMs };
}

export type Check<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly details: ErrorDetail[] };

export function checkNewUser(value: unknown): Check<NewUser> {
  return compiledUser(value) ? { ok: true, value } : { ok: false, details: details(compiledUser.errors) };
}

export function checkNewDevice(value: unknown): Check<NewDevice> {
  return compiledDevice(value) ? { ok: true, value } : { ok: false, details: details(compiledDevice.errors) };
}
