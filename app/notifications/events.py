"""The service's own change notifications: what marks them and the events they announce."""

SERVICE_SOURCE = "aws-s3-service"  # the `source` of every notification the service publishes
EVENT_UPDATED = "object.updated"
EVENT_UPLOADED = "object.uploaded"
EVENT_DAILY_REPORT = "report.daily"  # the daily ingestion report was written to S3
