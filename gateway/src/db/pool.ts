import pg from 'pg';
import type { Logger } from 'pino';

/** The database as a query needs it: a pool, or one client (EXPLAIN in tests). */
export type Queryable = Pick<pg.Pool, 'query'>;

/** Settings added to a pool's defaults. */
export type PoolSettings = Omit<pg.PoolConfig, 'connectionString' | 'max'>;

/** Idle connections are probed, so one that a firewall or a dead peer dropped is found before it is used. */
const KEEPALIVE = { keepAlive: true, keepAliveInitialDelayMillis: 10_000 } as const;

export function createPool(
  connectionString: string,
  max: number,
  logger: Logger,
  settings: PoolSettings = {},
): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    application_name: 'metrics-gateway',
    // Never wait forever for a connection: a request should get 503, not hang, when PostgreSQL is gone.
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    ...settings,
  });
  // An idle client that loses its connection emits here; without a listener the process would crash.
  pool.on('error', (error) => logger.warn({ err: error }, 'idle PostgreSQL connection failed'));
  // So does a checked-out client between two queries (say, PostgreSQL was shut down): the pool only
  // listens while a client is idle. The failure surfaces again at the client's next query.
  pool.on('connect', (client) => {
    client.on('error', (error) => logger.warn({ err: error }, 'PostgreSQL connection failed'));
  });
  return pool;
}

/** How the gateway's connections are split: COPY batches and everything on the request path never wait for each other. */
export interface PoolSizes {
  /** COPY batches, txid_status checks, rejected rows, spool commits: one per flush in flight, and one spare. */
  readonly writer: number;
  /** Reference and API-key lookups, reads, admin routes, readiness: the rest of PG_POOL_MAX. */
  readonly request: number;
}

export function poolSizes(pgPoolMax: number, flushConcurrency: number): PoolSizes {
  const writer = flushConcurrency + 1;
  return { writer, request: pgPoolMax - writer };
}

/**
 * The limits on each database call of a request, all derived from REQUEST_DEADLINE_MS so that a
 * request's calls end (with an error that becomes 503) before its deadline: a lock wait (the likely
 * cause of a stuck lookup) gives up after a quarter, any statement after half, a wait for a pool
 * connection after a quarter. `query_timeout` is the client's own clock, for a server that stops
 * answering without closing the connection (the server's timeouts never fire then); the connection is
 * then closed.
 */
export function requestPoolSettings(requestDeadlineMs: number): PoolSettings {
  const quarter = Math.max(1, Math.floor(requestDeadlineMs / 4));
  return {
    ...KEEPALIVE,
    lock_timeout: quarter,
    statement_timeout: 2 * quarter,
    query_timeout: 3 * quarter,
    connectionTimeoutMillis: quarter,
  };
}

/**
 * The writer pool: no statement timeouts (a COPY of a large batch may legitimately take long, and
 * pg's query_timeout must not be combined with COPY: pg-copy-streams issues 113, 115, 125); see
 * watchForStalls for what bounds its calls instead.
 *
 * txid_status says "in progress" for as long as PostgreSQL keeps a transaction open, and a session
 * whose client vanished without closing is kept open: idle_in_transaction_session_timeout ends it (a
 * writer's transaction is never idle otherwise), later than the stall deadline, so that a COMMIT that
 * was only delayed in the network still gets its chance.
 */
export function createWriterPool(
  connectionString: string,
  max: number,
  stallTimeoutMs: number,
  logger: Logger,
): pg.Pool {
  return createPool(connectionString, max, logger, {
    ...KEEPALIVE,
    ...(stallTimeoutMs > 0 ? { idle_in_transaction_session_timeout: 2 * stallTimeoutMs } : {}),
  });
}

interface Progress {
  bytes: number;
  since: number;
}

/** Bytes that went either way on the client's socket; writes count once handed to the socket. */
function bytesMoved(client: pg.PoolClient): number | undefined {
  const socket = (client as unknown as { connection?: { stream?: { bytesRead?: number; bytesWritten?: number } } })
    .connection?.stream;
  if (socket?.bytesRead === undefined || socket.bytesWritten === undefined) return undefined;
  return socket.bytesRead + socket.bytesWritten;
}

/**
 * From now on, a checked-out connection of `pool` that neither sends nor receives a byte for
 * `stallTimeoutMs` has its socket destroyed: its query fails like a lost connection, and the batcher
 * retries the write, asking txid_status first so that a COMMIT which did reach PostgreSQL is not
 * stored twice. Start it after the migrations, which may run (or wait for another gateway's) longer.
 */
export function watchForStalls(pool: pg.Pool, stallTimeoutMs: number, logger: Logger): void {
  if (stallTimeoutMs === 0) return;
  const checkedOut = new Map<pg.PoolClient, Progress>();
  const checkEveryMs = Math.max(10, Math.min(1000, Math.floor(stallTimeoutMs / 4)));
  let timer: NodeJS.Timeout | undefined;

  const check = (): void => {
    const now = Date.now();
    for (const [client, progress] of checkedOut) {
      const bytes = bytesMoved(client);
      if (bytes === undefined) continue;
      if (bytes !== progress.bytes) {
        progress.bytes = bytes;
        progress.since = now;
      } else if (now - progress.since >= stallTimeoutMs) {
        checkedOut.delete(client);
        logger.warn({ stalledMs: now - progress.since }, 'PostgreSQL connection stalled during a write; closing it');
        (client as unknown as { connection: { stream: { destroy(error?: Error): void } } }).connection.stream.destroy(
          new Error(`the connection made no progress for ${stallTimeoutMs} ms (WRITE_STALL_TIMEOUT_MS)`),
        );
      }
    }
    if (checkedOut.size === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  pool.on('acquire', (client) => {
    checkedOut.set(client, { bytes: bytesMoved(client) ?? 0, since: Date.now() });
    timer ??= setInterval(check, checkEveryMs).unref();
  });
  pool.on('release', (_error, client) => {
    checkedOut.delete(client);
  });
}
