-- Audit rows of reads and changes that went through an S3 object name that object (bucket, key, and the
-- version id or ETag): an ingested change is traceable to the file that made it.
ALTER TABLE audit_log
    ADD COLUMN object_bucket  TEXT,
    ADD COLUMN object_key     TEXT,
    ADD COLUMN object_version TEXT;

-- updated_at orders a user record's versions: an API write sets it to the transaction's time, an ingested
-- record to the time its data is as of (the snapshot it came from, or when its file was written), and
-- ingestion never replaces a row with data older than the row's.
COMMENT ON COLUMN users_personal.updated_at IS 'when the data is as of; ingestion never replaces newer data';
COMMENT ON COLUMN users_financial.updated_at IS 'when the data is as of; ingestion never replaces newer data';
COMMENT ON COLUMN users_health.updated_at IS 'when the data is as of; ingestion never replaces newer data';
