-- Up Migration

-- A recording is at most a day long (talked_time in seconds, 0 .. 86400; 0001 already refuses < 0)
-- and a voice sentiment is a score from -1 to 1. The gateway refuses values outside at the door; these
-- constraints hold every other writer to the same ranges. NOT VALID: adding them takes no scan of the
-- table and keeps rows stored before (reads cope with any finite value). Such an old row cannot be
-- updated until it is fixed, and that includes deleting its device (which sets its device_id to null).
-- Once no row is out of range, VALIDATE CONSTRAINT (a scan that does not block writes) makes them full.
ALTER TABLE user_metrics
  ADD CONSTRAINT user_metrics_talked_time_range CHECK (talked_time <= 86400) NOT VALID;
ALTER TABLE user_metrics
  ADD CONSTRAINT user_metrics_voice_sentiment_range CHECK (voice_sentiment BETWEEN -1 AND 1) NOT VALID;

-- Down Migration

ALTER TABLE user_metrics DROP CONSTRAINT user_metrics_voice_sentiment_range;
ALTER TABLE user_metrics DROP CONSTRAINT user_metrics_talked_time_range;
