-- The lake's outbox (SPEC 11): a file whose rows are to be appended to an Iceberg table is recorded in the
-- file's own load transaction, so a committed load always has its export pending and a rolled-back one
-- never does. The exporter marks the row exported after the Iceberg commit that carries the file id; a
-- crash in between is found again by that id in the table's snapshots, never exported twice.
CREATE TABLE lake_exports (
    file_id       BIGINT PRIMARY KEY REFERENCES file_processing_log (id) ON DELETE CASCADE,
    lake_table    TEXT NOT NULL CHECK (lake_table ~ '^[a-z_][a-z0-9_]{0,254}$'),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    exported_at   TIMESTAMPTZ,
    snapshot_id   BIGINT,
    rows_exported BIGINT CHECK (rows_exported >= 0),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error    TEXT
);

CREATE INDEX lake_exports_pending_idx ON lake_exports (created_at) WHERE exported_at IS NULL;
