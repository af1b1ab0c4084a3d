# What the next steps need: CI pushes to ecr_repository_url; ECS runs from this state; the Helm
# chart takes the bucket/topic/queue, irsa_role_arn, the secrets and, with lake_enabled, the lake's
# warehouse and Glue database (docs/deploy-terraform.md).
output "alb_url" {
  description = "Base URL of the service on ECS (null without ECS)."
  value       = try(module.alb[0].url, null)
}

output "ecr_repository_url" {
  description = "Where CI pushes the image (docker push <url>:<git sha>)."
  value       = module.ecr.repository_url
}

output "s3_bucket_name" {
  description = "S3_BUCKET_NAME."
  value       = module.messaging.bucket_name
}

output "sqs_queue_url" {
  description = "SQS_QUEUE_URL."
  value       = module.messaging.queue_url
}

output "sqs_dlq_url" {
  description = "Dead-letter queue of the ingestion queue (found by the app through the redrive policy)."
  value       = module.messaging.dlq_url
}

output "sns_topic_arn" {
  description = "SNS_TOPIC_ARN."
  value       = module.messaging.topic_arn
}

output "ecs_cluster_name" {
  description = "ECS cluster (null without ECS)."
  value       = try(module.ecs[0].cluster_name, null)
}

output "ecs_service_name" {
  description = "ECS service (null without ECS)."
  value       = try(module.ecs[0].service_name, null)
}

output "ecs_task_role_arn" {
  description = "Role the ECS tasks run as."
  value       = module.iam.task_role_arn
}

output "eks_cluster_name" {
  description = "EKS cluster (aws eks update-kubeconfig --name ...; null without EKS)."
  value       = try(module.eks[0].cluster_name, null)
}

output "eks_cluster_endpoint" {
  description = "Kubernetes API endpoint (null without EKS)."
  value       = try(module.eks[0].cluster_endpoint, null)
}

output "irsa_role_arn" {
  description = "serviceAccount.roleArn of the Helm chart (null without EKS)."
  value       = try(module.irsa[0].role_arn, null)
}

output "app_policy_arn" {
  description = "Managed policy with the service's permissions (task role and IRSA role)."
  value       = module.iam.policy_arn
}

output "rds_endpoint" {
  description = "host:port of PostgreSQL (null without RDS)."
  value       = try(module.rds[0].endpoint, null)
}

output "database_url_secret_arn" {
  description = "Secrets Manager secret holding DATABASE_URL."
  value       = local.database_url_secret_arn
}

output "jwt_secret_arn" {
  description = "Secrets Manager secret holding JWT_SECRET (null when create_jwt_secret is false)."
  value       = try(aws_secretsmanager_secret.jwt[0].arn, null)
}

output "alerts_topic_arn" {
  description = "Alerts topic of the alarms; subscribe pagers or chat to it."
  value       = module.alarms.topic_arn
}

output "lake_warehouse" {
  description = "LAKE_WAREHOUSE, s3://<bucket>/warehouse (null without lake_enabled; Helm config.LAKE_WAREHOUSE)."
  value       = try(module.lake[0].warehouse, null)
}

output "lake_glue_database" {
  description = "Glue database of the lake's tables: LAKE_NAMESPACE and Athena's database (null without lake_enabled)."
  value       = try(module.lake[0].glue_database_name, null)
}

output "athena_workgroup" {
  description = "Athena workgroup to query the lake in (null without lake_enabled)."
  value       = try(module.lake[0].athena_workgroup_name, null)
}

output "athena_query_policy_arn" {
  description = "Managed policy to query the lake with Athena, read-only: attach to analysts' roles (null without lake_enabled)."
  value       = try(module.lake[0].query_policy_arn, null)
}
