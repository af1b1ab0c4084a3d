output "topic_arn" {
  description = "ARN of the alerts topic (subscribe pagers / chat here)."
  value       = aws_sns_topic.alerts.arn
}
