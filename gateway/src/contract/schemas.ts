import { ERROR_CODES, type ErrorCode } from './errors';
import { EARLIEST_EPOCH_MS, type FromSchema } from './json-schema';

// The JSON Schemas of the API: requests and path and query parameters are validated with them
// (ajv in json-schema.ts), answers are checked against them in the tests, the OpenAPI document
// (http/openapi.ts) lists them, and the TypeScript types below are made from them.

/** PostgreSQL `integer`: user ids. */
export const INT4_MAX = 2_147_483_647;
/** `devices.id` is varchar(255). */
export const DEVICE_ID_MAX_CHARS = 255;
/** A recording is at most one day long: `talked_time` is seconds in [0, TALKED_TIME_MAX_SECONDS]. */
export const TALKED_TIME_MAX_SECONDS = 86_400;
/** A voice sentiment is a score from -1 (negative) to 1 (positive). */
export const VOICE_SENTIMENT_MIN = -1;
export const VOICE_SENTIMENT_MAX = 1;
/** A bulk answer lists at most this many refused lines, in about this many bytes of JSON. */
export const MAX_LISTED_ERRORS = 1000;
export const MAX_LISTED_ERRORS_BYTES = 256 * 1024;
/** The status page lists this many recent rejections, each message cut to MESSAGE_MAX_CHARS. */
export const RECENT_REJECTIONS = 20;
export const MESSAGE_MAX_CHARS = 200;
export const PAGE_LIMIT_DEFAULT = 100;
export const PAGE_LIMIT_MAX = 1000;

const storableText = { 'x-storable-text': true } as const;
const timestamp = { type: 'string', format: 'date-time' } as const;
const count = { type: 'integer', minimum: 0 } as const;
/** An object whose properties are all always present (every answer but a few optional fields). */
const allRequired = <const P extends object>(properties: P) =>
  ({ type: 'object', required: Object.keys(properties) as (keyof P & string)[], properties }) as const;
const errorCode = { type: 'string', enum: Object.keys(ERROR_CODES) as ErrorCode[] } as const;

// ---- Requests ----

export const metricSchema = {
  $id: 'Metric',
  title: 'Metric',
  description: 'One voice-session metric from a device.',
  type: 'object',
  additionalProperties: false,
  required: ['user_id', 'talked_time', 'microphone_used', 'speaker_used', 'time_recorded'],
  properties: {
    user_id: { type: 'integer', minimum: 1, maximum: INT4_MAX, description: 'an existing user' },
    device_id: {
      type: ['string', 'null'],
      minLength: 1,
      maxLength: DEVICE_ID_MAX_CHARS,
      ...storableText,
      description: 'an existing device, when present',
    },
    talked_time: {
      type: 'number',
      minimum: 0,
      maximum: TALKED_TIME_MAX_SECONDS,
      description: 'seconds of recording, at most one day',
    },
    microphone_used: { type: 'boolean' },
    speaker_used: { type: 'boolean' },
    voice_sentiment: {
      type: ['number', 'null'],
      minimum: VOICE_SENTIMENT_MIN,
      maximum: VOICE_SENTIMENT_MAX,
      description: 'a score from -1 (negative) to 1 (positive)',
    },
    time_recorded: {
      type: ['string', 'integer'],
      format: 'rfc3339-instant',
      minimum: EARLIEST_EPOCH_MS,
      description: 'RFC 3339 with offset or Z, or epoch milliseconds; at most 24 h in the future',
    },
    event_id: {
      type: 'string',
      // The form PostgreSQL's uuid type reads; ajv-formats' "uuid" also allows a "urn:uuid:" prefix.
      pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
      description:
        'idempotency key (a UUID): the same event_id for the same user and the same time_recorded is stored once (a retry resends the same event)',
    },
  },
} as const;

export const newUserSchema = {
  $id: 'NewUser',
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200, ...storableText },
    age: { type: ['integer', 'null'], minimum: 0, maximum: 150 },
  },
} as const;

