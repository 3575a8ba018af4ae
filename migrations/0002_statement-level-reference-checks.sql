-- Up Migration

-- Per-row foreign keys made PostgreSQL check every row of a COPY one by one (about 30-50k rows/s
-- here, a seventh of a bare COPY). The same guarantees are kept with one check per statement: after
-- an INSERT or UPDATE, the distinct users and devices that the new rows name are locked FOR KEY SHARE
-- (as a foreign key would lock them, so a concurrent delete waits) and the statement fails with
-- SQLSTATE 23503 if any is missing. Deleting a user deletes its metrics; deleting a device sets
-- device_id to null, both once per statement. This holds for every writer, not only the gateway.

ALTER TABLE user_metrics DROP CONSTRAINT user_metrics_user_id_fkey;
ALTER TABLE user_metrics DROP CONSTRAINT user_metrics_device_id_fkey;

CREATE FUNCTION user_metrics_check_references() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  user_ids integer[];
  device_ids varchar[];
  locked bigint;
  missing text;
BEGIN
  -- GROUP BY (a hash aggregate) rather than count(DISTINCT), which sorts.
  SELECT array_agg(user_id) INTO user_ids FROM (SELECT user_id FROM new_rows GROUP BY user_id) AS distinct_users;
  -- FOR KEY SHARE skips rows deleted by a transaction that committed while we waited for it.
  SELECT count(*) INTO locked FROM (SELECT 1 FROM users WHERE id = ANY (user_ids) FOR KEY SHARE) AS present;
  IF locked < coalesce(cardinality(user_ids), 0) THEN
    SELECT id::text INTO missing FROM unnest(user_ids) AS wanted (id)
     WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = wanted.id) LIMIT 1;
    RAISE EXCEPTION 'insert or update on table "user_metrics" violates foreign key check on user_id'
      USING ERRCODE = 'foreign_key_violation', TABLE = 'user_metrics',
            DETAIL = format('Key (user_id)=(%s) is not present in table "users".', missing);
  END IF;

  SELECT array_agg(device_id) INTO device_ids
    FROM (SELECT device_id FROM new_rows WHERE device_id IS NOT NULL GROUP BY device_id) AS distinct_devices;
  IF device_ids IS NOT NULL THEN
    SELECT count(*) INTO locked FROM (SELECT 1 FROM devices WHERE id = ANY (device_ids) FOR KEY SHARE) AS present;
    IF locked < cardinality(device_ids) THEN
      SELECT id INTO missing FROM unnest(device_ids) AS wanted (id)
       WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = wanted.id) LIMIT 1;
      RAISE EXCEPTION 'insert or update on table "user_metrics" violates foreign key check on device_id'
        USING ERRCODE = 'foreign_key_violation', TABLE = 'user_metrics',
              DETAIL = format('Key (device_id)=(%s) is not present in table "devices".', missing);
    END IF;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER user_metrics_check_references_on_insert
  AFTER INSERT ON user_metrics REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION user_metrics_check_references();
CREATE TRIGGER user_metrics_check_references_on_update
  AFTER UPDATE ON user_metrics REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION user_metrics_check_references();

-- ON DELETE CASCADE for users, ON DELETE SET NULL for devices.
CREATE FUNCTION users_delete_metrics() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM user_metrics WHERE user_id IN (SELECT id FROM old_rows);
  RETURN NULL;
END;
$$;
CREATE TRIGGER users_delete_metrics AFTER DELETE ON users REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION users_delete_metrics();

CREATE FUNCTION devices_detach_metrics() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE user_metrics SET device_id = NULL WHERE device_id IN (SELECT id FROM old_rows);
  RETURN NULL;
END;
$$;
CREATE TRIGGER devices_detach_metrics AFTER DELETE ON devices REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION devices_detach_metrics();

-- A referenced key may not change (a foreign key's ON UPDATE NO ACTION), and neither table may be
-- truncated while metrics could point into it (a foreign key refuses that too).
CREATE FUNCTION users_refuse_referenced_key_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM user_metrics WHERE user_id = OLD.id) THEN
    RAISE EXCEPTION 'update on table "users" changes key (id)=(%) that user_metrics references', OLD.id
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER users_refuse_referenced_key_change BEFORE UPDATE OF id ON users
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION users_refuse_referenced_key_change();

CREATE FUNCTION devices_refuse_referenced_key_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM user_metrics WHERE device_id = OLD.id) THEN
    RAISE EXCEPTION 'update on table "devices" changes key (id)=(%) that user_metrics references', OLD.id
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER devices_refuse_referenced_key_change BEFORE UPDATE OF id ON devices
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION devices_refuse_referenced_key_change();

CREATE FUNCTION refuse_truncate_while_referenced() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM user_metrics) THEN
    RAISE EXCEPTION 'cannot truncate table "%": user_metrics references it', TG_TABLE_NAME
      USING ERRCODE = 'feature_not_supported', HINT = 'Truncate user_metrics first, or DELETE the rows.';
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER users_refuse_truncate BEFORE TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate_while_referenced();
CREATE TRIGGER devices_refuse_truncate BEFORE TRUNCATE ON devices
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate_while_referenced();

-- Down Migration

DROP TRIGGER devices_refuse_truncate ON devices;
DROP TRIGGER users_refuse_truncate ON users;
DROP FUNCTION refuse_truncate_while_referenced();
DROP TRIGGER devices_refuse_referenced_key_change ON devices;
DROP FUNCTION devices_refuse_referenced_key_change();
DROP TRIGGER users_refuse_referenced_key_change ON users;
DROP FUNCTION users_refuse_referenced_key_change();
DROP TRIGGER devices_detach_metrics ON devices;
DROP FUNCTION devices_detach_metrics();
DROP TRIGGER users_delete_metrics ON users;
DROP FUNCTION users_delete_metrics();
DROP TRIGGER user_metrics_check_references_on_update ON user_metrics;
DROP TRIGGER user_metrics_check_references_on_insert ON user_metrics;
DROP FUNCTION user_metrics_check_references();
ALTER TABLE user_metrics ADD CONSTRAINT user_metrics_user_id_fkey
  FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE user_metrics ADD CONSTRAINT user_metrics_device_id_fkey
  FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE SET NULL;
