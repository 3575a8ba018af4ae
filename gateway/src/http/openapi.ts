import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ERROR_CODES, type ErrorCode } from '../errors';
import { COPY_COLUMNS } from '../db/copy-row';
import { MAX_LISTED_ERRORS, MAX_LISTED_ERRORS_BYTES } from '../ingest/intake';
import { metricSchema, newDeviceSchema, newUserSchema } from '../ingest/schema';
import { PROJECT_ROOT } from '../paths';
import { MESSAGE_MAX_CHARS, RECENT_REJECTIONS } from '../telemetry/recent-rejections';
import { userMetricsQuerySchema, userSummaryQuerySchema } from './read-params';

// The OpenAPI 3.1 document of the API. The request bodies and query parameters are the very JSON
// Schemas that requests are validated with (ingest/schema.ts, http/read-params.ts), translated where
// OpenAPI's dialect of JSON Schema 2020-12 does not know a keyword; the error responses come from the
// registry in errors.ts. A field added there appears here without an edit.

type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };
type JsonObject = { [key: string]: Json };

const INT4_MAX = 2_147_483_647;

/** What the validator's own keywords mean, for readers of the document. */
const CUSTOM_KEYWORD_NOTES: Readonly<Record<string, string>> = {
  'x-storable-text': 'Must not contain NUL characters or unpaired UTF-16 surrogates (PostgreSQL cannot store them).',
};
const CUSTOM_FORMATS: Readonly<Record<string, { format: string; note: string }>> = {
  'rfc3339-instant': {
    format: 'date-time',
    note: 'A string must be an RFC 3339 date-time with Z or an offset, and a real calendar date.',
  },
};
/** Keywords whose value is a schema, or a map or list of schemas. */
const SUBSCHEMA = new Set(['items', 'additionalProperties', 'not', 'if', 'then', 'else', 'contains']);
const SUBSCHEMA_MAPS = new Set(['properties', 'patternProperties', '$defs']);
const SUBSCHEMA_LISTS = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);

function appendNote(schema: JsonObject, note: string): void {
  const description = typeof schema.description === 'string' ? schema.description : '';
  schema.description = description === '' ? note : `${description}. ${note}`;
}

/**
 * A validation schema as an OpenAPI 3.1 Schema Object: `$id` dropped (components name the schemas),
 * custom keywords kept as `x-` extensions and explained in the description, custom formats mapped
 * to the standard format they refine.
 */
export function toOpenApiSchema(schema: Json): JsonObject {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw new TypeError('a schema is an object');
  }
  const out: JsonObject = {};
  const notes: string[] = [];
  for (const [key, value] of Object.entries(schema as Record<string, Json>)) {
    if (key === '$id') continue;
    if (SUBSCHEMA.has(key) && typeof value === 'object' && value !== null) {
      out[key] = toOpenApiSchema(value);
    } else if (SUBSCHEMA_MAPS.has(key)) {
      out[key] = Object.fromEntries(
        Object.entries(value as Record<string, Json>).map(([name, sub]) => [name, toOpenApiSchema(sub)]),
      );
    } else if (SUBSCHEMA_LISTS.has(key)) {
      out[key] = (value as readonly Json[]).map(toOpenApiSchema);
    } else if (key === 'format' && typeof value === 'string' && CUSTOM_FORMATS[value] !== undefined) {
      out.format = CUSTOM_FORMATS[value].format;
      notes.push(CUSTOM_FORMATS[value].note);
    } else {
      out[key] = structuredClone(value) as Json;
      const note = CUSTOM_KEYWORD_NOTES[key];
      if (note !== undefined && value !== false) notes.push(note);
    }
  }
  for (const note of notes) appendNote(out, note);
  return out;
}

/** Query parameters from the JSON Schema of a query object. */
function queryParameters(querySchema: Json): JsonObject[] {
  const { properties = {}, required = [] } = toOpenApiSchema(querySchema) as {
    properties?: Record<string, JsonObject>;
    required?: string[];
  };
  return Object.entries(properties).map(([name, { description, ...schema }]) => ({
    name,
    in: 'query',
    required: required.includes(name),
    ...(description === undefined ? {} : { description }),
    schema,
  }));
}

const ref = (name: string): JsonObject => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: JsonObject, example?: Json): JsonObject => ({
  'application/json': example === undefined ? { schema } : { schema, example },
});

