-- Initial schema: user records, the file processing log, loaded rows, and the audit trail.

CREATE TABLE users_personal (
    user_id       TEXT PRIMARY KEY CHECK (user_id ~ '^[A-Za-z0-9._-]{1,128}$'),
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email         TEXT NOT NULL CHECK (length(email) <= 320),
    phone         TEXT CHECK (length(phone) <= 40),
    address       TEXT CHECK (length(address) <= 500),
    date_of_birth DATE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users_financial (
    user_id        TEXT PRIMARY KEY CHECK (user_id ~ '^[A-Za-z0-9._-]{1,128}$'),
    account_number TEXT NOT NULL CHECK (length(account_number) BETWEEN 4 AND 34),
    credit_score   INTEGER CHECK (credit_score BETWEEN 300 AND 850),
    annual_income  NUMERIC(15, 2) CHECK (annual_income >= 0),
    total_debt     NUMERIC(15, 2) CHECK (total_debt >= 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users_health (
    user_id     TEXT PRIMARY KEY CHECK (user_id ~ '^[A-Za-z0-9._-]{1,128}$'),
    blood_type  TEXT CHECK (blood_type IN ('A+', 'A-', 'B+', 'B-', 'AB+', 'AB-', 'O+', 'O-')),
    conditions  TEXT[] NOT NULL DEFAULT '{}',
    medications TEXT[] NOT NULL DEFAULT '{}',
    allergies   TEXT[] NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE file_processing_log (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket           TEXT NOT NULL,
    key              TEXT NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 1024),
    version_id       TEXT,
    etag             TEXT,
    -- What makes one object version unique: the S3 version id, else the ETag.
    object_version   TEXT GENERATED ALWAYS AS (COALESCE(version_id, etag, '')) STORED,
    sha256           TEXT CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes       BIGINT CHECK (size_bytes >= 0),
    content_type     TEXT,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'skipped')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    rows_read        BIGINT NOT NULL DEFAULT 0 CHECK (rows_read >= 0),
    rows_inserted    BIGINT NOT NULL DEFAULT 0 CHECK (rows_inserted >= 0),
    rows_skipped     BIGINT NOT NULL DEFAULT 0 CHECK (rows_skipped >= 0),
    rows_rejected    BIGINT NOT NULL DEFAULT 0 CHECK (rows_rejected >= 0),
    error_code       TEXT,
    error_message    TEXT,
    trigger          TEXT NOT NULL CHECK (trigger IN ('sqs', 'sns', 'api', 'cli', 'reconcile')),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    CONSTRAINT file_processing_log_object_version_key UNIQUE (bucket, key, object_version),
    CONSTRAINT file_processing_log_lease_pair
        CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);

CREATE INDEX file_processing_log_created_idx ON file_processing_log (created_at DESC, id DESC);
CREATE INDEX file_processing_log_status_idx ON file_processing_log (status, created_at DESC);
CREATE INDEX file_processing_log_key_prefix_idx ON file_processing_log (bucket, key text_pattern_ops);

CREATE TABLE processed_data (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id      BIGINT NOT NULL REFERENCES file_processing_log (id) ON DELETE CASCADE,
    bucket       TEXT NOT NULL,
    key          TEXT NOT NULL,
    record_index BIGINT NOT NULL CHECK (record_index >= 0),
    row_hash     TEXT NOT NULL CHECK (row_hash ~ '^[0-9a-f]{64}$'),
    data         JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A re-uploaded object only adds the rows not yet seen under its key.
    CONSTRAINT processed_data_row_key UNIQUE (bucket, key, row_hash)
);

CREATE INDEX processed_data_file_idx ON processed_data (file_id, record_index);
CREATE INDEX processed_data_created_idx ON processed_data (created_at);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('read', 'create', 'update', 'delete')),
    record_type TEXT NOT NULL CHECK (record_type IN ('financial', 'health')),
    user_id     TEXT NOT NULL,
    request_id  TEXT
);

CREATE INDEX audit_log_user_idx ON audit_log (user_id, occurred_at DESC);
CREATE INDEX audit_log_time_idx ON audit_log (occurred_at);
