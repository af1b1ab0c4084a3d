-- Days whose ingestion report was written to S3 and announced on SNS: the daily job writes a day once
-- across replicas (under an advisory lock) and records it here when both succeeded.
CREATE TABLE daily_reports (
    report_date    DATE PRIMARY KEY,
    json_key       TEXT NOT NULL,
    html_key       TEXT NOT NULL,
    sns_message_id TEXT NOT NULL,
    generated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
