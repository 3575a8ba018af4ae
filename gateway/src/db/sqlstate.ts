/** How a failed write is handled, decided by the SQLSTATE of node-postgres' DatabaseError. */
export type FailureKind =
  /** Some row in the batch is refused (class 22 data exception, class 23 constraint violation). */
  | 'row'
  /** Anything else: a lost connection, a restart, a lock timeout, a missing table; worth retrying. */
  | 'transient';

export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return undefined;
  return code === 'XX000' ? (citusCopyConstraintState(error) ?? code) : code;
}

/**
 * Citus 13 (migration 0008) passes on a worker's refusal of a COPY row with the worker's message but
 * SQLSTATE XX000 (its ReportCopyError keeps no code). The constraint violations are told apart by
 * PostgreSQL's own wording of them, so that a duplicate event_id or an unknown user is handled as on
 * one server; the workers must then report in English (lc_messages C or en, the images' default).
 */
const CITUS_COPY_CONSTRAINTS: readonly [RegExp, string][] = [
  [/^duplicate key value violates unique constraint /, '23505'],
  [/ violates foreign key constraint /, '23503'],
  [/ violates not-null constraint/, '23502'],
  [/ violates (check|partition) constraint/, '23514'],
  [/ violates exclusion constraint /, '23P01'],
];

function citusCopyConstraintState(error: unknown): string | undefined {
  const { routine, message } = error as { routine?: unknown; message?: unknown };
  if (routine !== 'ReportCopyError' || typeof message !== 'string') return undefined;
  return CITUS_COPY_CONSTRAINTS.find(([pattern]) => pattern.test(message))?.[1];
}

/**
 * A row routed to the default partition of user_metrics while partition maintenance attaches the
 * partition it belongs to: the routing was decided before the attach, the check after it. Rows written
 * through user_metrics never break a partition constraint otherwise, so this is worth a retry (which
 * routes the row to its new partition), not a refusal.
 */
function isPartitionRoutingRace(error: unknown): boolean {
  return sqlState(error) === '23514' && error instanceof Error && /violates partition constraint/.test(error.message);
}

export function classifyFailure(error: unknown): FailureKind {
  if (isPartitionRoutingRace(error)) return 'transient';
  const state = sqlState(error);
  return state !== undefined && (state.startsWith('22') || state.startsWith('23')) ? 'row' : 'transient';
}

/** The contract's error code for a row PostgreSQL refused. */
export function rejectionCode(error: unknown): 'unknown_reference' | 'validation_failed' {
  return sqlState(error) === '23503' ? 'unknown_reference' : 'validation_failed';
}

const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);
/** A request's database call that ran past its part of REQUEST_DEADLINE_MS: lock_timeout, statement_timeout. */
const DEADLINE_SQLSTATES = new Set(['55P03', '57014']);
/** The same, from pg's own clocks: no pool connection in time (connectionTimeoutMillis), no answer (query_timeout). */
const DEADLINE_MESSAGES = /^(timeout exceeded when trying to connect|Query read timeout)$/;

/** A failure to reach PostgreSQL (or to hear from it in time), as opposed to a bug or a refused statement. */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (error instanceof Error && error.name === 'ReferencesUnchecked') return true;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && CONNECTION_ERRORS.has(code)) return true;
  const state = sqlState(error);
  if (state !== undefined) {
    return state.startsWith('08') || state.startsWith('57P') || state === '53300' || DEADLINE_SQLSTATES.has(state);
  }
  const message = error instanceof Error ? error.message : '';
  return (
    /Connection terminated|connection timeout|Client has encountered a connection error/i.test(message) ||
    DEADLINE_MESSAGES.test(message)
  );
}