// ---- Error responses, by status, from the registry ----

/** What a status means where the registry has no code for it yet (API keys are another change). */
const STATUS_NOTES: Readonly<Record<number, string>> = {
  400: 'The request is not valid: `details` point at the problems with JSON pointers.',
  401: 'No valid API key (`Authorization: Bearer KEY`), once API keys are required (`AUTH_REQUIRED=true`).',
  403: 'The API key may not do this, once API keys exist.',
  404: 'No such user, device or route.',
  408: 'The body stopped arriving (`BODY_IDLE_TIMEOUT_MS`).',
  409: 'A device with this id exists already.',
  413: 'The body is larger than the limit.',
  415: 'Another Content-Type, charset or Content-Encoding than the endpoint takes.',
  422: 'The metric names a user or device that does not exist.',
  429: 'The buffer is full, or the API key is over its rate limit: retry after `Retry-After` seconds.',
  500: 'A bug: never for bad input.',
  503: 'PostgreSQL is unavailable, or the rows were not committed in time: retry after `Retry-After` seconds.',
};
const RETRY_AFTER_STATUSES = new Set([429, 503]);

function codesWithStatus(status: number): ErrorCode[] {
  return (Object.keys(ERROR_CODES) as ErrorCode[]).filter((code) => ERROR_CODES[code].status === status);
}

function errorResponse(status: number): JsonObject {
  const codes = codesWithStatus(status);
  const listed = codes.map((code) => `\`${code}\`: ${ERROR_CODES[code].message}`).join('; ');
  const description = [STATUS_NOTES[status] ?? 'An error.', listed === '' ? '' : `Codes: ${listed}.`].join(' ');
  const schema: JsonObject =
    codes.length === 0 ? ref('Error') : { allOf: [ref('Error')], properties: { error: { enum: codes } } };
  return {
    description: description.trim(),
    ...(RETRY_AFTER_STATUSES.has(status)
      ? { headers: { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } } }
      : {}),
    content: json(schema),
  };
}

/** The listed error statuses of an operation, plus `default` for anything unforeseen (500). */
function errors(...statuses: number[]): JsonObject {
  const responses: JsonObject = {};
  for (const status of statuses) responses[String(status)] = { $ref: `#/components/responses/Error${status}` };
  responses.default = { $ref: '#/components/responses/Error500' };
  return responses;
}

/** A response component per status that the registry or the notes know. */
const ERROR_STATUSES = [
  ...new Set([...Object.keys(STATUS_NOTES).map(Number), ...Object.values(ERROR_CODES).map((c) => c.status)]),
].sort((a, b) => a - b);
/** Every /v1 endpoint may answer these once API keys are required (429: a key's rate limit), and 503. */
const V1 = [401, 403, 429, 503];

// ---- Schemas of answers (requests are the validation schemas themselves) ----

const errorSchema: JsonObject = {
  type: 'object',
  required: ['error', 'message', 'details'],
  properties: {
    error: { type: 'string', enum: Object.keys(ERROR_CODES), description: 'stable code; see the responses' },
    message: { type: 'string', description: 'for people; may change' },
    details: { type: 'array', items: ref('ErrorDetail') },
  },
};
const errorDetailSchema: JsonObject = {
  type: 'object',
  required: ['path', 'message'],
  properties: {
    path: { type: 'string', description: 'JSON pointer into the metric, or /params/NAME, /query/NAME' },
    message: { type: 'string' },
  },
  additionalProperties: true,
};
const singleResultSchema: JsonObject = {
  type: 'object',
  required: ['status'],
  properties: {
    status: { type: 'string', enum: ['stored', 'queued'] },
    event_id: { type: 'string', description: 'the event_id of the request, when it had one' },
  },
};
const lineErrorSchema: JsonObject = {
  type: 'object',
  required: ['line', 'error', 'details'],
  properties: {
    line: { type: 'integer', minimum: 0, description: 'line number, counting from 1 (blank lines included)' },
    error: { type: 'string', enum: Object.keys(ERROR_CODES) },
    details: { type: 'array', items: ref('ErrorDetail') },
  },
};
const bulkResultProperties: JsonObject = {
  accepted: {
    type: 'integer',
    minimum: 0,
    description: "rows that are durable: committed (wait=true) or fsync'd in the spool (wait=false)",
  },
  rejected: { type: 'integer', minimum: 0, description: 'lines refused' },
  errors: {
    type: 'array',
    maxItems: MAX_LISTED_ERRORS,
    items: ref('LineError'),
    description: `the first ${MAX_LISTED_ERRORS} refused lines (at most ${MAX_LISTED_ERRORS_BYTES} bytes of them), in line order`,
  },
  errors_omitted: { type: 'integer', minimum: 1, description: 'refused lines not listed in errors' },
};
const bulkResultSchema: JsonObject = {
  type: 'object',
  required: ['accepted', 'rejected', 'errors'],
  properties: bulkResultProperties,
};
/** What an error answer adds when it stopped a bulk upload part-way. */
const bulkProgressSchema: JsonObject = {
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
};

