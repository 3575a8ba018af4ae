import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { AppError, codesWithStatus, coerceError, type ErrorCode } from '../contract/errors';
import { isDatabaseUnavailable } from '../db/sqlstate';
import { ReferencesUnchecked } from '../ingest/references';

/** body-parser's error types and the contract codes they mean. */
const BODY_PARSER_ERRORS: Readonly<Record<string, ErrorCode>> = {
  'entity.too.large': 'payload_too_large',
  'entity.parse.failed': 'invalid_json',
  'entity.verify.failed': 'invalid_json',
  'encoding.unsupported': 'unsupported_media_type',
  'charset.unsupported': 'unsupported_media_type',
  'request.aborted': 'invalid_json',
  'request.size.invalid': 'invalid_json',
};

export function toAppError(thrown: unknown): AppError {
  if (thrown instanceof AppError) return thrown;
  const type = (thrown as { type?: unknown } | null)?.type;
  if (typeof type === 'string' && BODY_PARSER_ERRORS[type] !== undefined) {
    const code = BODY_PARSER_ERRORS[type];
    return new AppError(
      code,
      code === 'invalid_json' ? `the body is not valid JSON: ${(thrown as Error).message}` : undefined,
    );
  }
  if (thrown instanceof ReferencesUnchecked) {
    return new AppError('unavailable', `${thrown.message}; retry later`, { cause: thrown });
  }
  if (isDatabaseUnavailable(thrown)) {
    return new AppError('unavailable', undefined, { cause: thrown });
  }
  return clientError(thrown) ?? coerceError(thrown);
}

/**
 * A refusal of the request itself, which is a 4xx, never a 500: Node's parser failing on a body, or a
 * library's error with a 4xx status in the http-errors way: the router's URIError for a path
 * parameter that is not valid percent-encoding (/v1/users/%ff), body-parser's wrapping of a zlib
 * error for a body that is not what its Content-Encoding says.
 */
function clientError(thrown: unknown): AppError | undefined {
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  const code = (thrown as { code?: unknown } | null)?.code;
  // Node's HTTP parser, failing on the body after the request was handed over (a bad chunk size, an
  // invalid Transfer-Encoding): Node closes the connection, so this answer is for the log only.
  if (typeof code === 'string' && code.startsWith('HPE_')) {
    return new AppError('invalid_json', `the request body could not be read: ${message}`);
  }
  const status = (thrown as { status?: unknown } | null)?.status;
  if (typeof status !== 'number' || status < 400 || status > 499) return undefined;
  if (thrown instanceof URIError) {
    return new AppError('validation_failed', 'the path is not valid percent-encoded UTF-8', {
      details: [{ path: '/params', message }],
    });
  }
  if (status === 400) return new AppError('invalid_json', `the body could not be decoded: ${message}`);
  return new AppError(codesWithStatus(status)[0] ?? 'validation_failed', message);
}

export function sendError(res: Response, error: AppError): void {
  if (error.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(error.retryAfterSeconds));
  res.status(error.status).json(error.toJSON());
}

/** Maps every error to the contract's JSON body; only unexpected ones are logged as errors. */
export const errorHandler: ErrorRequestHandler = (thrown, req, res, next) => {
  const error = toAppError(thrown);
  if (res.headersSent) {
    // Already answered in full, by the request deadline (request-deadline.ts): this is the late end of its work.
    if (res.writableEnded) {
      req.log.warn({ err: error.cause ?? thrown, code: error.code }, 'request finished after its deadline answer');
      return;
    }
    next(thrown);
    return;
  }
  if (error.status >= 500) {
    req.log.error({ err: error.cause ?? thrown, code: error.code }, 'request failed');
  }
  // Answered before the body was read to its end (a limit, a stall): the rest is not read either, so
  // the connection cannot carry another request.
  if (!req.complete) res.setHeader('Connection', 'close');
  sendError(res, error);
};

export const notFoundHandler: RequestHandler = (req) => {
  throw new AppError('not_found', `no route for ${req.method} ${req.path}`);
};
