export {
  MetricsClient,
  type ClientEvents,
  type ClientOptions,
  type ClientTotals,
  type DropReason,
  type RefusedRow,
} from './client';
export {
  backoffMs,
  bulkUrl,
  retryAfterMs,
  sendBulk,
  type BulkPart,
  type Failure,
  type RejectRecord,
  type RestOfPart,
  type Retry,
  type SendOptions,
  type SendOutcome,
} from './transport';
export { uuidv7 } from './uuidv7';
export type { BulkAnswerBody, Detail, LineError, Metric } from './wire';
