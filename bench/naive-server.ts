// The deliberately naive baseline of the benchmark, as the original design would have done it:
// Express, a pg pool of 10, one parameterized INSERT (its own transaction, so one commit) per request,
// minimal validation. Not part of the gateway; kept only to be measured against it.
//
//   DATABASE_URL=postgres://... PORT=0 node dist/bench/naive-server.js

import type { AddressInfo } from 'node:net';
import express from 'express';
import { DatabaseError, Pool } from 'pg';

const INSERT = `
  INSERT INTO user_metrics
    (user_id, device_id, talked_time, microphone_used, speaker_used, voice_sentiment, time_recorded, event_id)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`;

const FOREIGN_KEY_VIOLATION = '23503';

interface Body {
  user_id?: unknown;
  device_id?: unknown;
  talked_time?: unknown;
  microphone_used?: unknown;
  speaker_used?: unknown;
  voice_sentiment?: unknown;
  time_recorded?: unknown;
  event_id?: unknown;
}

function main(): void {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    process.stderr.write('naive-server: DATABASE_URL is required\n');
    process.exit(2);
  }
  const port = Number(process.env.PORT ?? 8081);
  const host = process.env.HOST ?? '127.0.0.1';
  const pool = new Pool({ connectionString: databaseUrl, max: 10, application_name: 'mg-bench-naive' });
  pool.on('error', () => undefined);

  const app = express();
  app.use(express.json());
  app.post('/v1/metrics', async (req, res) => {
    const body = (req.body ?? {}) as Body;
    if (
      typeof body.user_id !== 'number' ||
      typeof body.talked_time !== 'number' ||
      typeof body.microphone_used !== 'boolean' ||
      typeof body.speaker_used !== 'boolean' ||
      (typeof body.time_recorded !== 'string' && typeof body.time_recorded !== 'number')
    ) {
      res.status(400).json({ error: 'validation_failed' });
      return;
    }
    const timeRecorded =
      typeof body.time_recorded === 'number' ? new Date(body.time_recorded).toISOString() : body.time_recorded;
    try {
      await pool.query(INSERT, [
        body.user_id,
        body.device_id ?? null,
        body.talked_time,
        body.microphone_used,
        body.speaker_used,
        body.voice_sentiment ?? null,
        timeRecorded,
        body.event_id ?? null,
      ]);
      res.status(201).json({ status: 'stored' });
    } catch (error) {
      if (error instanceof DatabaseError && error.code === FOREIGN_KEY_VIOLATION) {
        res.status(422).json({ error: 'unknown_reference' });
      } else {
        res.status(503).json({ error: 'unavailable' });
      }
    }
  });

  const server = app.listen(port, host, () => {
    const address = server.address() as AddressInfo;
    process.stdout.write(`naive-server listening on http://${host}:${address.port}\n`);
  });
  const stop = (): void => {
    server.close(() => void pool.end().then(() => process.exit(0)));
    server.closeAllConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main();