/** The error responses of a bulk upload, which may also say how far it got. */
function bulkErrors(...statuses: number[]): JsonObject {
  const responses = errors(...statuses);
  for (const status of [400, 408, 413, 429, 503]) {
    const response = errorResponse(status);
    response.content = json({
      allOf: [
        ((response.content as JsonObject)['application/json'] as JsonObject).schema as JsonObject,
        ref('BulkProgress'),
      ],
    });
    responses[String(status)] = response;
  }
  return responses;
}
const timestamp = { type: 'string', format: 'date-time' } as const;
const userSchema: JsonObject = {
  type: 'object',
  required: ['id', 'name', 'age', 'created_at'],
  properties: {
    id: { type: 'integer', minimum: 1, maximum: INT4_MAX },
    name: { type: 'string' },
    age: { type: ['integer', 'null'] },
    created_at: timestamp,
  },
};
const deviceSchema: JsonObject = {
  type: 'object',
  required: ['id', 'type', 'name', 'created_at'],
  properties: {
    id: { type: 'string' },
    type: { type: ['string', 'null'] },
    name: { type: ['string', 'null'] },
    created_at: timestamp,
  },
};
const storedMetricSchema: JsonObject = {
  type: 'object',
  // A stored row: its id and the columns the gateway copies in.
  required: ['id', ...COPY_COLUMNS],
  properties: {
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
  },
};
const metricsPageSchema: JsonObject = {
  type: 'object',
  required: ['items', 'next_cursor'],
  properties: {
    items: { type: 'array', items: ref('StoredMetric'), description: 'newest first: time_recorded, then id' },
    next_cursor: {
      type: ['string', 'null'],
      description: 'pass as `cursor` for the next page; null on the last page',
    },
  },
};
const summarySchema: JsonObject = {
  type: 'object',
  required: ['count', 'total_talked_time', 'average_voice_sentiment', 'microphone_share', 'speaker_share'],
  properties: {
    count: { type: 'integer', minimum: 0 },
    total_talked_time: { type: 'number', description: 'seconds' },
    average_voice_sentiment: { type: ['number', 'null'], description: 'over the rows with a sentiment' },
    microphone_share: { type: ['number', 'null'], minimum: 0, maximum: 1, description: 'null without rows' },
    speaker_share: { type: ['number', 'null'], minimum: 0, maximum: 1, description: 'null without rows' },
  },
};
const nullableNumber = (description: string): JsonObject => ({ type: ['number', 'null'], minimum: 0, description });
const count = { type: 'integer', minimum: 0 } as const;
const statsSchema: JsonObject = {
  type: 'object',
  description: 'What the status page at `/` shows. Totals are since the gateway started.',
  required: [
    'time',
    'uptime_seconds',
    'window_seconds',
    'ingest',
    'buffer',
    'flush',
    'totals',
    'rejected_by_reason',
    'recent_rejections',
    'rejection_messages',
    'history',
  ],
  properties: {
    time: timestamp,
    uptime_seconds: { type: 'number', minimum: 0 },
    window_seconds: {
      type: 'number',
      minimum: 0,
      description: 'rates and flush figures are over this many seconds up to `time` (5, less just after start-up)',
    },
    ingest: {
      type: 'object',
      required: ['accepted_rows_per_second', 'rejected_rows_per_second', 'flushed_rows_per_second'],
      properties: {
        accepted_rows_per_second: nullableNumber('rows taken into the buffer; null just after start-up'),
        rejected_rows_per_second: nullableNumber('rows refused, at the door or at flush time'),
        flushed_rows_per_second: nullableNumber('rows written out by batches'),
      },
    },
    buffer: {
      type: 'object',
      required: ['depth', 'capacity'],
      properties: {
        depth: { ...count, description: 'rows buffered or being written' },
        capacity: { ...count, description: 'BUFFER_MAX_ROWS' },
      },
    },
    flush: {
      type: 'object',
      required: ['mean_latency_ms', 'mean_batch_rows', 'batches'],
      properties: {
        mean_latency_ms: nullableNumber('mean time to write a batch in the window; null when none was written'),
        mean_batch_rows: nullableNumber('mean rows per batch in the window'),
        batches: { ...count, description: 'batches written since start-up' },
      },
    },
    totals: {
      type: 'object',
      required: ['accepted_rows', 'rejected_rows', 'rejected_at_flush_rows', 'flushed_rows'],
      properties: {
        accepted_rows: count,
        rejected_rows: { ...count, description: 'refused at the door' },
        rejected_at_flush_rows: { ...count, description: 'accepted, then refused by PostgreSQL (rejected_metrics)' },
        flushed_rows: count,
      },
    },
    rejected_by_reason: {
      type: 'array',
      description: 'most frequent first',
      items: {
        type: 'object',
        required: ['reason', 'at_door', 'at_flush'],
        properties: {
          reason: { type: 'string', description: 'the error code' },
          at_door: count,
          at_flush: count,
        },
      },
    },
    recent_rejections: {
      type: 'array',
      maxItems: RECENT_REJECTIONS,
      description: 'the last refused lines or requests, newest first, as their answers said; never the payload',
      items: {
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
      },
    },
    rejection_messages: {
      type: 'string',
      enum: ['shown', 'need_admin_key'],
      description:
        'with `AUTH_REQUIRED=true`, the messages (which can hold field names, ids and a piece of a line) need an admin key',
    },
    history: {
      type: 'object',
      required: ['interval_seconds', 'points'],
      properties: {
        interval_seconds: { type: 'number' },
        points: {
          type: 'array',
          description: 'one per interval, oldest first, for the last minute',
          items: {
            type: 'object',
            required: ['t', 'accepted_per_second', 'rejected_per_second', 'buffer_depth', 'flush_latency_ms'],
            properties: {
              t: { type: 'integer', description: 'end of the interval, epoch milliseconds' },
              accepted_per_second: { type: 'number', minimum: 0 },
              rejected_per_second: { type: 'number', minimum: 0 },
              buffer_depth: count,
              flush_latency_ms: nullableNumber('mean batch write time; null when none was written'),
            },
          },
        },
      },
    },
  },
};
const statusSchema = (status: string): JsonObject => ({
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', const: status } },
});

