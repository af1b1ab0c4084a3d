output "bucket_name" {
  description = "Name of the bucket (S3_BUCKET_NAME)."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = aws_s3_bucket.this.arn
}

output "topic_arn" {
  description = "ARN of the change-notification topic (SNS_TOPIC_ARN)."
  value       = aws_sns_topic.this.arn
}

output "queue_url" {
  description = "URL of the ingestion queue (SQS_QUEUE_URL)."
  value       = aws_sqs_queue.this.id
}

output "queue_arn" {
  description = "ARN of the ingestion queue."
  value       = aws_sqs_queue.this.arn
}

output "queue_name" {
  description = "Name of the ingestion queue (CloudWatch dimension)."
  value       = aws_sqs_queue.this.name
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.id
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_name" {
  description = "Name of the dead-letter queue (CloudWatch dimension)."
  value       = aws_sqs_queue.dlq.name
}

output "kms_key_arn" {
  description = "ARN of the key encrypting the bucket, topic and queues (the app needs kms:Decrypt/GenerateDataKey on it)."
  value       = module.kms.key_arn
}
