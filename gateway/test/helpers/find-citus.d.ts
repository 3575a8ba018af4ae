/** Where PostgreSQL's packages live on Debian. */
export declare const POSTGRES_ROOT: string;
/** initdb and pg_ctl of the newest PostgreSQL there with citus.so installed; undefined when there is none. */
export declare function findCitus(): { readonly initdb: string; readonly pgCtl: string } | undefined;
/** The jest global (a project's `globals`) that puts a project's test databases on a Citus cluster. */
export declare const ON_CITUS_GLOBAL: string;
