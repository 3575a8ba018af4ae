import Ajv2020, { type ErrorObject } from 'ajv/dist/2020';
import type { Request } from 'express';
import { AppError, type ErrorDetail } from '../errors';
import { parseRfc3339 } from '../ingest/time';
import { decodePageCursor, type PageCursor } from './page-cursor';

const PAGE_LIMIT_DEFAULT = 100;
const PAGE_LIMIT_MAX = 1000;

const from = {
  type: 'string',
  format: 'rfc3339-instant',
  description: 'only rows with time_recorded at or after this instant (RFC 3339 with Z or an offset)',
} as const;
const to = {
  type: 'string',
  format: 'rfc3339-instant',
  description: 'only rows with time_recorded before this instant (RFC 3339 with Z or an offset)',
} as const;

/**
 * The query parameters of the read endpoints, as JSON Schemas: requests are validated with them, and
 * the OpenAPI document lists them.
 */
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

export interface TimeRange {
  /** Inclusive lower bound, RFC 3339. */
  readonly from?: string;
  /** Exclusive upper bound, RFC 3339. */
  readonly to?: string;
}

export interface UserMetricsQuery extends TimeRange {
  readonly limit: number;
  readonly after?: PageCursor;
}

// Query strings are text: this instance turns "100" into 100 before checking that it is an integer.
const ajv = new Ajv2020({ allErrors: true, strict: true, coerceTypes: true, useDefaults: true });
ajv.addFormat('rfc3339-instant', { type: 'string', validate: (text: string) => parseRfc3339(text) !== undefined });
const compiledMetricsQuery = ajv.compile<{ from?: string; to?: string; limit: number; cursor?: string }>(
  userMetricsQuerySchema,
);
const compiledSummaryQuery = ajv.compile<TimeRange>(userSummaryQuerySchema);

function describe(error: ErrorObject): ErrorDetail {
  if (error.keyword === 'additionalProperties') {
    return { path: `/query/${String(error.params.additionalProperty)}`, message: 'is not a known parameter' };
  }
  if (error.keyword === 'format') {
    return { path: `/query${error.instancePath}`, message: 'must be an RFC 3339 timestamp with Z or an offset' };
  }
  return { path: `/query${error.instancePath}`, message: error.message ?? 'is invalid' };
}

function invalid(details: ErrorDetail[]): AppError {
  return new AppError('validation_failed', 'the query parameters are not valid', details);
}

/** A copy of the query: ajv coerces and fills in defaults in place, and req.query is Express's own. */
function queryOf(req: Request): Record<string, unknown> {
  return { ...(req.query as Record<string, unknown>) };
}

/** The bounds as PostgreSQL reads them (upper-case T and Z); refuses from after to. */
function checkedRange(query: TimeRange): TimeRange {
  const range = { from: query.from?.toUpperCase(), to: query.to?.toUpperCase() };
  if (range.from !== undefined && range.to !== undefined) {
    if ((parseRfc3339(range.from) as number) > (parseRfc3339(range.to) as number)) {
      throw invalid([{ path: '/query/from', message: 'must not be after to' }]);
    }
  }
  return range;
}

export function userMetricsQuery(req: Request): UserMetricsQuery {
  const query = queryOf(req);
  if (!compiledMetricsQuery(query)) throw invalid((compiledMetricsQuery.errors ?? []).map(describe));
  const range = checkedRange(query);
  let after: PageCursor | undefined;
  if (query.cursor !== undefined) {
    after = decodePageCursor(query.cursor);
    if (after === undefined) throw invalid([{ path: '/query/cursor', message: 'is not a cursor from this API' }]);
  }
  return { ...range, limit: query.limit, after };
}

export function userSummaryQuery(req: Request): TimeRange {
  const query = queryOf(req);
  if (!compiledSummaryQuery(query)) throw invalid((compiledSummaryQuery.errors ?? []).map(describe));
  return checkedRange(query);
}
