output "policy_arn" {
  description = "ARN of the managed policy with the service's permissions (attach to the IRSA role)."
  value       = aws_iam_policy.app.arn
}

output "policy_json" {
  description = "The same permissions as a JSON policy document."
  value       = data.aws_iam_policy_document.app.json
}

output "task_role_arn" {
  description = "ARN of the ECS task role (null when create_ecs_roles is false)."
  value       = one(aws_iam_role.task[*].arn)
}

output "execution_role_arn" {
  description = "ARN of the ECS task execution role (null when create_ecs_roles is false)."
  value       = one(aws_iam_role.execution[*].arn)
}
