import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ERROR_CODES, codesWithStatus } from '../contract/errors';
import * as contract from '../contract/schemas';
import { COMPONENTS as SCHEMAS } from '../contract/schemas';
import { DEMO_DEVICES } from '../db/demo-data';
import { PROJECT_ROOT } from '../paths';
import { ROUTES, type Route } from './routes';

// The OpenAPI 3.1 document of the API, assembled from the route table (routes.ts) and the contract's
// schemas (contract/schemas.ts), translated where OpenAPI's dialect of JSON Schema 2020-12 does not
// know a keyword; the error responses come from the registry (contract/errors.ts).

type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** A route's entry in the document: its answers by status, as [description, component or media type]. */
export interface Operation {
  readonly tag?: 'metrics' | 'users' | 'devices';
  readonly summary: string;
  readonly description?: string;
  readonly params?: keyof typeof PATH_PARAMETERS;
  readonly query?: keyof typeof QUERIES;
  readonly ok: Readonly<Record<number, readonly [string, string]>>;
  /** Error statuses besides 500 (`default`). */
  readonly errors?: readonly number[];
  /** Error answers that may also say how far a bulk upload got. */
  readonly bulkErrors?: readonly number[];
}

const QUERIES = {
  wait: contract.waitQuerySchema,
  userMetrics: contract.userMetricsQuerySchema,
  userSummary: contract.userSummaryQuerySchema,
} as const;
const PATH_PARAMETERS = { userId: contract.userIdSchema, deviceId: contract.deviceIdSchema } as const;

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
const COMPONENT_OF = new Map<unknown, string>(Object.entries(SCHEMAS).map(([name, schema]) => [schema, name]));

const ref = (name: string): JsonObject => ({ $ref: `#/components/schemas/${name}` });
/** A nested schema: a reference when it is a component, else translated. */
const sub = (schema: Json): JsonObject => {
  const name = COMPONENT_OF.get(schema);
  return name === undefined ? toOpenApiSchema(schema) : ref(name);
};

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
      out[key] = sub(value);
    } else if (SUBSCHEMA_MAPS.has(key)) {
      out[key] = Object.fromEntries(Object.entries(value as Record<string, Json>).map(([n, s]) => [n, sub(s)]));
    } else if (SUBSCHEMA_LISTS.has(key)) {
      out[key] = (value as readonly Json[]).map(sub);
    } else if (key === 'format' && typeof value === 'string' && CUSTOM_FORMATS[value] !== undefined) {
      out.format = CUSTOM_FORMATS[value].format;
      notes.push(CUSTOM_FORMATS[value].note);
    } else {
      out[key] = structuredClone(value) as Json;
      const note = CUSTOM_KEYWORD_NOTES[key];
      if (note !== undefined && value !== false) notes.push(note);
    }
  }
  for (const note of notes) {
    const description = typeof out.description === 'string' ? out.description : '';
    out.description = description === '' ? note : `${description}. ${note}`;
  }
  return out;
}

/** Parameters in `where` from the JSON Schema of an object of them. */
function parameters(where: 'query' | 'path', objectSchema: Json): JsonObject[] {
  const { properties = {}, required = [] } = toOpenApiSchema(objectSchema) as {
    properties?: Record<string, JsonObject>;
    required?: string[];
  };
  return Object.entries(properties).map(([name, { description, ...schema }]) => ({
    name,
    in: where,
    required: where === 'path' || required.includes(name),
    ...(description === undefined ? {} : { description }),
    schema,
  }));
}

const json = (schema: JsonObject, example?: Json): JsonObject => ({
  'application/json': example === undefined ? { schema } : { schema, example },
});

// ---- Error responses, by status, from the registry ----

/** What a status means, beside the codes the registry lists for it. */
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

function errorResponse(status: number): JsonObject {
  const codes = codesWithStatus(status);
  const listed = codes.map((code) => `\`${code}\`: ${ERROR_CODES[code].message}`).join('; ');
  const description = [STATUS_NOTES[status] ?? 'An error.', listed === '' ? '' : `Codes: ${listed}.`].join(' ');
  const retries = codes.some((code) => 'retryAfterSeconds' in ERROR_CODES[code]);
  return {
    description: description.trim(),
    ...(retries ? { headers: { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } } } : {}),
    content: json(
      codes.length === 0 ? ref('Error') : { allOf: [ref('Error')], properties: { error: { enum: codes } } },
    ),
  };
}

// ---- Examples ----

const exampleMetric = {
  user_id: 1,
  device_id: DEMO_DEVICES[0]?.id ?? null, // seeded by SEED_DEMO_DATA: "Try it out" works on `npm start`
  talked_time: 42.5,
  microphone_used: true,
  speaker_used: false,
  voice_sentiment: 0.4,
  time_recorded: '2026-11-29T18:20:00+01:00',
  event_id: '0f8fad5b-d9cb-469f-a165-70867728950e',
};
const REQUEST_EXAMPLES: Readonly<Record<string, Json>> = {
  Metric: exampleMetric,
  NewUser: { name: 'Ada Lovelace', age: 36 },
  NewDevice: { id: 'id847-gj-335-Vow6DhCP6', type: 'Android 8.1', name: 'vivo V11i' },
};
const RESPONSE_EXAMPLES: Readonly<Record<string, Json>> = {
  'postMetric 201': { status: 'stored', event_id: exampleMetric.event_id },
  'postMetric 202': { status: 'queued' },
  'postMetricsBulk 200': {
    accepted: 990,
    rejected: 10,
    errors: [{ line: 100, error: 'validation_failed', details: [{ path: '/talked_time', message: 'is required' }] }],
  },
};
const NDJSON_EXAMPLE = [exampleMetric, { ...exampleMetric, event_id: undefined, talked_time: 3 }]
  .map((line) => `${JSON.stringify(line)}\n`)
  .join('');
