const { Pool } = require('pg');
const { maintainPartitions, listPartitions } = require('/work/wt-citus/dist/gateway/src/db/partitions.js');
const pool = new Pool({ connectionString: 'postgres://postgres@127.0.0.1:9700/metrics' });
(async () => {
  await pool.query(`INSERT INTO users (id, name) SELECT g, 'u'||g FROM generate_series(1,10) g ON CONFLICT DO NOTHING`);
  await pool.query(`INSERT INTO user_metrics (user_id, talked_time, microphone_used, speaker_used, time_recorded) SELECT g%10+1, 1, true, false, '2020-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1,50) g`);
  const out = await maintainPartitions(pool, { intervalMs: 86400000, premake: 1, lockTimeoutMs: 5000 });
  console.log(JSON.stringify(out));
  console.log((await listPartitions(pool)).map(p => `${p.name} ${p.bytes}`));
  console.log((await pool.query(`select logicalrelid::text from pg_dist_partition`)).rows.map(r=>r.logicalrelid).join(' '));
  console.log((await pool.query(`select count(*) from user_metrics_default`)).rows, (await pool.query(`select count(*) from user_metrics`)).rows);
  const r = await maintainPartitions(pool, { intervalMs: 86400000, premake: 1, lockTimeoutMs: 5000, retentionMs: 86400000*30 });
  console.log(JSON.stringify(r), (await pool.query(`select count(*) from user_metrics`)).rows);
  await pool.end();
})().catch(e => { console.error(e); process.exit(1); });
