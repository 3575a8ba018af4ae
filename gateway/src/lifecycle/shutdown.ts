import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Pool } from 'pg';
import type { Batcher } from '../ingest/batcher';

export interface ShutdownParts {
  readonly server: Server;
  readonly batcher: Batcher;
  readonly pool: Pool;
  readonly logger: Logger;
  readonly timeoutMs: number;
  /** Runs after the buffer is flushed (or abandoned at the deadline), before the pool closes. */
  readonly closeAfterFlush?: () => Promise<void>;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/**
 * Stops in order: take no new requests, flush every buffered row (which also lets waiting requests
 * finish), then close the pool. After `timeoutMs` open connections are cut and the flusher gives
 * up; what was still buffered then is logged as lost. Calling it again returns the same promise.
 */
export function createShutdown(parts: ShutdownParts): () => Promise<{ lostRows: number }> {
  let stopping: Promise<{ lostRows: number }> | undefined;

  async function stop(): Promise<{ lostRows: number }> {
    const { server, batcher, pool, logger, timeoutMs } = parts;
    logger.info({ bufferedRows: batcher.depth }, 'shutting down: no new requests; flushing the buffer');
    let deadlineTimer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      deadlineTimer = setTimeout(() => resolve('deadline'), timeoutMs);
    });
    const orderly = (async () => {
      const serverClosed = closeServer(server);
      await batcher.drain();
      await serverClosed;
      await batcher.drain(); // rows appended by requests that were still being read
      return 'done' as const;
    })();
    const outcome = await Promise.race([orderly, deadline]);
    clearTimeout(deadlineTimer);
    let lostRows = 0;
    if (outcome === 'deadline') {
      server.closeAllConnections();
      lostRows = batcher.abort();
      if (lostRows > 0) {
        logger.error({ lostRows, timeoutMs }, 'shutdown deadline passed with rows unwritten (spooled ones are kept)');
      }
    }
    await parts.closeAfterFlush?.();
    await pool.end();
    logger.info({ lostRows }, 'stopped');
    return { lostRows };
  }

  return () => (stopping ??= stop());
}
