// What the gateway's bulk route takes and answers, as this client sees it. The client cannot import
// the server's contract (gateway/src/contract/schemas.ts); gateway/test/unit/client-wire.test.ts
// holds these names to it, so that the two cannot drift apart.

/** One metric, as the gateway takes it (a line of a bulk upload). */
export interface Metric {
  readonly user_id: number;
  readonly device_id?: string | null;
  /** Seconds of recording. */
  readonly talked_time: number;
  readonly microphone_used: boolean;
  readonly speaker_used: boolean;
  readonly voice_sentiment?: number | null;
  /** RFC 3339 with an offset or `Z`, or epoch milliseconds. */
  readonly time_recorded: string | number;
  /** Idempotency key; the client adds a UUIDv7 when there is none. */
  readonly event_id?: string;
}

/** Every field of a metric. */
export const METRIC_FIELDS = [
  'user_id',
  'device_id',
  'talked_time',
  'microphone_used',
  'speaker_used',
  'voice_sentiment',
  'time_recorded',
  'event_id',
] as const satisfies readonly (keyof Metric)[];

/** A problem with a line or a request, as the gateway reports it. */
export interface Detail {
  readonly path?: string;
  readonly message: string;
}

/** A refused line of a bulk request. */
export interface LineError {
  /** The request's line, counting from 1. */
  readonly line: number;
  readonly error: string;
  readonly details: readonly Detail[];
}

/**
 * A bulk answer's fields, on success (`accepted`, `rejected`, `errors`) and on an error answer that
 * stopped the request part-way (`error`, `message`, `details` and how far it got: `pending`,
 * `resend_from_line`). Values are not trusted: a proxy or an older gateway may answer.
 */
export interface BulkAnswerBody {
  readonly error?: unknown;
  readonly message?: unknown;
  readonly details?: unknown;
  readonly accepted?: unknown;
  readonly rejected?: unknown;
  readonly errors?: unknown;
  readonly errors_omitted?: unknown;
  readonly pending?: unknown;
  readonly resend_from_line?: unknown;
}

/** Every field a bulk answer may have. */
export const BULK_ANSWER_FIELDS = [
  'error',
  'message',
  'details',
  'accepted',
  'rejected',
  'errors',
  'errors_omitted',
  'pending',
  'resend_from_line',
] as const satisfies readonly (keyof BulkAnswerBody)[];

/** Fields of a line error and of a detail. */
export const LINE_ERROR_FIELDS = ['line', 'error', 'details'] as const satisfies readonly (keyof LineError)[];
export const DETAIL_FIELDS = ['path', 'message'] as const satisfies readonly (keyof Detail)[];
