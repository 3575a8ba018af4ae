import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { databaseIsEmpty, seedDemoData } from '../../seed/seed-database';
import type { Config } from './config';
import { createMetricsWriter } from './db/metrics-writer';
import { listMigrationNames, migrate, pendingMigrations } from './db/migrate';
import { createPool } from './db/pool';
import { createApp } from './http/app';
import type { ReadinessCheck } from './http/health-routes';
import { Batcher } from './ingest/batcher';
import { MetricIntake } from './ingest/intake';
import { ReferenceCache } from './ingest/references';
import { createShutdown } from './lifecycle/shutdown';

export interface Gateway {
  readonly url: string;
  readonly server: Server;
  readonly pool: Pool;
  readonly batcher: Batcher;
  /** Ordered, idempotent stop: no new requests, flush the buffer, close the pool. */
  stop(): Promise<{ lostRows: number }>;
}

function readinessCheck(pool: Pool, migrations: readonly string[]): ReadinessCheck {
  return async () => {
    try {
      const pending = await pendingMigrations(pool, migrations);
      if (pending.length > 0) return { ready: false, reason: `migrations not applied: ${pending.join(', ')}` };
      return { ready: true };
    } catch (error) {
      return { ready: false, reason: `PostgreSQL does not answer: ${(error as Error).message}` };
    }
  };
}

/** Builds the gateway on `databaseUrl` and starts listening; the composition root for main and tests. */
export async function startGateway(config: Config, databaseUrl: string, logger: Logger): Promise<Gateway> {
  const pool = createPool(databaseUrl, config.pgPoolMax, logger.child({ module: 'pool' }));
  try {
    if (config.migrateOnStart) await migrate(pool, logger.child({ module: 'migrate' }));
    if (config.seedDemoData && (await databaseIsEmpty(pool))) {
      const seeded = await seedDemoData(pool);
      logger.info(seeded, 'demo users and devices seeded into the empty database');
    }
  } catch (error) {
    await pool.end();
    throw error;
  }

  const references = new ReferenceCache(pool);
  const batcher = new Batcher({
    batchMaxRows: config.batchMaxRows,
    batchMaxWaitMs: config.batchMaxWaitMs,
    bufferMaxRows: config.bufferMaxRows,
    flushConcurrency: config.flushConcurrency,
    writer: createMetricsWriter(pool),
    logger: logger.child({ module: 'batcher' }),
    observer: {
      // A row refused for a missing user or device means one was deleted since it was cached.
      refused: (_rows, reason) => reason === 'unknown_reference' && references.forgetAll(),
    },
  });
  const intake = new MetricIntake({
    batcher,
    references,
    ackTimeoutMs: config.ackTimeoutMs,
    bulkBackpressureTimeoutMs: config.bulkBackpressureTimeoutMs,
    maxLineBytes: config.bulkMaxLineBytes,
  });
  const app = createApp({
    logger,
    pool,
    intake,
    references,
    readiness: readinessCheck(pool, await listMigrationNames()),
    metricMaxBytes: config.metricMaxBytes,
  });

  const server = await new Promise<Server>((resolve, reject) => {
    const listening = app.listen(config.port, config.host, (error?: Error) =>
      error ? reject(error) : resolve(listening),
    );
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const stop = createShutdown({ server, batcher, pool, logger, timeoutMs: config.shutdownTimeoutMs });
  return { url, server, pool, batcher, stop };
}