export const newDeviceSchema = {
  $id: 'NewDevice',
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: DEVICE_ID_MAX_CHARS, ...storableText },
    type: { type: ['string', 'null'], maxLength: 255, ...storableText },
    name: { type: ['string', 'null'], maxLength: 255, ...storableText },
  },
} as const;

// ---- Path and query parameters ----

export const userIdSchema = { type: 'integer', minimum: 1, maximum: INT4_MAX } as const;
export const deviceIdSchema = {
  type: 'string',
  minLength: 1,
  maxLength: DEVICE_ID_MAX_CHARS,
  ...storableText,
} as const;

const instant = (description: string) => ({ type: 'string', format: 'rfc3339-instant', description }) as const;
const from = instant('only rows with time_recorded at or after this instant (RFC 3339 with Z or an offset)');
const to = instant('only rows with time_recorded before this instant (RFC 3339 with Z or an offset)');

export const waitQuerySchema = {
  type: 'object',
  properties: {
    wait: {
      type: 'boolean',
      default: true,
      description: 'true: answer once the rows are committed; false: answer 202 once they are buffered',
    },
  },
} as const;

export const userMetricsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    from,
    to,
    limit: {
      type: 'integer',
      minimum: 1,
      maximum: PAGE_LIMIT_MAX,
      default: PAGE_LIMIT_DEFAULT,
      description: 'rows per page',
    },
    cursor: {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      pattern: '^[A-Za-z0-9_-]+$',
      description: 'next_cursor of the previous page, to read the page after it (with the same from and to)',
    },
  },
} as const;

export const userSummaryQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { from, to },
} as const;

// ---- Answers ----

export const errorDetailSchema = {
  type: 'object',
  required: ['path', 'message'],
  properties: {
    path: { type: 'string', description: 'JSON pointer into the metric, or /params/NAME, /query/NAME' },
    message: { type: 'string' },
  },
  additionalProperties: true,
} as const;

export const errorSchema = allRequired({
  error: { ...errorCode, description: 'stable code; see the responses' },
  message: { type: 'string', description: 'for people; may change' },
  details: { type: 'array', items: errorDetailSchema },
});

export const singleResultSchema = {
  type: 'object',
  required: ['status'],
  properties: {
    status: { type: 'string', enum: ['stored', 'queued'] },
    event_id: { type: 'string', description: 'the event_id of the request, when it had one' },
  },
} as const;

export const lineErrorSchema = allRequired({
  line: { type: 'integer', minimum: 0, description: 'line number, counting from 1 (blank lines included)' },
  error: errorCode,
  details: { type: 'array', items: errorDetailSchema },
});

const bulkResultProperties = {
  accepted: {
    type: 'integer',
    minimum: 0,
    description: "rows that are durable: committed (wait=true) or fsync'd in the spool (wait=false)",
  },
  rejected: { type: 'integer', minimum: 0, description: 'lines refused' },
  errors: {
    type: 'array',
    maxItems: MAX_LISTED_ERRORS,
    items: lineErrorSchema,
    description: `the first ${MAX_LISTED_ERRORS} refused lines (at most ${MAX_LISTED_ERRORS_BYTES} bytes of them), in line order`,
  },
  errors_omitted: { type: 'integer', minimum: 1, description: 'refused lines not listed in errors' },
} as const;

export const bulkResultSchema = {
  type: 'object',
  required: ['accepted', 'rejected', 'errors'],
  properties: bulkResultProperties,
} as const;

/** What an error answer adds when it stopped a bulk upload part-way. */
export const bulkProgressSchema = {
  type: 'object',
  description: 'present when the upload stopped part-way: how far it got',
  properties: {
    ...bulkResultProperties,
    pending: {
      type: 'integer',
      minimum: 0,
      description: 'rows whose write had not finished when answered: they may still be stored',
    },
    resend_from_line: {
      type: 'integer',
      minimum: 1,
      description: 'the first line to send again; every line before it is accepted or rejected',
    },
  },
} as const;

export const userSchema = allRequired({
  id: userIdSchema,
  name: { type: 'string' },
  age: { type: ['integer', 'null'] },
  created_at: timestamp,
});

