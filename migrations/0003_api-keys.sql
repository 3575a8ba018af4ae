-- Up Migration

-- API keys for AUTH_REQUIRED=true. A key is 32 random bytes, shown once by `npm run keys -- create`;
-- only its SHA-256 is stored (a fast hash is right for a high-entropy random secret: there is nothing
-- to guess). A revoked key keeps its row, so the name stays taken and `keys list` shows the history.
-- last_used_at is written when a gateway looks the key up, at most once per AUTH_CACHE_TTL_MS.
CREATE TABLE api_keys (
  id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name         text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$'),
  scope        text NOT NULL CHECK (scope IN ('ingest', 'admin')),
  key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz NULL,
  last_used_at timestamptz NULL
);

-- Down Migration

DROP TABLE api_keys;
