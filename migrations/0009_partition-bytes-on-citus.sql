-- Up Migration

-- How many bytes a partition of user_metrics takes (table, indexes, TOAST), as /metrics, /v1/stats and
-- the status page show it. On one server that is pg_total_relation_size. On a Citus coordinator
-- (migration 0008) a distributed partition's rows live in shards on the workers and the coordinator's
-- table is an empty shell: citus_total_relation_size adds the shards up (one query to each worker).
-- Chosen here by what the database is, so that the gateway reads the same function on both.
DO $citus$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
    CREATE FUNCTION user_metrics_partition_bytes(partition regclass) RETURNS bigint
      LANGUAGE sql STABLE
      AS $f$
        SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = partition)
                    THEN citus_total_relation_size(partition)
                    ELSE pg_total_relation_size(partition) END
      $f$;
  ELSE
    CREATE FUNCTION user_metrics_partition_bytes(partition regclass) RETURNS bigint
      LANGUAGE sql STABLE
      AS $f$ SELECT pg_total_relation_size(partition) $f$;
  END IF;
END
$citus$;

-- Down Migration

DROP FUNCTION user_metrics_partition_bytes(regclass);
