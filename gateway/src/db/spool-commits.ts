import type { Queryable } from './pool';

// spool_commits (migration 0004): which spooled rows are stored, written in the transaction that
// stores them, so that a replay after a crash skips them.

/** Spool sequence numbers firstSeq..lastSeq of one spool, recorded with the rows they name. */
export interface SpoolRange {
  readonly spoolId: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
}

export async function recordSpoolCommits(db: Queryable, spooled: readonly SpoolRange[]): Promise<void> {
  await db.query(
    `INSERT INTO spool_commits (spool_id, first_seq, last_seq)
     SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])`,
    [
      spooled.map((range) => range.spoolId),
      spooled.map((range) => range.firstSeq),
      spooled.map((range) => range.lastSeq),
    ],
  );
}

/** The committed ranges of one spool, ordered by their first sequence number. */
export async function committedSpoolRanges(db: Queryable, spoolId: string): Promise<{ first: number; last: number }[]> {
  const { rows } = await db.query<{ first: string; last: string }>(
    'SELECT first_seq AS first, last_seq AS last FROM spool_commits WHERE spool_id = $1 ORDER BY first_seq',
    [spoolId],
  );
  return rows.map((row) => ({ first: Number(row.first), last: Number(row.last) }));
}

/** Forgets the commits of spools whose files are gone. */
export async function deleteSpoolCommits(db: Queryable, spoolIds: readonly string[]): Promise<void> {
  await db.query('DELETE FROM spool_commits WHERE spool_id = ANY($1::uuid[])', [spoolIds]);
}
