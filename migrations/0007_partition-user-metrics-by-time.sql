-- Up Migration

-- user_metrics becomes range-partitioned on time_recorded (issue 11): the partitions being written
-- stay small enough for their indexes to fit in memory, so the ingest rate holds as the data grows,
-- and retention drops whole partitions instead of deleting rows. The gateway makes the partitions
-- (gateway/src/db/partitions.ts): ahead of time, and for rows that land in the default partition.
--
-- The table as it was keeps its rows and becomes the partition user_metrics_before_0007, covering
-- every time up to the end of the UTC day of its newest row: no row is copied. An empty table is
-- dropped instead. Its reference-check triggers stay on it (they check rows written straight into
-- that partition); the new parent gets the same ones for rows written through it.
--
-- Keys (a unique key on a partitioned table must include time_recorded):
-- - primary key (id, time_recorded); id stays unique by construction (identity);
-- - unique (time_recorded, user_id, event_id): the idempotency key. The same event_id for the same
--   user and the same time_recorded is stored once (NULLs are distinct: rows without an event_id never
--   conflict). Leading with time_recorded, it also serves time-range scans and min(time_recorded),
--   which made the BRIN index redundant.
-- - (user_id, time_recorded) for the per-user reads.
-- Dropped: (device_id, time_recorded), which no query reads (only deleting a device would use it; it
-- now scans) and which cost the most per row; the BRIN. Measured in bench/RESULTS.md.

ALTER TABLE user_metrics RENAME TO user_metrics_before_0007;
ALTER TABLE user_metrics_before_0007 ALTER COLUMN id DROP IDENTITY;
ALTER TABLE user_metrics_before_0007 DROP CONSTRAINT user_metrics_pkey;
DROP INDEX user_metrics_user_id_event_id_key;
DROP INDEX user_metrics_device_id_time_recorded_idx;
DROP INDEX user_metrics_time_recorded_brin;
ALTER INDEX user_metrics_user_id_time_recorded_idx RENAME TO user_metrics_before_0007_user_id_time_recorded_idx;

CREATE TABLE user_metrics (
  id              bigint GENERATED ALWAYS AS IDENTITY,
  user_id         integer NOT NULL,
  device_id       varchar(255) NULL,
  talked_time     double precision NOT NULL
                  CONSTRAINT user_metrics_talked_time_check CHECK (talked_time >= 0 AND talked_time < 'Infinity'),
  microphone_used boolean NOT NULL,
  speaker_used    boolean NOT NULL,
  voice_sentiment double precision NULL
                  CONSTRAINT user_metrics_voice_sentiment_check
                  CHECK (voice_sentiment > '-Infinity' AND voice_sentiment < 'Infinity'),
  time_recorded   timestamptz NOT NULL,
  event_id        uuid NULL,
  received_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT user_metrics_pkey PRIMARY KEY (id, time_recorded)
) PARTITION BY RANGE (time_recorded);
-- As in 0006: NOT VALID, so that the old partition's rows need not satisfy them.
ALTER TABLE user_metrics
  ADD CONSTRAINT user_metrics_talked_time_range CHECK (talked_time <= 86400) NOT VALID;
ALTER TABLE user_metrics
  ADD CONSTRAINT user_metrics_voice_sentiment_range CHECK (voice_sentiment BETWEEN -1 AND 1) NOT VALID;
CREATE UNIQUE INDEX user_metrics_time_recorded_user_id_event_id_key
  ON user_metrics (time_recorded, user_id, event_id);
CREATE INDEX user_metrics_user_id_time_recorded_idx ON user_metrics (user_id, time_recorded);

-- The statement-level reference checks of 0002, on the parent (a statement through it fires these,
-- not the partitions' own) and, through this function, on every partition (a statement that names a
-- partition fires only that partition's). PostgreSQL 15 allows statement triggers with transition
-- tables on both.
CREATE FUNCTION user_metrics_guard_partition(partition regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('CREATE TRIGGER user_metrics_check_references_on_insert AFTER INSERT ON %s '
                 'REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT '
                 'EXECUTE FUNCTION user_metrics_check_references()', partition);
  EXECUTE format('CREATE TRIGGER user_metrics_check_references_on_update AFTER UPDATE ON %s '
                 'REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT '
                 'EXECUTE FUNCTION user_metrics_check_references()', partition);
END;
$$;
SELECT user_metrics_guard_partition('user_metrics');

CREATE TABLE user_metrics_default PARTITION OF user_metrics DEFAULT;
SELECT user_metrics_guard_partition('user_metrics_default');

DO $$
DECLARE
  newest timestamptz;
  last_id bigint;
BEGIN
  SELECT max(time_recorded), max(id) INTO newest, last_id FROM user_metrics_before_0007;
  IF newest IS NULL THEN
    DROP TABLE user_metrics_before_0007;
    RETURN;
  END IF;
  -- Ids go on after the old ones.
  PERFORM setval(pg_get_serial_sequence('user_metrics', 'id'), last_id);
  -- Attaching checks the partition constraint with one scan (no copy, no rewrite); the missing indexes
  -- of the new keys are built on it here, which takes a while on a big table.
  EXECUTE format('ALTER TABLE user_metrics ATTACH PARTITION user_metrics_before_0007 FOR VALUES FROM (MINVALUE) TO (%L)',
                 (date_trunc('day', newest AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC');
END;
$$;
