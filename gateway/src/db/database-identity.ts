import type { Queryable } from './pool';
import { sqlState } from './sqlstate';

export interface DatabaseIdentity {
  /**
   * pg_control_system().system_identifier: made by initdb, kept by the cluster's physical copies
   * (replicas, base backups), different for any other cluster. null where the function may not be run.
   */
  readonly systemIdentifier: string | null;
  /** current_database(): tells apart the databases of one cluster. */
  readonly database: string;
}

const INSUFFICIENT_PRIVILEGE = '42501';
const UNDEFINED_FUNCTION = '42883';

/**
 * The identity of the database `db` is connected to. pg_control_system() runs for any role on a
 * stock PostgreSQL (EXECUTE is granted to PUBLIC); where that grant was revoked, or on a server
 * without the function, the identity is the database name alone.
 */
export async function databaseIdentity(db: Queryable): Promise<DatabaseIdentity> {
  try {
    const { rows } = await db.query<{ system_identifier: string; database: string }>(
      'SELECT system_identifier::text, current_database() AS database FROM pg_control_system()',
    );
    const row = rows[0] as { system_identifier: string; database: string };
    return { systemIdentifier: row.system_identifier, database: row.database };
  } catch (error) {
    const state = sqlState(error);
    if (state !== INSUFFICIENT_PRIVILEGE && state !== UNDEFINED_FUNCTION) throw error;
    const { rows } = await db.query<{ database: string }>('SELECT current_database() AS database');
    return { systemIdentifier: null, database: (rows[0] as { database: string }).database };
  }
}