// ---- Parameters ----

const waitParameter: JsonObject = {
  name: 'wait',
  in: 'query',
  required: false,
  description: 'true: answer once the rows are committed; false: answer 202 once they are buffered',
  schema: { type: 'boolean', default: true },
};
const userIdParameter: JsonObject = {
  name: 'id',
  in: 'path',
  required: true,
  schema: { type: 'integer', minimum: 1, maximum: INT4_MAX },
};
const deviceIdParameter: JsonObject = {
  name: 'id',
  in: 'path',
  required: true,
  schema: { type: 'string', minLength: 1, maxLength: 255 },
};

const exampleMetric = {
  user_id: 1,
  device_id: 'id774-wc-935-uJq2AcOUx',
  talked_time: 42.5,
  microphone_used: true,
  speaker_used: false,
  voice_sentiment: 0.4,
  time_recorded: '2026-11-29T18:20:00+01:00',
  event_id: '0f8fad5b-d9cb-469f-a165-70867728950e',
};

const NDJSON_EXAMPLE = [exampleMetric, { ...exampleMetric, event_id: undefined, talked_time: 3 }]
  .map((line) => `${JSON.stringify(line)}\n`)
  .join('');
const NDJSON_DESCRIPTION =
  'NDJSON: one `Metric` object (see the schema) per line, LF or CRLF; blank lines are skipped but counted. ' +
  'The body is read as it arrives, so it may be of any size; each line is at most `BULK_MAX_LINE_BYTES`. ' +
  'Valid lines are stored even when others are refused.';

function packageVersion(): string {
  const { version } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  return version;
}

