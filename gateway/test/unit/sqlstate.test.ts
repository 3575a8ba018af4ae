import { classifyFailure } from '../../src/db/sqlstate';

/** An error as node-postgres gives it: an Error with the SQLSTATE in `code`. */
function databaseError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
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
