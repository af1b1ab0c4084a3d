"""aws-s3-service: REST API over S3, SNS and PostgreSQL with an exactly-once SQS file ingester."""
