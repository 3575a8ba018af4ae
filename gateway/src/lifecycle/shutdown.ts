import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Batcher } from '../ingest/batcher';
import type { Spool } from '../spool/spool';

export interface ShutdownParts {
  readonly server: Server;
  readonly batcher: Batcher;
  readonly logger: Logger;
  readonly timeoutMs: number;
  /** The spool of wait=false rows, if any: what it holds when the deadline passes is kept for the next start. */
  readonly spool?: Pick<Spool, 'feedBacklog' | 'close' | 'pendingRows'>;
  /** Closes the database connections (and whatever else holds the process), after the buffer is flushed. */
  readonly closeConnections: () => Promise<void>;
}

export interface ShutdownOutcome {
  /** Whether the buffer was flushed before the deadline. */
  readonly flushed: boolean;
  /** Rows that were only in memory when the deadline passed: not stored. */
  readonly lostRows: number;
  /** Rows left in the spool, replayed at the next start. */
  readonly spooledRows: number;
}

/** What is still done after the deadline gets this long at most, so the process always ends. */
const AFTER_DEADLINE_GRACE_MS = 1000;

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/** `work`, or nothing once `ms` have passed (it goes on, unawaited). */
async function atMost(ms: number, work: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/**
 * Stops in order: take no new requests, flush every buffered row (which also lets waiting requests
 * finish) and every spooled row still on disk, then close the connections. After
 * `timeoutMs` open connections are cut and the flusher gives up: rows that were only in memory are
 * lost and counted, spooled ones stay on disk for the next start, and nothing waits for PostgreSQL
 * any longer (a COPY stuck behind a lock must not hold the process). Calling it again returns the
 * same promise.
 */
export function createShutdown(parts: ShutdownParts): () => Promise<ShutdownOutcome> {
  let stopping: Promise<ShutdownOutcome> | undefined;

  async function stop(): Promise<ShutdownOutcome> {
    const { server, batcher, spool, logger, timeoutMs } = parts;
    logger.info({ bufferedRows: batcher.depth }, 'shutting down: no new requests; flushing the buffer');
    let deadlineTimer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      deadlineTimer = setTimeout(() => resolve('deadline'), timeoutMs);
    });
    const orderly = (async () => {
      const serverClosed = closeServer(server);
      await batcher.drain();
      await serverClosed;
      // Rows spooled by the last requests, and any backlog an outage left on disk, go in before the end.
      await spool?.feedBacklog();
      await batcher.drain();
      return 'done' as const;
    })();
    const outcome = await Promise.race([orderly, deadline]);
    clearTimeout(deadlineTimer);
    const flushed = outcome === 'done';
    let lostRows = 0;
    if (!flushed) {
      server.closeAllConnections();
      lostRows = batcher.abort().inMemoryOnly;
      await atMost(AFTER_DEADLINE_GRACE_MS, spool?.close() ?? Promise.resolve());
      await atMost(AFTER_DEADLINE_GRACE_MS, parts.closeConnections());
    } else {
      await spool?.close();
      await parts.closeConnections();
    }
    const spooledRows = spool?.pendingRows ?? 0;
    const result = { flushed, lostRows, spooledRows };
    if (flushed) logger.info(result, 'stopped');
    else
      logger.error(
        { ...result, timeoutMs },
        'stopped at the shutdown deadline: spooled rows are kept for the next start',
      );
    return result;
  }

  return () => (stopping ??= stop());
}
