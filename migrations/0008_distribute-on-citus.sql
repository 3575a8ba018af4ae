-- Up Migration

-- On a Citus coordinator (the citus extension installed in this database) the tables are distributed
-- (issue 12); on plain PostgreSQL this migration does nothing. The gateway has no Citus code path:
-- COPY goes to the coordinator, which routes each row to its shard.
--
-- - users and devices become reference tables: a copy on every node, so the foreign keys below are
--   checked on the node that holds the metric, and reads join them locally.
-- - user_metrics is distributed by user_id (hash, 32 shards by default), with its partitions: each
--   partition is distributed the same way, co-located. Every unique key on a distributed table must
--   include the distribution column, so the primary key becomes (id, user_id, time_recorded) here;
--   id stays unique by construction (an identity, whose sequence Citus splits into a range per node).
--   The idempotency key (time_recorded, user_id, event_id) already holds user_id, so each shard
--   enforces it alone: deduplication is the same as on one server.
-- - The statement-level reference checks of 0002 become foreign keys again (the statement triggers
--   would run per shard, see only that shard's rows, and need citus.enable_unsafe_triggers): ON DELETE
--   CASCADE on user_id, ON DELETE SET NULL on device_id, checked on the workers. They are added after
--   create_distributed_table, which refuses a table with an identity column that already has foreign
--   keys to reference tables. user_metrics_guard_partition, which maintenance calls on each new
--   partition, does nothing on Citus: the foreign keys of the parent reach every partition.
-- - api_keys, spool_commits, rejected_metrics and pgmigrations stay plain tables on the coordinator:
--   small, written with the metrics in one transaction (spool_commits), never joined with them.
-- A coordinator that already holds rows moves them into the shards here (create_distributed_table
-- copies them), which takes a while on a big table.

DO $citus$
DECLARE
  partition regclass;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
    RETURN;
  END IF;

  FOR partition IN SELECT 'user_metrics'::regclass
                   UNION ALL SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'user_metrics'::regclass LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS user_metrics_check_references_on_insert ON %s', partition);
    EXECUTE format('DROP TRIGGER IF EXISTS user_metrics_check_references_on_update ON %s', partition);
  END LOOP;
  DROP TRIGGER users_delete_metrics ON users;
  DROP TRIGGER devices_detach_metrics ON devices;
  DROP TRIGGER users_refuse_referenced_key_change ON users;
  DROP TRIGGER devices_refuse_referenced_key_change ON devices;
  DROP TRIGGER users_refuse_truncate ON users;
  DROP TRIGGER devices_refuse_truncate ON devices;
  CREATE OR REPLACE FUNCTION user_metrics_guard_partition(partition regclass) RETURNS void
  LANGUAGE plpgsql AS $guard$
  BEGIN
    -- On Citus the parent's foreign keys check every partition (migration 0008).
  END;
  $guard$;

  ALTER TABLE user_metrics DROP CONSTRAINT user_metrics_pkey;
  ALTER TABLE user_metrics ADD CONSTRAINT user_metrics_pkey PRIMARY KEY (id, user_id, time_recorded);

  PERFORM create_reference_table('users');
  PERFORM create_reference_table('devices');
  PERFORM create_distributed_table('user_metrics', 'user_id');

  ALTER TABLE user_metrics ADD CONSTRAINT user_metrics_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
  ALTER TABLE user_metrics ADD CONSTRAINT user_metrics_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE SET NULL;
END;
$citus$;

-- Down Migration

-- Undistributing is a data move (undistribute_table) that an operator runs on purpose, not a rollback.
SELECT 1;
