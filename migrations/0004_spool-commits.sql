-- Up Migration

-- Rows acknowledged with wait=false are first written to a gateway's local spool. Each batch that
-- stores spooled rows records their spool sequence numbers here in the same transaction, so that a
-- gateway replaying its spool after a crash skips the rows that were already committed.
CREATE TABLE spool_commits (
  spool_id     uuid NOT NULL,
  first_seq    bigint NOT NULL,
  last_seq     bigint NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT now(),
  CHECK (first_seq <= last_seq)
);
CREATE INDEX spool_commits_spool_id_idx ON spool_commits (spool_id, last_seq);

-- Down Migration

DROP TABLE spool_commits;
