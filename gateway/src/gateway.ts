import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { databaseIsEmpty, seedDemoData } from '../../seed/seed-database';
import { ApiKeyChangeListener } from './auth/api-key-changes';
import type { Config } from './config';
import { createMetricsWriter } from './db/metrics-writer';
import { assertMigrated, listMigrationNames, migrate, pendingMigrations } from './db/migrate';
import { createPool, createWriterPool, poolSizes, requestPoolSettings, watchForStalls } from './db/pool';
import { accessControlFor } from './http/access-control';
import { createApp } from './http/app';
import type { ReadinessCheck } from './http/health-routes';
import { createHttpServer } from './http/http-server';
import { Batcher } from './ingest/batcher';
import { MetricIntake } from './ingest/intake';
import { ReferenceCache } from './ingest/references';
import { createShutdown, type ShutdownOutcome } from './lifecycle/shutdown';
import { lockSpoolDir } from './spool/lock';
import { bindSpoolToDatabase } from './spool/identity';
import { replaySpool } from './spool/replay';
import { Spool } from './spool/spool';
import { IngestStats } from './telemetry/ingest-stats';
import { createPrometheusTelemetry } from './telemetry/prometheus';
import { RecentRejections } from './telemetry/recent-rejections';

export interface Gateway {
  readonly url: string;
  readonly server: Server;
  /** The writer pool: COPY batches, txid_status checks, rejected rows, spool commits. */
  readonly pool: Pool;
  /** Everything on the request path: lookups, reads, admin routes, readiness; each call bounded by REQUEST_DEADLINE_MS. */
  readonly requestPool: Pool;
  readonly batcher: Batcher;
  /** Ordered, idempotent stop: no new requests, flush the buffer, close the pool. */
  stop(): Promise<ShutdownOutcome>;
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

async function openSpoolDir(dir: string, pool: Pool, logger: Logger): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true });
  const release = await lockSpoolDir(dir);
  await bindSpoolToDatabase(dir, pool, logger).catch(async (error: unknown) => {
    await release();
    throw error;
  });
  return release;
}

/** Builds the gateway on `databaseUrl` and starts listening; the composition root for main and tests. */
export async function startGateway(config: Config, databaseUrl: string, logger: Logger): Promise<Gateway> {
  const sizes = poolSizes(config.pgPoolMax, config.flushConcurrency);
  const pool = createWriterPool(
    databaseUrl,
    sizes.writer,
    config.writeStallTimeoutMs,
    logger.child({ module: 'pool' }),
  );
  const requestPool = createPool(
    databaseUrl,
    sizes.request,
    logger.child({ module: 'request-pool' }),
    requestPoolSettings(config.requestDeadlineMs),
  );
  try {
    if (config.migrateOnStart) await migrate(pool, logger.child({ module: 'migrate' }));
    else await assertMigrated(pool);
    if (config.seedDemoData && (await databaseIsEmpty(pool))) {
      const seeded = await seedDemoData(pool);
      logger.info(seeded, 'demo users and devices seeded into the empty database');
    }
  } catch (error) {
    await Promise.all([pool.end(), requestPool.end()]);
    throw error;
  }
  watchForStalls(pool, config.writeStallTimeoutMs, logger.child({ module: 'pool' }));

  const references = new ReferenceCache(requestPool);
  // Created after the batcher, which replays what an earlier process left in the spool.
  let spool: Spool | undefined;
  const telemetry = createPrometheusTelemetry(pool);
  const batcher = new Batcher({
    batchMaxRows: config.batchMaxRows,
    batchMaxWaitMs: config.batchMaxWaitMs,
    bufferMaxRows: config.bufferMaxRows,
    flushConcurrency: config.flushConcurrency,
    writer: createMetricsWriter(pool),
    logger: logger.child({ module: 'batcher' }),
    onSpooledDone: (ranges) => {
      for (const range of ranges) if (range.spoolId === spool?.id) void spool.rowsDone(range.firstSeq, range.lastSeq);
    },
    observer: {
      ...telemetry.batcherObserver,
      refused: (rows, reason) => {
        telemetry.batcherObserver.refused(rows, reason);
        // A row refused for a missing user or device means one was deleted since it was cached.
        if (reason === 'unknown_reference') references.forgetAll();
      },
    },
  });
  telemetry.trackBuffer(batcher);
  const rejections = new RecentRejections();
  const stats = new IngestStats({ readTotals: telemetry.totals, buffer: batcher, rejections });
  const releaseSpoolDir = config.spoolEnabled
    ? await openSpoolDir(config.spoolDir, pool, logger.child({ module: 'spool' })).catch(async (error: unknown) => {
        await pool.end();
        throw error;
      })
    : undefined;
  if (config.spoolEnabled) {
    await replaySpool(config.spoolDir, pool, batcher, logger.child({ module: 'spool' }));
    spool = await Spool.open({
      dir: config.spoolDir,
      segmentBytes: config.spoolSegmentBytes,
      maxBytes: config.spoolMaxBytes,
      logger: logger.child({ module: 'spool' }),
      sink: batcher,
    });
  }
  const intake = new MetricIntake({
    batcher,
    references,
    ackTimeoutMs: config.ackTimeoutMs,
    bulkBackpressureTimeoutMs: config.bulkBackpressureTimeoutMs,
    maxLineBytes: config.bulkMaxLineBytes,
    spool,
    onAccepted: telemetry.rowsAccepted,
    onRefused: telemetry.rowsRefused,
    logger: logger.child({ module: 'intake' }),
  });
  const access = accessControlFor(config, requestPool, logger.child({ module: 'auth' }));
  const app = createApp({
    logger,
    pool: requestPool,
    intake,
    references,
    readiness: readinessCheck(requestPool, await listMigrationNames()),
    metricMaxBytes: config.metricMaxBytes,
    requestDeadlineMs: config.requestDeadlineMs,
    accessControl: access?.forRoute,
    bulkBodyLimits: {
      maxBytes: config.bulkMaxBytes,
      maxGzipRatio: config.bulkGzipMaxRatio,
      idleTimeoutMs: config.bodyIdleTimeoutMs,
      minBytesPerSecond: config.bodyMinBytesPerSecond,
    },
    bulkMaxConcurrent: config.bulkMaxConcurrent,
    metricsRegistry: telemetry.registry,
    onRefused: telemetry.rowsRefused,
    status: { stats, rejections },
  });

  const server = createHttpServer(app, config);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  stats.start();
  // Started once listening: its first LISTEN empties the key cache, so nothing cached before is missed.
  const keyChanges =
    access &&
    new ApiKeyChangeListener({
      connectionString: databaseUrl,
      subscriber: access.authenticator,
      logger: logger.child({ module: 'auth' }),
    });
  await keyChanges?.start();
  server.once('close', () => stats.stop());
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const shutdown = createShutdown({
    server,
    batcher,
    logger,
    timeoutMs: config.shutdownTimeoutMs,
    // Rows still unwritten at the deadline stay in the spool's files, for the next start to replay.
    spool,
    closeConnections: async () => {
      await releaseSpoolDir?.();
      await Promise.all([pool.end(), requestPool.end()]);
    },
  });
  // The key listener closes last: a revocation still reaches the requests that are being drained.
  const stop: Gateway['stop'] = async () => {
    const outcome = await shutdown();
    await keyChanges?.close();
    return outcome;
  };
  return { url, server, pool, requestPool, batcher, stop };
}