/** Builds the document; it depends only on code, so callers build it once. */
export function buildOpenApiDocument(): JsonObject {
  const responses: JsonObject = {};
  for (const status of ERROR_STATUSES) responses[`Error${status}`] = errorResponse(status);
  const publicOperation = { security: [] };

  return {
    openapi: '3.1.0',
    info: {
      title: 'metrics-gateway',
      version: packageVersion(),
      description:
        'Ingests voice-session metrics into PostgreSQL: single JSON events and NDJSON bulk uploads, ' +
        'validated, buffered and written in batches with COPY. Every answer is JSON; errors are ' +
        '`{"error": CODE, "message": TEXT, "details": [...]}`.',
    },
    tags: [
      { name: 'metrics', description: 'ingest' },
      { name: 'users' },
      { name: 'devices' },
      { name: 'operations', description: 'health, readiness, Prometheus metrics, this document' },
    ],
    // An API key is optional while AUTH_REQUIRED=false: {} lets a request go without one.
    security: [{}, { bearerAuth: [] }],
    paths: {
      '/v1/metrics': {
        post: {
          tags: ['metrics'],
          operationId: 'postMetric',
          summary: 'Store one metric',
          parameters: [waitParameter],
          requestBody: { required: true, content: json(ref('Metric'), exampleMetric) },
          responses: {
            '201': {
              description: 'committed (wait=true)',
              content: json(ref('SingleResult'), { status: 'stored', event_id: exampleMetric.event_id }),
            },
            '202': { description: 'buffered (wait=false)', content: json(ref('SingleResult'), { status: 'queued' }) },
            ...errors(400, 413, 415, 422, ...V1),
          },
        },
      },
      '/v1/metrics/bulk': {
        post: {
          tags: ['metrics'],
          operationId: 'postMetricsBulk',
          summary: 'Store many metrics from an NDJSON body (optionally gzip)',
          parameters: [
            waitParameter,
            {
              name: 'Content-Encoding',
              in: 'header',
              required: false,
              description: 'gzip to send the NDJSON compressed',
              schema: { type: 'string', enum: ['gzip', 'x-gzip', 'identity'] },
            },
          ],
          requestBody: {
            required: true,
            // The example is in the description: Swagger UI takes any "json" media type for JSON and
            // would show (and send) an example string as a quoted JSON string.
            description: `${NDJSON_DESCRIPTION}\n\nFor example:\n\n\`\`\`\n${NDJSON_EXAMPLE}\`\`\``,
            content: {
              'application/x-ndjson': {
                schema: { type: 'string', description: NDJSON_DESCRIPTION, 'x-ndjson-line': ref('Metric') },
              },
            },
          },
          responses: {
            '200': {
              description: 'every valid line committed; refused lines listed',
              content: json(ref('BulkResult'), {
                accepted: 990,
                rejected: 10,
                errors: [
                  {
                    line: 100,
                    error: 'validation_failed',
                    details: [{ path: '/talked_time', message: 'is required' }],
                  },
                ],
              }),
            },
            '202': { description: 'every valid line buffered (wait=false)', content: json(ref('BulkResult')) },
            ...bulkErrors(400, 408, 413, 415, ...V1),
          },
        },
      },
      '/v1/users': {
        post: {
          tags: ['users'],
          operationId: 'createUser',
          summary: 'Register a user',
          requestBody: { required: true, content: json(ref('NewUser'), { name: 'Ada Lovelace', age: 36 }) },
          responses: {
            '201': { description: 'the stored user', content: json(ref('User')) },
            ...errors(400, 413, 415, ...V1),
          },
        },
      },
      '/v1/users/{id}': {
        get: {
          tags: ['users'],
          operationId: 'getUser',
          summary: 'Read a user',
          parameters: [userIdParameter],
          responses: { '200': { description: 'the user', content: json(ref('User')) }, ...errors(400, 404, ...V1) },
        },
      },
      '/v1/users/{id}/metrics': {
        get: {
          tags: ['users'],
          operationId: 'listUserMetrics',
          summary: "A user's stored metrics, newest first, a page at a time",
          description:
            'Keyset pagination on (time_recorded, id), newest first: follow `next_cursor` until it is null. ' +
            'A row stored meanwhile with an older time_recorded than the page reached is not shown.',
          parameters: [userIdParameter, ...queryParameters(userMetricsQuerySchema)],
          responses: {
            '200': { description: 'one page', content: json(ref('MetricsPage')) },
            ...errors(400, 404, ...V1),
          },
        },
      },
      '/v1/users/{id}/summary': {
        get: {
          tags: ['users'],
          operationId: 'summarizeUserMetrics',
          summary: "Aggregates of a user's stored metrics in a time range",
          parameters: [userIdParameter, ...queryParameters(userSummaryQuerySchema)],
          responses: {
            '200': { description: 'the summary', content: json(ref('MetricsSummary')) },
            ...errors(400, 404, ...V1),
          },
        },
      },
      '/v1/devices': {
        post: {
          tags: ['devices'],
          operationId: 'createDevice',
          summary: 'Register a device',
          requestBody: {
            required: true,
            content: json(ref('NewDevice'), { id: 'id847-gj-335-Vow6DhCP6', type: 'Android 8.1', name: 'vivo V11i' }),
          },
          responses: {
            '201': { description: 'the stored device', content: json(ref('Device')) },
            ...errors(400, 409, 413, 415, ...V1),
          },
        },
      },
      '/v1/devices/{id}': {
        get: {
          tags: ['devices'],
          operationId: 'getDevice',
          summary: 'Read a device',
          parameters: [deviceIdParameter],
          responses: { '200': { description: 'the device', content: json(ref('Device')) }, ...errors(404, ...V1) },
        },
      },
      '/healthz': {
        get: {
          ...publicOperation,
          tags: ['operations'],
          operationId: 'health',
          summary: 'Liveness: 200 while the process is up',
          responses: { '200': { description: 'up', content: json(statusSchema('ok')) }, ...errors() },
        },
      },
      '/readyz': {
        get: {
          ...publicOperation,
          tags: ['operations'],
          operationId: 'ready',
          summary: 'Readiness: PostgreSQL answers and the migrations are applied',
          responses: { '200': { description: 'ready', content: json(statusSchema('ready')) }, ...errors(503) },
        },
      },
      '/metrics': {
        get: {
          ...publicOperation,
          tags: ['operations'],
          operationId: 'prometheusMetrics',
          summary: 'Prometheus metrics in the text exposition format',
          responses: {
            '200': {
              description: 'rows accepted, rejected and flushed, batch sizes, flush latency, buffer depth, and more',
              content: { 'text/plain; version=0.0.4': { schema: { type: 'string' } } },
            },
            ...errors(),
          },
        },
      },
      '/openapi.json': {
        get: {
          ...publicOperation,
          tags: ['operations'],
          operationId: 'openApiDocument',
          summary: 'This document',
          responses: {
            '200': { description: 'OpenAPI 3.1', content: json({ type: 'object' }) },
            ...errors(),
          },
        },
      },
      '/': {
        get: {
          ...publicOperation,
          tags: ['operations'],
          operationId: 'statusPage',
          summary: 'A live status page: ingest rate, buffer, flush latency, rejections (reads /v1/stats)',
          responses: {
            '200': { description: 'the page', content: { 'text/html': { schema: { type: 'string' } } } },
            ...errors(),
          },
        },
      },
      '/v1/stats': {
        get: {
          tags: ['operations'],
          operationId: 'stats',
          summary: 'What the status page shows, as JSON',
          description:
            'Open like `/metrics`: with `AUTH_REQUIRED=true` and `METRICS_AUTH_REQUIRED=true` it needs a key of any scope. ' +
            'With `AUTH_REQUIRED=true`, the recent rejections carry their messages only for an admin key.',
          responses: {
            '200': { description: 'the figures', content: json(ref('Stats')) },
            ...errors(401, 429),
          },
        },
      },
      '/docs': {
        get: {
          ...publicOperation,
          tags: ['operations'],
          operationId: 'docsPage',
          summary: 'An interactive page for this document (Swagger UI, served locally)',
          responses: {
            '200': { description: 'the page', content: { 'text/html': { schema: { type: 'string' } } } },
            ...errors(),
          },
        },
      },
    },
    components: {
      schemas: {
        Metric: toOpenApiSchema(metricSchema),
        NewUser: toOpenApiSchema(newUserSchema),
        NewDevice: toOpenApiSchema(newDeviceSchema),
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
      },
      responses,
      headers: {
        RetryAfter: {
          description: 'seconds to wait before trying again',
          schema: { type: 'integer', minimum: 1 },
        },
      },
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description: 'An API key as `Authorization: Bearer KEY`; optional while AUTH_REQUIRED=false.',
        },
      },
    },
  };
}
