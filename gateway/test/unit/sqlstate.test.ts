import { classifyFailure, rejectionCode, sqlState } from '../../src/db/sqlstate';

/** An error as node-postgres gives it: an Error with the SQLSTATE in `code`. */
function databaseError(code: string, message: string, routine?: string): Error {
  return Object.assign(new Error(message), { code, routine });
}

describe('classifyFailure', () => {
  it('retries a row routed to the default partition while its partition was attached', () => {
    const race = databaseError('23514', 'new row for relation "user_metrics_default" violates partition constraint');
    expect(classifyFailure(race)).toBe('transient');
  });

  it('refuses the rows of any other constraint violation', () => {
    expect(classifyFailure(databaseError('23514', 'violates check constraint "user_metrics_talked_time_range"'))).toBe(
      'row',
    );
    expect(classifyFailure(databaseError('23503', 'violates foreign key check on user_id'))).toBe('row');
    expect(classifyFailure(databaseError('08006', 'connection failure'))).toBe('transient');
  });
});

describe('sqlState on Citus', () => {
  // Citus 13 passes a worker's refusal of a COPY row on with the worker's message and XX000.
  const copyError = (message: string) => databaseError('XX000', message, 'ReportCopyError');

  it('recovers the constraint violations of a COPY from their wording', () => {
    const duplicate = copyError(
      'duplicate key value violates unique constraint "user_metrics_default_time_recorded_user_id_event_id_idx_102066"',
    );
    expect(sqlState(duplicate)).toBe('23505');
    const orphan = copyError(
      'insert or update on table "user_metrics_default_102067" violates foreign key constraint "user_metrics_user_id_fkey_102035"',
    );
    expect(sqlState(orphan)).toBe('23503');
    expect(classifyFailure(orphan)).toBe('row');
    expect(rejectionCode(orphan)).toBe('unknown_reference');
    expect(sqlState(copyError('new row for relation "x" violates check constraint "c"'))).toBe('23514');
    expect(classifyFailure(copyError('new row for relation "x_102" violates partition constraint'))).toBe('transient');
  });

  it('leaves XX000 alone elsewhere: another routine, or a message it does not know', () => {
    expect(sqlState(databaseError('XX000', 'duplicate key value violates unique constraint "k"', 'errfinish'))).toBe(
      'XX000',
    );
    expect(sqlState(copyError('could not connect'))).toBe('XX000');
    expect(classifyFailure(copyError('could not connect'))).toBe('transient');
  });
});
