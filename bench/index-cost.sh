#!/usr/bin/env bash
# What each index on user_metrics costs per row (issue 11): COPY of the same 200,000 rows into a table
# with no index, then with each index alone, best of 3. Usage: bench/index-cost.sh (BENCH_DATABASE_URL).
U=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
FILE=$(mktemp -u /tmp/index-cost-XXXX.copy)
psql -q $U <<SQL
DROP TABLE IF EXISTS ib;
CREATE TABLE ib (user_id int not null, device_id varchar(255), talked_time float8 not null, microphone_used bool not null, speaker_used bool not null, voice_sentiment float8, time_recorded timestamptz not null, event_id uuid, received_at timestamptz not null);
INSERT INTO ib SELECT 1 + (random()*19999)::int, 'id' || (random()*9999)::int || '-gj-335-Vow6DhCP6', random()*600, random()<0.5, random()<0.5, random()*2-1, now() - interval '1 hour' + g * interval '15 ms' + random() * interval '2 s', gen_random_uuid(), now() FROM generate_series(1,200000) g;
COPY ib TO '$FILE';
SQL
run() {
  best=999999
  for i in 1 2 3; do
  psql -q $U -c "DROP TABLE IF EXISTS it" -c "CREATE TABLE it (id bigint generated always as identity, user_id int not null, device_id varchar(255), talked_time float8 not null, microphone_used bool not null, speaker_used bool not null, voice_sentiment float8, time_recorded timestamptz not null, event_id uuid, received_at timestamptz not null); $2"
  psql -q $U -c "checkpoint"
  s=$(date +%s.%N)
  psql -q $U -c "COPY it (user_id, device_id, talked_time, microphone_used, speaker_used, voice_sentiment, time_recorded, event_id, received_at) FROM '$FILE'"
  e=$(date +%s.%N)
  t=$(echo "$e - $s" | bc)
  best=$(echo "$t $best" | awk '{print ($1<$2)?$1:$2}')
  done
  echo "$1: best of 3 $best s"
}
run "no index" ""
run "pk (id, time_recorded)" "ALTER TABLE it ADD PRIMARY KEY (id, time_recorded)"
run "unique (time_recorded, user_id, event_id)" "CREATE UNIQUE INDEX ON it (time_recorded, user_id, event_id)"
run "(user_id, time_recorded)" "CREATE INDEX ON it (user_id, time_recorded)"
run "(device_id, time_recorded)" "CREATE INDEX ON it (device_id, time_recorded)"
run "brin (time_recorded)" "CREATE INDEX ON it USING brin (time_recorded)"
run "old pk (user_id, id)" "ALTER TABLE it ADD PRIMARY KEY (user_id, id)"
run "old unique (user_id, event_id)" "CREATE UNIQUE INDEX ON it (user_id, event_id) WHERE event_id IS NOT NULL"
run "kept set: pk + unique + user" "ALTER TABLE it ADD PRIMARY KEY (id, time_recorded); CREATE UNIQUE INDEX ON it (time_recorded, user_id, event_id); CREATE INDEX ON it (user_id, time_recorded)"
psql -q $U -c "DROP TABLE IF EXISTS it" -c "DROP TABLE IF EXISTS ib"; rm -f $FILE
