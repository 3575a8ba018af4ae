import type { QueryConfig } from 'pg';
import type { Queryable } from './pool';

/** An instant as RFC 3339 in UTC with microseconds, PostgreSQL's own precision, for any TimeZone setting. */
const utcText = (column: string): string => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** One stored metric, as the read endpoints answer it. */
export interface StoredMetric {
  /** bigint, as decimal text so that no JSON parser rounds it. */
  readonly id: string;
  readonly user_id: number;
  readonly device_id: string | null;
  readonly talked_time: number;
  readonly microphone_used: boolean;
  readonly speaker_used: boolean;
  readonly voice_sentiment: number | null;
  readonly time_recorded: string;
  readonly event_id: string | null;
  readonly received_at: string;
}

export interface MetricsPageRequest {
  readonly userId: number;
  /** time_recorded >= from (RFC 3339). */
  readonly from?: string;
  /** time_recorded < to (RFC 3339). */
  readonly to?: string;
  /** Rows strictly after this one in the order (time_recorded desc, id desc): the last row of the previous page. */
  readonly after?: { readonly timeRecorded: string; readonly id: string };
  readonly limit: number;
}

/**
 * The page query: newest first by (time_recorded, id). ORDER BY names the table's columns, not the
 * output columns of the same names (text, which would sort differently). It reads the (user_id, time_recorded) index
 * backwards and stops after `limit` rows; rows with equal time_recorded are ordered by id on the way
 * (an incremental sort), so the keyset is a total order and no row is skipped or repeated across pages.
 */
export function metricsPageQuery(request: MetricsPageRequest): QueryConfig {
  const values: unknown[] = [request.userId];
  const where = ['user_id = $1'];
  const param = (value: unknown): string => `$${values.push(value)}`;
  if (request.from !== undefined) where.push(`time_recorded >= ${param(request.from)}::timestamptz`);
  if (request.to !== undefined) where.push(`time_recorded < ${param(request.to)}::timestamptz`);
  if (request.after !== undefined) {
    // Spelled out rather than (time_recorded, id) < (t, i), so that the index bound is plain to see.
    const time = param(request.after.timeRecorded);
    const id = param(request.after.id);
    where.push(`time_recorded <= ${time}::timestamptz`);
    where.push(`(time_recorded < ${time}::timestamptz OR id < ${id}::bigint)`);
  }
  return {
    text: `SELECT id::text AS id, user_id, device_id, talked_time, microphone_used, speaker_used, voice_sentiment,
                  ${utcText('time_recorded')} AS time_recorded, event_id, ${utcText('received_at')} AS received_at
             FROM user_metrics AS m
            WHERE ${where.join(' AND ')}
            ORDER BY m.time_recorded DESC, m.id DESC
            LIMIT ${param(request.limit)}`,
    values,
  };
}

/** Up to `limit` rows of the user, newest first; `userExists` is false for a user that does not exist. */
export async function readMetricsPage(
  db: Queryable,
  request: MetricsPageRequest,
): Promise<{ rows: StoredMetric[]; userExists: boolean }> {
  const { rows } = await db.query<StoredMetric>(metricsPageQuery(request));
  // A user with rows exists; only an empty page needs asking.
  if (rows.length > 0) return { rows, userExists: true };
  return { rows, userExists: await userExists(db, request.userId) };
}

async function userExists(db: Queryable, userId: number): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM users WHERE id = $1', [userId]);
  return rows.length > 0;
}

export interface MetricsSummary {
  readonly count: number;
  /** Seconds, 0 without rows. */
  readonly total_talked_time: number;
  /** Over the rows that have a sentiment; null if none has. */
  readonly average_voice_sentiment: number | null;
  /** Share of rows (0..1) with the microphone used; null without rows. */
  readonly microphone_share: number | null;
  readonly speaker_share: number | null;
}

type SummaryRow = Omit<MetricsSummary, 'count'> & {
  readonly user_exists: boolean;
  /** count(*) is a bigint, which node-postgres gives as text. */
  readonly count: string;
};

export interface SummaryRequest {
  readonly userId: number;
  readonly from?: string;
  readonly to?: string;
}

// Sums and averages run in numeric, which cannot overflow, and come back as float8, which can: a
// numeric past the double range has no float8 (PostgreSQL raises "out of range", also for a value
// that would round to 0), so it saturates at the largest double and tiny ones read as 0. With the
// ranges refused at the door (and checked by migration 0006) only rows stored before them get there.
const FLOAT8_MAX = '1.7976931348623157e308';
const FLOAT8_HALF_SMALLEST = '2.5e-324';

/** A numeric expression as float8, saturating instead of failing; NULL stays NULL. */
function saturatingFloat8(expression: string): string {
  return `CASE WHEN abs(${expression}) >= ${FLOAT8_MAX} THEN sign(${expression})::float8 * ${FLOAT8_MAX}::float8
               WHEN abs(${expression}) < ${FLOAT8_HALF_SMALLEST} THEN 0::float8
               ELSE ${expression}::float8 END`;
}

/** Aggregates of the user's rows in [from, to); undefined if the user does not exist. */
export async function summarizeMetrics(db: Queryable, request: SummaryRequest): Promise<MetricsSummary | undefined> {
  const values: unknown[] = [request.userId];
  const where = ['user_id = $1'];
  if (request.from !== undefined) where.push(`time_recorded >= $${values.push(request.from)}::timestamptz`);
  if (request.to !== undefined) where.push(`time_recorded < $${values.push(request.to)}::timestamptz`);
  const { rows } = await db.query<SummaryRow>(
    `SELECT user_exists, count,
            ${saturatingFloat8('total_talked_time')} AS total_talked_time,
            ${saturatingFloat8('average_voice_sentiment')} AS average_voice_sentiment,
            microphone_share, speaker_share
       FROM (SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS user_exists,
                    count(*) AS count,
                    coalesce(sum(talked_time::numeric), 0) AS total_talked_time,
                    avg(voice_sentiment::numeric) AS average_voice_sentiment,
                    (count(*) FILTER (WHERE microphone_used))::float8 / nullif(count(*), 0) AS microphone_share,
                    (count(*) FILTER (WHERE speaker_used))::float8 / nullif(count(*), 0) AS speaker_share
               FROM user_metrics
              WHERE ${where.join(' AND ')}) AS aggregates`,
    values,
  );
  const row = rows[0];
  if (row === undefined || !row.user_exists) return undefined;
  return {
    count: Number(row.count),
    total_talked_time: row.total_talked_time,
    average_voice_sentiment: row.average_voice_sentiment,
    microphone_share: row.microphone_share,
    speaker_share: row.speaker_share,
  };
}
