import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020';
import type { Request } from 'express';
import { AppError, type ErrorDetail } from '../contract/errors';
import { ajv } from '../contract/json-schema';
import { userMetricsQuerySchema, userSummaryQuerySchema } from '../contract/schemas';
import { parseRfc3339 } from '../ingest/time';
import { decodePageCursor, type PageCursor } from './page-cursor';

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

const compiledMetricsQuery = ajv.compile<{ from?: string; to?: string; limit: number; cursor?: string }>(
  userMetricsQuerySchema,
);
const compiledSummaryQuery = ajv.compile<TimeRange>(userSummaryQuerySchema);

function describe(error: ErrorObject): ErrorDetail {
  if (error.keyword === 'additionalProperties') {
    return { path: `/query/${String(error.params.additionalProperty)}`, message: 'is not a known parameter' };
  }
  if (error.keyword === 'format') {
    return { path: `/query${error.instancePath}`, message: FORMAT_MESSAGE };
  }
  return { path: `/query${error.instancePath}`, message: error.message ?? 'is invalid' };
}

function invalid(details: ErrorDetail[]): AppError {
  return new AppError('validation_failed', 'the query parameters are not valid', { details });
}

type QuerySchema = {
  readonly properties: Readonly<Record<string, { readonly type: string; readonly default?: unknown }>>;
};

/**
 * A copy of the query (req.query is Express's own) as its schema reads it: query strings are text,
 * so "100" becomes 100 where an integer is wanted, and a missing parameter takes its default.
 */
function queryOf(req: Request, schema: QuerySchema): Record<string, unknown> {
  const query: Record<string, unknown> = { ...(req.query as Record<string, unknown>) };
  for (const [name, property] of Object.entries(schema.properties)) {
    const value = query[name];
    if (value === undefined && property.default !== undefined) query[name] = property.default;
    else if (property.type === 'integer' && typeof value === 'string' && value !== '' && !Number.isNaN(Number(value))) {
      query[name] = Number(value);
    }
  }
  return query;
}

const FORMAT_MESSAGE = 'must be an RFC 3339 timestamp with Z or an offset';

/** Refuses a query that its schema refuses, or whose bounds are not real calendar instants. */
function check<T extends TimeRange>(validate: ValidateFunction<T>, query: Record<string, unknown>): T {
  // The schema's format checks the form of from and to only.
  const calendar = (['from', 'to'] as const)
    .filter((name) => typeof query[name] === 'string' && parseRfc3339(query[name]) === undefined)
    .map((name) => ({ path: `/query/${name}`, message: FORMAT_MESSAGE }));
  const valid = validate(query);
  const formErrors = valid ? [] : (validate.errors ?? []).map(describe);
  const details = [...calendar.filter((c) => !formErrors.some((f) => f.path === c.path)), ...formErrors];
  if (!valid || details.length > 0) throw invalid(details);
  return query as T;
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
  const query = check(compiledMetricsQuery, queryOf(req, userMetricsQuerySchema));
  const range = checkedRange(query);
  let after: PageCursor | undefined;
  if (query.cursor !== undefined) {
    after = decodePageCursor(query.cursor);
    if (after === undefined) throw invalid([{ path: '/query/cursor', message: 'is not a cursor from this API' }]);
  }
  return { ...range, limit: query.limit, after };
}

export function userSummaryQuery(req: Request): TimeRange {
  return checkedRange(check(compiledSummaryQuery, queryOf(req, userSummaryQuerySchema)));
}
