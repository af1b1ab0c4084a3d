"""The SQS consumer and exactly-once file ingestion into PostgreSQL."""
