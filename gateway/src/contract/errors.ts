/**
 * One registry of the contract's error codes: HTTP status, default message, and the Retry-After
 * (seconds) that answers with the code carry unless the call site knows better (a rate limit's wait).
 */
export const ERROR_CODES = {
  validation_failed: { status: 400, message: 'the request does not match the schema' },
  invalid_json: { status: 400, message: 'the body is not valid JSON' },
  unauthorized: { status: 401, message: 'a valid API key is required: send Authorization: Bearer <key>' },
  forbidden: { status: 403, message: 'this API key may not do this' },
  not_found: { status: 404, message: 'no such resource' },
  request_timeout: { status: 408, message: 'the request body stopped arriving' },
  already_exists: { status: 409, message: 'a resource with this id already exists' },
  payload_too_large: { status: 413, message: 'the body is too large' },
  unsupported_media_type: { status: 415, message: 'unsupported Content-Type or Content-Encoding' },
  unknown_reference: { status: 422, message: 'the user or device does not exist' },
  overloaded: { status: 429, message: 'the buffer is full; retry later', retryAfterSeconds: 1 },
  internal_error: { status: 500, message: 'internal error' },
  unavailable: { status: 503, message: 'the database is unavailable; retry later', retryAfterSeconds: 5 },
} as const satisfies Record<string, { status: number; message: string; retryAfterSeconds?: number }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The codes answered with `status`, in the registry's order. */
export function codesWithStatus(status: number): ErrorCode[] {
  return (Object.keys(ERROR_CODES) as ErrorCode[]).filter((code) => ERROR_CODES[code].status === status);
}

/** One problem with a request, pointing into it with a JSON pointer. */
export interface ErrorDetail {
  readonly path: string;
  readonly message: string;
  readonly [key: string]: unknown;
}

export interface AppErrorOptions {
  readonly details?: readonly ErrorDetail[];
  /** Seconds, sent as Retry-After; the code's own (ERROR_CODES) when not given. */
  readonly retryAfterSeconds?: number;
  readonly cause?: unknown;
}

export class AppError extends Error {
  readonly status: number;
  readonly details: readonly ErrorDetail[];
  readonly retryAfterSeconds?: number;

  constructor(
    readonly code: ErrorCode,
    message: string = ERROR_CODES[code].message,
    { details = [], retryAfterSeconds, cause }: AppErrorOptions = {},
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'AppError';
    const registered: { status: number; retryAfterSeconds?: number } = ERROR_CODES[code];
    this.status = registered.status;
    this.details = details;
    this.retryAfterSeconds = retryAfterSeconds ?? registered.retryAfterSeconds;
  }

  toJSON(): { error: ErrorCode; message: string; details: readonly ErrorDetail[] } {
    return { error: this.code, message: this.message, details: this.details };
  }
}

/** Turns anything thrown into an AppError; unknown failures become internal_error, keeping the cause. */
export function coerceError(thrown: unknown): AppError {
  if (thrown instanceof AppError) return thrown;
  return new AppError('internal_error', undefined, { cause: thrown });
}
