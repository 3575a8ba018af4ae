// What each index on user_metrics costs per row (issue 11). `npm run build && node dist/bench/index-cost.js
// [rows]` (BENCH_DATABASE_URL, else an embedded PostgreSQL; a bench database is made and dropped): COPY
// of the same rows (default 200,000) into a table with no index, then with each index alone, best of 3.

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { Pool } from 'pg';
import { createLogger } from '../gateway/src/logger';
import { createBenchDatabase, openBenchServer } from './bench-database';
import { runWithRowCount } from './options';

/** The indexes measured: the current ones of 0007, the ones it dropped or replaced, and the set it keeps. */
const INDEXES: readonly (readonly [string, string])[] = [
  ['no index', ''],
  ['pk (id, time_recorded)', 'ALTER TABLE it ADD PRIMARY KEY (id, time_recorded)'],
  ['unique (time_recorded, user_id, event_id)', 'CREATE UNIQUE INDEX ON it (time_recorded, user_id, event_id)'],
  ['(user_id, time_recorded)', 'CREATE INDEX ON it (user_id, time_recorded)'],
  ['(device_id, time_recorded)', 'CREATE INDEX ON it (device_id, time_recorded)'],
  ['brin (time_recorded)', 'CREATE INDEX ON it USING brin (time_recorded)'],
  ['old pk (user_id, id)', 'ALTER TABLE it ADD PRIMARY KEY (user_id, id)'],
  ['old unique (user_id, event_id)', 'CREATE UNIQUE INDEX ON it (user_id, event_id) WHERE event_id IS NOT NULL'],
  [
    'kept set: pk + unique + user',
    'ALTER TABLE it ADD PRIMARY KEY (id, time_recorded); CREATE UNIQUE INDEX ON it (time_recorded, user_id, event_id); ' +
      'CREATE INDEX ON it (user_id, time_recorded)',
  ],
];
const COLUMNS =
  'user_id, device_id, talked_time, microphone_used, speaker_used, voice_sentiment, time_recorded, event_id, received_at';
const TRIES = 3;

/** The rows as COPY text: a fleet of 20k users and 10k devices, times in order with jitter, v4 event ids. */
async function sampleRows(pool: Pool, rows: number): Promise<Buffer> {
  await pool.query(
    `CREATE TABLE ib AS SELECT 1 + (random() * 19999)::int AS user_id,
            'id' || (random() * 9999)::int || '-gj-335-Vow6DhCP6' AS device_id, random() * 600 AS talked_time,
            random() < 0.5 AS microphone_used, random() < 0.5 AS speaker_used, random() * 2 - 1 AS voice_sentiment,
            now() - interval '1 hour' + g * interval '15 ms' + random() * interval '2 s' AS time_recorded,
            gen_random_uuid() AS event_id, now() AS received_at
       FROM generate_series(1, $1::int) AS g`,
    [rows],
  );
  const client = await pool.connect();
  try {
    const chunks: Buffer[] = [];
    const stream = client.query(copyTo(`COPY ib (${COLUMNS}) TO STDOUT`));
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  } finally {
    client.release();
  }
}

/** Seconds of the COPY of `text` into a fresh table `it` shaped as user_metrics, with `indexes` made first. */
async function timeCopy(pool: Pool, text: Buffer, indexes: string): Promise<number> {
  await pool.query('DROP TABLE IF EXISTS it');
  await pool.query('CREATE TABLE it (LIKE user_metrics INCLUDING DEFAULTS INCLUDING IDENTITY)');
  if (indexes !== '') await pool.query(indexes);
  await pool.query('CHECKPOINT').catch(() => undefined); // needs a superuser; the runs are only less equal without
  const client = await pool.connect();
  try {
    const began = performance.now();
    await pipeline(Readable.from([text]), client.query(copyFrom(`COPY it (${COLUMNS}) FROM STDIN`)));
    return (performance.now() - began) / 1000;
  } finally {
    client.release();
  }
}

async function main(rows: number): Promise<void> {
  const logger = createLogger('warn');
  const server = await openBenchServer(process.env, logger);
  try {
    const db = await createBenchDatabase(server, logger);
    try {
      const text = await sampleRows(db.pool, rows);
      for (const [name, indexes] of INDEXES) {
        let best = Infinity;
        for (let i = 0; i < TRIES; i++) best = Math.min(best, await timeCopy(db.pool, text, indexes));
        process.stdout.write(`${name}: best of ${TRIES} ${best.toFixed(3)} s\n`);
      }
    } finally {
      await db.drop();
    }
  } finally {
    await server.stop();
  }
}

if (require.main === module) runWithRowCount('index-cost', 200_000, main);
