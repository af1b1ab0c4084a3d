output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "ARN of the ECS cluster."
  value       = aws_ecs_cluster.this.arn
}

output "service_name" {
  description = "Name of the ECS service (aws ecs update-service --service ...)."
  value       = aws_ecs_service.this.name
}

output "task_definition_family" {
  description = "Family of the task definition; CI registers new revisions with a new image tag."
  value       = aws_ecs_task_definition.this.family
}

output "log_group_name" {
  description = "CloudWatch log group of the containers."
  value       = aws_cloudwatch_log_group.app.name
}

output "tasks_security_group_id" {
  description = "Security group of the tasks (source allowed by the database)."
  value       = aws_security_group.tasks.id
}