export const deviceSchema = allRequired({
  id: { type: 'string' },
  type: { type: ['string', 'null'] },
  name: { type: ['string', 'null'] },
  created_at: timestamp,
});

// A stored row: its id and the columns the gateway copies in (COPY_COLUMNS of db/copy-row.ts).
export const storedMetricSchema = allRequired({
  id: {
    type: 'string',
    pattern: '^[0-9]+$',
    description: 'a 64-bit integer, as text so that no JSON parser rounds it',
  },
  user_id: { type: 'integer' },
  device_id: { type: ['string', 'null'] },
  talked_time: { type: 'number' },
  microphone_used: { type: 'boolean' },
  speaker_used: { type: 'boolean' },
  voice_sentiment: { type: ['number', 'null'] },
  time_recorded: { ...timestamp, description: 'UTC, with microseconds' },
  event_id: { type: ['string', 'null'], format: 'uuid' },
  received_at: { ...timestamp, description: 'when the gateway accepted the row; UTC, with microseconds' },
});

export const metricsPageSchema = allRequired({
  items: { type: 'array', items: storedMetricSchema, description: 'newest first: time_recorded, then id' },
  next_cursor: {
    type: ['string', 'null'],
    description: 'pass as `cursor` for the next page; null on the last page',
  },
});

export const summarySchema = allRequired({
  count,
  total_talked_time: { type: 'number', description: 'seconds' },
  average_voice_sentiment: { type: ['number', 'null'], description: 'over the rows with a sentiment' },
  microphone_share: { type: ['number', 'null'], minimum: 0, maximum: 1, description: 'null without rows' },
  speaker_share: { type: ['number', 'null'], minimum: 0, maximum: 1, description: 'null without rows' },
});

const nullableNumber = <D extends string>(description: D) =>
  ({ type: ['number', 'null'], minimum: 0, description }) as const;

export const statsPointSchema = allRequired({
  t: { type: 'integer', description: 'end of the interval, epoch milliseconds' },
  accepted_per_second: { type: 'number', minimum: 0 },
  rejected_per_second: { type: 'number', minimum: 0 },
  buffer_depth: count,
  flush_latency_ms: nullableNumber('mean batch write time; null when none was written'),
});

export const recentRejectionSchema = {
  type: 'object',
  required: ['time', 'endpoint', 'line', 'error'],
  properties: {
    time: timestamp,
    endpoint: { type: 'string', enum: ['single', 'bulk'] },
    line: { type: ['integer', 'null'], minimum: 0, description: 'line number within a bulk upload' },
    error: { type: 'string', description: 'the error code' },
    message: {
      type: 'string',
      maxLength: MESSAGE_MAX_CHARS,
      description: 'only when `rejection_messages` is `shown`: it can name what the client sent',
    },
  },
} as const;

export const partitionSchema = allRequired({
  name: { type: 'string' },
  from: { type: ['string', 'null'], format: 'date-time', description: 'inclusive; null: from the earliest time' },
  to: { type: ['string', 'null'], format: 'date-time', description: 'exclusive; null for the default partition' },
  bytes: { ...count, description: 'table, indexes and TOAST' },
});

