import { EARLIEST_EPOCH_MS } from '../contract/json-schema';
import { metricSchema, type Metric } from '../contract/schemas';
import { recordedTimeMs } from './time';

// A checker specialised for metricSchema, for the bulk path: it only ACCEPTS, and only metrics it can
// prove valid with a few typeof and range checks; anything else goes to checkMetric (ajv), so every
// refusal and its details are still ajv's. Its limits are read from the schema; the schema's shape
// (keywords and types per field) must be the one this code was written for, else it is switched off
// and every metric goes to ajv (test/unit/quick-check.test.ts fails first).

const { properties, required } = metricSchema;
const FIELDS: ReadonlySet<string> = new Set(Object.keys(properties));
const USER_ID = properties.user_id;
const DEVICE_ID = properties.device_id;
const TALKED_TIME = properties.talked_time;
const SENTIMENT = properties.voice_sentiment;

/** The keywords and types of metricSchema that quickCheckMetric was written for; description aside. */
export const SPECIALISED_FOR = {
  top: { type: 'object', additionalProperties: false },
  required: ['user_id', 'talked_time', 'microphone_used', 'speaker_used', 'time_recorded'],
  fields: {
    user_id: { type: 'integer', minimum: USER_ID.minimum, maximum: USER_ID.maximum },
    device_id: {
      type: ['string', 'null'],
      minLength: DEVICE_ID.minLength,
      maxLength: DEVICE_ID.maxLength,
      'x-storable-text': true,
    },
    talked_time: { type: 'number', minimum: TALKED_TIME.minimum, maximum: TALKED_TIME.maximum },
    microphone_used: { type: 'boolean' },
    speaker_used: { type: 'boolean' },
    voice_sentiment: { type: ['number', 'null'], minimum: SENTIMENT.minimum, maximum: SENTIMENT.maximum },
    time_recorded: { type: ['string', 'integer'], format: 'rfc3339-instant', minimum: EARLIEST_EPOCH_MS },
    event_id: {
      type: 'string',
      pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
    },
  },
} as const;

/** Whether metricSchema has exactly the keywords and types quickCheckMetric checks. */
export function schemaIsAsSpecialised(): boolean {
  const {
    $id: _id,
    title: _title,
    description: _description,
    properties: fields,
    required: names,
    ...top
  } = metricSchema;
  const withoutDescription = (schema: object): string => {
    const { description: _ignored, ...rest } = schema as { description?: unknown };
    return JSON.stringify(rest);
  };
  return (
    JSON.stringify(top) === JSON.stringify(SPECIALISED_FOR.top) &&
    JSON.stringify(names) === JSON.stringify(SPECIALISED_FOR.required) &&
    JSON.stringify(Object.keys(fields)) === JSON.stringify(Object.keys(SPECIALISED_FOR.fields)) &&
    Object.entries(fields).every(
      ([name, schema]) =>
        withoutDescription(schema) ===
        JSON.stringify(SPECIALISED_FOR.fields[name as keyof typeof SPECIALISED_FOR.fields]),
    )
  );
}

const ENABLED = schemaIsAsSpecialised();

/** 1 for the ASCII codes of [0-9a-fA-F]. */
const HEX_DIGIT = new Uint8Array(128);
for (const digit of '0123456789abcdefABCDEF') HEX_DIGIT[digit.charCodeAt(0)] = 1;

/**
 * SPECIALISED_FOR's event_id pattern read by hand (a regex test costs about twice as much): 36
 * characters, dashes at 8, 13, 18 and 23, hex digits elsewhere.
 */
function isUuid(text: string): boolean {
  if (text.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const code = text.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (code !== 0x2d) return false;
    } else if (code > 0x7f || HEX_DIGIT[code] !== 1) {
      return false;
    }
  }
  return true;
}

/**
 * Device ids of printable ASCII only: their length is their count of code points (ajv's minLength
 * and maxLength count those), and they hold no NUL and no surrogate (x-storable-text).
 */
function isPrintableAsciiId(id: string): boolean {
  const length = id.length;
  if (length < DEVICE_ID.minLength || length > DEVICE_ID.maxLength) return false;
  for (let i = 0; i < length; i++) {
    const code = id.charCodeAt(i);
    if (code < 0x20 || code > 0x7e) return false;
  }
  return true;
}

function inRange(value: unknown, range: { readonly minimum: number; readonly maximum: number }): boolean {
  return typeof value === 'number' && value >= range.minimum && value <= range.maximum;
}

/**
 * time_recorded in epoch milliseconds when `value` is a metric that checkMetric surely accepts with
 * this `nowMs`; undefined when that is not sure, and checkMetric must decide (and word any refusal).
 */
export function quickCheckMetric(value: unknown, nowMs: number): number | undefined {
  if (!ENABLED || typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const metric = value as Partial<Record<keyof Metric, unknown>>;
  const userId = metric.user_id;
  if (!Number.isInteger(userId) || !inRange(userId, USER_ID)) return undefined;
  if (!inRange(metric.talked_time, TALKED_TIME)) return undefined;
  if (typeof metric.microphone_used !== 'boolean' || typeof metric.speaker_used !== 'boolean') return undefined;
  // Five required fields are present; count the optional ones, then every key must be one of them.
  let fields = required.length;
  const deviceId = metric.device_id;
  if (deviceId !== undefined) {
    if (deviceId !== null && (typeof deviceId !== 'string' || !isPrintableAsciiId(deviceId))) return undefined;
    fields += 1;
  }
  const sentiment = metric.voice_sentiment;
  if (sentiment !== undefined) {
    if (sentiment !== null && !inRange(sentiment, SENTIMENT)) return undefined;
    fields += 1;
  }
  const eventId = metric.event_id;
  if (eventId !== undefined) {
    if (typeof eventId !== 'string' || !isUuid(eventId)) return undefined;
    fields += 1;
  }
  let keys = 0;
  for (const key in metric) {
    if (!FIELDS.has(key)) return undefined;
    keys += 1;
  }
  if (keys !== fields) return undefined;
  const time = metric.time_recorded;
  if (typeof time === 'number') {
    if (!Number.isInteger(time) || time < EARLIEST_EPOCH_MS) return undefined;
  } else if (typeof time !== 'string') {
    return undefined;
  }
  return recordedTimeMs(time, nowMs);
}
