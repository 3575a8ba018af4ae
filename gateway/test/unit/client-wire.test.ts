import * as wire from '../../../client/src/wire';
import {
  bulkProgressSchema,
  bulkResultSchema,
  errorDetailSchema,
  errorSchema,
  lineErrorSchema,
  metricSchema,
  type BulkProgress,
  type ErrorBody,
  type LineError,
  type Metric,
} from '../../src/contract/schemas';

// The client package keeps its own copy of the wire types (client/src/wire.ts: it cannot import the
// server). Here they are held to the contract, so that a field added, renamed or dropped on one side
// fails this test (and `npm run typecheck`, by the type checks below).

const sorted = (names: Iterable<string>): string[] => [...names].sort();

type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false;
const metricKeys: SameKeys<wire.Metric, Metric> = true;
const answerKeys: SameKeys<wire.BulkAnswerBody, ErrorBody & BulkProgress> = true;
const lineErrorKeys: SameKeys<wire.LineError, LineError> = true;

it('names the fields of a metric as the contract does', () => {
  expect(metricKeys).toBe(true);
  expect(sorted(wire.METRIC_FIELDS)).toEqual(sorted(Object.keys(metricSchema.properties)));
});

it('names the fields of a bulk answer (success, error, part-way) as the contract does', () => {
  expect(answerKeys).toBe(true);
  const contract = new Set([
    ...Object.keys(bulkResultSchema.properties),
    ...Object.keys(bulkProgressSchema.properties),
    ...Object.keys(errorSchema.properties),
  ]);
  expect(sorted(wire.BULK_ANSWER_FIELDS)).toEqual(sorted(contract));
});

it('names the fields of a line error and of a detail as the contract does', () => {
  expect(lineErrorKeys).toBe(true);
  expect(sorted(wire.LINE_ERROR_FIELDS)).toEqual(sorted(Object.keys(lineErrorSchema.properties)));
  expect(sorted(wire.DETAIL_FIELDS)).toEqual(sorted(Object.keys(errorDetailSchema.properties)));
});
