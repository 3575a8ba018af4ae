import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { databaseIsEmpty, seedDemoData } from '../../seed/seed-database';
import type { Config } from './config';
import { createMetricsWriter } from './db/metrics-writer';
import { assertMigrated, listMigrationNames, migrate, pendingMigrations } from './db/migrate';
import { createPool } from './db/pool';
import { accessControlFor } from './http/access-control';
import { createApp } from './http/app';
import type { ReadinessCheck } from './http/health-routes';
import { createHttpServer } from './http/http-server';
import { Batcher } from './ingest/batcher';
import { MetricIntake } from './ingest/intake';
import { ReferenceCache } from './ingest/references';
import { createShutdown } from './lifecycle/shutdown';
import { lockSpoolDir } from './spool/lock';
import { replaySpool } from './spool/replay';
import { Spool } from './spool/spool';
import { IngestStats } from './telemetry/ingest-stats';
import { createPrometheusTelemetry } from './telemetry/prometheus';
import { RecentRejections } from './telemetry/recent-rejections';

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

async function openSpoolDir(dir: string): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true });
  return lockSpoolDir(dir);
}

/** Builds the gateway on `databaseUrl` and starts listening; the composition root for main and tests. */
export async function startGateway(config: Config, databaseUrl: string, logger: Logger): Promise<Gateway> {
  const pool = createPool(databaseUrl, config.pgPoolMax, logger.child({ module: 'pool' }));
  try {
    if (config.migrateOnStart) await migrate(pool, logger.child({ module: 'migrate' }));
    else await assertMigrated(pool);
    if (config.seedDemoData && (await databaseIsEmpty(pool))) {
      const seeded = await seedDemoData(pool);
      logger.info(seeded, 'demo users and devices seeded into the empty database');
    }
  } catch (error) {
    await pool.end();
    throw error;
  }

  const references = new ReferenceCache(pool);
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
  const releaseSpoolDir = config.spoolEnabled ? await openSpoolDir(config.spoolDir) : undefined;
  if (config.spoolEnabled) {
    await replaySpool(config.spoolDir, pool, batcher, logger.child({ module: 'spool' }));
    spool = await Spool.open({
      dir: config.spoolDir,
      segmentBytes: config.spoolSegmentBytes,
      logger: logger.child({ module: 'spool' }),
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
  });
  const app = createApp({
    logger,
    pool,
    intake,
    references,
    readiness: readinessCheck(pool, await listMigrationNames()),
    metricMaxBytes: config.metricMaxBytes,
    accessControl: accessControlFor(config, pool, logger.child({ module: 'auth' })),
    bulkBodyLimits: {
      maxBytes: config.bulkMaxBytes,
      maxGzipRatio: config.bulkGzipMaxRatio,
      idleTimeoutMs: config.bodyIdleTimeoutMs,
    },
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
  server.once('close', () => stats.stop());
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const stop = createShutdown({
    server,
    batcher,
    pool,
    logger,
    timeoutMs: config.shutdownTimeoutMs,
    // Rows still unwritten at the deadline stay in the spool's files, for the next start to replay.
    closeAfterFlush: async () => {
      await spool?.close();
      await releaseSpoolDir?.();
    },
  });
  return { url, server, pool, batcher, stop };
}