const NDJSON_DESCRIPTION =
  'NDJSON: one `Metric` object (see the schema) per line, LF or CRLF; blank lines are skipped but counted. ' +
  'The body is read as it arrives, so it may be of any size; each line is at most `BULK_MAX_LINE_BYTES`. ' +
  'Valid lines are stored even when others are refused.';
const NDJSON_BODY: JsonObject = {
  required: true,
  // The example is in the description: Swagger UI takes any "json" media type for JSON and would
  // show (and send) an example string as a quoted JSON string.
  description: `${NDJSON_DESCRIPTION}\n\nFor example:\n\n\`\`\`\n${NDJSON_EXAMPLE}\`\`\``,
  content: {
    'application/x-ndjson': {
      schema: { type: 'string', description: NDJSON_DESCRIPTION, 'x-ndjson-line': ref('Metric') },
    },
  },
};
const CONTENT_ENCODING: JsonObject = {
  name: 'Content-Encoding',
  in: 'header',
  required: false,
  description: 'gzip to send the NDJSON compressed',
  schema: { type: 'string', enum: ['gzip', 'x-gzip', 'identity'] },
};

// ---- Operations, from the route table ----

function content(name: string, example?: Json): JsonObject {
  if (name.includes('/')) return { [name]: { schema: { type: 'string' } } };
  return json(SCHEMAS[name] !== undefined ? ref(name) : { type: name }, example);
}

function operation(name: string, doc: Route & Operation): JsonObject {
  const responses: JsonObject = {};
  for (const [status, [description, answer]] of Object.entries(doc.ok)) {
    responses[status] = { description, content: content(answer, RESPONSE_EXAMPLES[`${name} ${status}`]) };
  }
  for (const status of doc.errors ?? []) responses[String(status)] = { $ref: `#/components/responses/Error${status}` };
  responses.default = { $ref: '#/components/responses/Error500' };
  for (const status of doc.bulkErrors ?? []) {
    const response = errorResponse(status);
    const errorSchema = ((response.content as JsonObject)['application/json'] as JsonObject).schema as JsonObject;
    responses[String(status)] = { ...response, content: json({ allOf: [errorSchema, ref('BulkProgress')] }) };
  }
  const params = [
    ...(doc.params === undefined ? [] : parameters('path', { properties: { id: PATH_PARAMETERS[doc.params] } })),
    ...(doc.query === undefined ? [] : parameters('query', QUERIES[doc.query])),
    ...(doc.body?.type === 'ndjson' ? [CONTENT_ENCODING] : []),
  ];
  const open = doc.scope !== 'ingest' && doc.scope !== 'admin' && doc.keyOptional !== true;
  return {
    ...(open ? { security: [] } : {}),
    tags: [doc.tag ?? 'operations'],
    operationId: name,
    summary: doc.summary,
    ...(doc.description === undefined ? {} : { description: doc.description }),
    ...(params.length === 0 ? {} : { parameters: params }),
    ...(doc.body === undefined
      ? {}
      : {
          requestBody:
            doc.body.type === 'ndjson'
              ? NDJSON_BODY
              : { required: true, content: json(ref(doc.body.schema), REQUEST_EXAMPLES[doc.body.schema]) },
        }),
    responses,
  };
}

function packageVersion(): string {
  const { version } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  return version;
}

/** Builds the document; it depends only on code, so callers build it once. */
export function buildOpenApiDocument(): JsonObject {
  const paths: Record<string, JsonObject> = {};
  for (const [name, route] of Object.entries(ROUTES) as [string, Route][]) {
    if (route.summary === undefined) continue;
    // Express's /docs/ is /docs (strict routing is off); :id is OpenAPI's {id}.
    const routePath = ([route.path].flat()[0] as string).replace(/:(\w+)/g, '{$1}').replace(/(.)\/$/, '$1');
    paths[routePath] = { ...paths[routePath], [route.method]: operation(name, route as Route & Operation) };
  }
  const statuses = new Set([
    ...Object.keys(STATUS_NOTES).map(Number),
    ...Object.values(ERROR_CODES).map((c) => c.status),
  ]);
  const responses = Object.fromEntries(
    [...statuses].sort((a, b) => a - b).map((status) => [`Error${status}`, errorResponse(status)]),
  );
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
    paths,
    components: {
      schemas: Object.fromEntries(
        Object.entries(SCHEMAS).map(([name, schema]) => [name, toOpenApiSchema(schema as Json)]),
      ),
      responses,
      headers: {
        RetryAfter: { description: 'seconds to wait before trying again', schema: { type: 'integer', minimum: 1 } },
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
