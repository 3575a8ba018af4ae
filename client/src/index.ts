export {
  MetricsClient,
  type ClientEvents,
  type ClientOptions,
  type ClientTotals,
  type DropReason,
  type RefusedRow,
} from './client';
export {
  GZIP_OPTIONS,
  backoffMs,
  bulkUrl,
  isBlank,
  restOfPart,
  retryAfterMs,
  sendBulk,
  type BulkPart,
  type Failure,
  type RejectRecord,
  type Retry,
  type SendOptions,
  type SendOutcome,
} from './transport';
export { uuidv7 } from './uuidv7';
export type { BulkAnswerBody, Detail, LineError, Metric } from './wire';