export const statsSchema = {
  description: 'What the status page at `/` shows. Totals are since the gateway started.',
  ...allRequired({
    time: timestamp,
    uptime_seconds: { type: 'number', minimum: 0 },
    window_seconds: {
      type: 'number',
      minimum: 0,
      description: 'rates and flush figures are over this many seconds up to `time` (5, less just after start-up)',
    },
    ingest: allRequired({
      accepted_rows_per_second: nullableNumber('rows taken into the buffer; null just after start-up'),
      rejected_rows_per_second: nullableNumber('rows refused, at the door or at flush time'),
      flushed_rows_per_second: nullableNumber('rows written out by batches'),
    }),
    buffer: allRequired({
      depth: { ...count, description: 'rows buffered or being written' },
      capacity: { ...count, description: 'BUFFER_MAX_ROWS' },
    }),
    flush: allRequired({
      mean_latency_ms: nullableNumber('mean time to write a batch in the window; null when none was written'),
      mean_batch_rows: nullableNumber('mean rows per batch in the window'),
      batches: { ...count, description: 'batches written since start-up' },
    }),
    totals: allRequired({
      accepted_rows: count,
      rejected_rows: { ...count, description: 'refused at the door' },
      rejected_at_flush_rows: { ...count, description: 'accepted, then refused by PostgreSQL (rejected_metrics)' },
      flushed_rows: count,
    }),
    rejected_by_reason: {
      type: 'array',
      description: 'most frequent first',
      items: allRequired({
        reason: { type: 'string', description: 'the error code' },
        at_door: count,
        at_flush: count,
      }),
    },
    recent_rejections: {
      type: 'array',
      maxItems: RECENT_REJECTIONS,
      description: 'the last refused lines or requests, newest first, as their answers said; never the payload',
      items: recentRejectionSchema,
    },
    rejection_messages: {
      type: 'string',
      enum: ['shown', 'need_admin_key'],
      description:
        'with `AUTH_REQUIRED=true`, the messages (which can hold field names, ids and a piece of a line) need an admin key',
    },
    partitions: {
      ...allRequired({
        count: { ...count, description: 'partitions of user_metrics, the default one included' },
        total_bytes: count,
        oldest_time_recorded: { type: ['string', 'null'], format: 'date-time', description: 'null without rows' },
        list: { type: 'array', description: 'oldest first, the default partition last', items: partitionSchema },
      }),
      type: ['object', 'null'],
      description: 'user_metrics by time_recorded (read at most every 10 s); null while PostgreSQL has not answered',
    },
    history: allRequired({
      interval_seconds: { type: 'number' },
      points: {
        type: 'array',
        description: 'one per interval, oldest first, for the last minute',
        items: statsPointSchema,
      },
    }),
  }),
} as const;

export const statusSchema = <S extends string>(status: S) => allRequired({ status: { type: 'string', const: status } });

/** The schemas by name, as the OpenAPI document's components; nested ones are referenced by name. */
export const COMPONENTS: Readonly<Record<string, object>> = {
  Metric: metricSchema,
  NewUser: newUserSchema,
  NewDevice: newDeviceSchema,
  User: userSchema,
  Device: deviceSchema,
  SingleResult: singleResultSchema,
  BulkResult: bulkResultSchema,
  BulkProgress: bulkProgressSchema,
  LineError: lineErrorSchema,
  StoredMetric: storedMetricSchema,
  MetricsPage: metricsPageSchema,
  MetricsSummary: summarySchema,
  Error: errorSchema,
  ErrorDetail: errorDetailSchema,
  Stats: statsSchema,
  Partition: partitionSchema,
  Healthy: statusSchema('ok'),
  Ready: statusSchema('ready'),
};

// ---- The types of the wire, from the schemas ----

export type Metric = FromSchema<typeof metricSchema>;
export type NewUser = FromSchema<typeof newUserSchema>;
export type NewDevice = FromSchema<typeof newDeviceSchema>;
export type User = FromSchema<typeof userSchema>;
export type Device = FromSchema<typeof deviceSchema>;
export type ErrorBody = FromSchema<typeof errorSchema>;
export type SingleResult = FromSchema<typeof singleResultSchema>;
export type LineError = FromSchema<typeof lineErrorSchema>;
export type BulkResult = FromSchema<typeof bulkResultSchema>;
export type BulkProgress = FromSchema<typeof bulkProgressSchema>;
export type StoredMetric = FromSchema<typeof storedMetricSchema>;
export type MetricsPage = FromSchema<typeof metricsPageSchema>;
export type MetricsSummary = FromSchema<typeof summarySchema>;
export type StatsPoint = FromSchema<typeof statsPointSchema>;
export type RecentRejectionBody = FromSchema<typeof recentRejectionSchema>;
export type StatsSnapshot = FromSchema<typeof statsSchema>;
