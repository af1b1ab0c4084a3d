-- Sources (app/sources): declarative contracts for the files under a bucket prefix. Each source owns one
-- typed table in the schema `sources`, created and altered by the service when a version is applied.
CREATE SCHEMA IF NOT EXISTS sources;

-- The sources in force: what routes a file (bucket, longest prefix, optional glob) and its current spec.
CREATE TABLE ingestion_sources (
    name       TEXT PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,47}$'),
    version    INTEGER NOT NULL CHECK (version >= 1),
    tenant     TEXT NOT NULL,
    bucket     TEXT NOT NULL,
    prefix     TEXT NOT NULL CHECK (prefix <> ''),
    glob       TEXT,
    spec       JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Two sources cannot route the same files.
CREATE UNIQUE INDEX ingestion_sources_route_idx ON ingestion_sources (bucket, prefix, COALESCE(glob, ''));

-- Every version ever applied, kept after a source is deleted: the processing log names the version that
-- loaded each file, and a source re-created under its old name continues its numbering.
CREATE TABLE ingestion_source_versions (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    spec       JSONB NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

ALTER TABLE file_processing_log
    ADD COLUMN source_name      TEXT,
    ADD COLUMN source_version   INTEGER,
    -- {"column: rule": count} of the file's rejected rows (typed sources only)
    ADD COLUMN rejected_by_rule JSONB;
