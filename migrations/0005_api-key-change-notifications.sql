-- Up Migration

-- Every change to a key that a gateway may have cached is announced on the channel api_key_changes,
-- whoever makes it (`npm run keys -- revoke`, psql, a restore): the payload is the key's SHA-256 in
-- hex (as stored; never the key), or '' after a TRUNCATE for "every key". Each gateway LISTENs and
-- drops that key from its cache, so a revocation takes effect at once rather than after
-- AUTH_CACHE_TTL_MS. last_used_at, written by every lookup, is not announced: gateways would drop each
-- other's cached keys on every lookup.
CREATE FUNCTION api_keys_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify('api_key_changes', '');
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    PERFORM pg_notify('api_key_changes', encode(OLD.key_hash, 'hex'));
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.key_hash <> OLD.key_hash) THEN
    PERFORM pg_notify('api_key_changes', encode(NEW.key_hash, 'hex'));
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_notify_update AFTER UPDATE ON api_keys FOR EACH ROW
  WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.scope IS DISTINCT FROM NEW.scope
        OR OLD.name IS DISTINCT FROM NEW.name
        OR OLD.key_hash IS DISTINCT FROM NEW.key_hash)
  EXECUTE FUNCTION api_keys_notify_change();
CREATE TRIGGER api_keys_notify_insert_delete AFTER INSERT OR DELETE ON api_keys FOR EACH ROW
  EXECUTE FUNCTION api_keys_notify_change();
CREATE TRIGGER api_keys_notify_truncate AFTER TRUNCATE ON api_keys FOR EACH STATEMENT
  EXECUTE FUNCTION api_keys_notify_change();

-- Down Migration

DROP TRIGGER api_keys_notify_truncate ON api_keys;
DROP TRIGGER api_keys_notify_insert_delete ON api_keys;
DROP TRIGGER api_keys_notify_update ON api_keys;
DROP FUNCTION api_keys_notify_change();
