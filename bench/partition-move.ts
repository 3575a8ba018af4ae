// How long partition maintenance holds writers up when it moves rows out of the default partition
// (issue 11). `npm run build && node dist/bench/partition-move.js [rows]` (BENCH_DATABASE_URL, else an
// embedded PostgreSQL): N rows (default 100,000) land in the default partition, then maintenance makes
// their partition and moves them while two writers insert a row every few milliseconds, one into the
// current partition and one into the default partition; the longest wait of each is printed.

import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'pg';
import { maintainPartitions } from '../gateway/src/db/partitions';
import { createLogger } from '../gateway/src/logger';
import { createBenchDatabase, openBenchServer } from './bench-database';
import { runWithRowCount } from './options';

const DAY = 86_400_000;

/** Inserts one row at `time()` until `stop`, and returns the longest time one insert took (ms). */
async function writer(pool: Pool, time: () => string, stop: { done: boolean }): Promise<number> {
  let longest = 0;
  while (!stop.done) {
    const began = performance.now();
    // A row routed to the default partition just as its partition is attached fails with 23514
    // (the gateway retries it: db/sqlstate.ts); so does it here.
    for (;;) {
      try {
        await pool.query(
          `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
           VALUES (1, 1, true, true, $1)`,
          [time()],
        );
        break;
      } catch (error) {
        if ((error as { code?: string }).code !== '23514') throw error;
      }
    }
    longest = Math.max(longest, performance.now() - began);
    await sleep(2);
  }
  return longest;
}

async function main(rows: number): Promise<void> {
  const logger = createLogger('warn');
  const server = await openBenchServer(process.env, logger);
  const db = await createBenchDatabase(server, logger);
  const pool = new Pool({ connectionString: db.url, max: 4 });
  pool.on('error', () => undefined); // the drop at the end ends idle connections
  try {
    const now = Date.now();
    await maintainPartitions(pool, { intervalMs: DAY, premake: 0, lockTimeoutMs: 1000 }, now);
    // Two days ahead: no partition yet, so the rows wait in the default partition.
    await pool.query(
      `INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded)
       SELECT 1 + g % 10, 1, true, true, $2::timestamptz + g * interval '1 ms' FROM generate_series(1, $1::int) AS g`,
      [rows, new Date(now + 2 * DAY).toISOString()],
    );
    await pool.query('ANALYZE user_metrics');
    const stop = { done: false };
    const writers = [
      writer(pool, () => new Date().toISOString(), stop),
      writer(pool, () => new Date(now + 5 * DAY).toISOString(), stop),
    ] as const;
    await sleep(200);
    const began = performance.now();
    const outcome = await maintainPartitions(pool, { intervalMs: DAY, premake: 0, lockTimeoutMs: 1000 }, now);
    const total = performance.now() - began;
    await sleep(200);
    stop.done = true;
    const [current, intoDefault] = await Promise.all(writers);
    const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;
    process.stdout.write(
      [
        `rows moved out of the default partition: ${outcome.created.map((c) => `${c.name} ${c.movedRows}`).join(', ')}`,
        `maintenance run: ${fmt(total)} (steps: ${outcome.created.map((c) => fmt(c.ms)).join(', ')})`,
        `longest insert into the current partition meanwhile: ${fmt(current)}`,
        `longest insert into the default partition meanwhile: ${fmt(intoDefault)}`,
      ].join('\n') + '\n',
    );
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  } finally {
    await pool.end();
    await db.drop();
    await server.stop();
  }
}

if (require.main === module) runWithRowCount('partition-move', 100_000, main);
