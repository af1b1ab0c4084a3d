output "warehouse" {
  description = "s3://<bucket>/<prefix> of the Iceberg warehouse (the app's LAKE_WAREHOUSE)."
  value       = local.warehouse
}

output "bucket_name" {
  description = "Name of the lake's bucket (warehouse and Athena results)."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the lake's bucket."
  value       = aws_s3_bucket.this.arn
}

output "glue_database_name" {
  description = "Glue database of the lake's tables (the app's LAKE_NAMESPACE; Athena's database)."
  value       = aws_glue_catalog_database.this.name
}

output "athena_workgroup_name" {
  description = "Athena workgroup to query the lake in (results encrypted, per-query scan cutoff)."
  value       = aws_athena_workgroup.this.name
}

output "athena_results_location" {
  description = "Where the workgroup writes query results (expired after athena_results_days)."
  value       = "s3://${aws_s3_bucket.this.id}/${local.results_prefix}/"
}

output "kms_key_arn" {
  description = "ARN of the key encrypting the warehouse and the query results."
  value       = module.kms.key_arn
}

output "app_policy_arn" {
  description = "Managed policy with the app's lake permissions (attach to the ECS task role and the IRSA role)."
  value       = aws_iam_policy.app.arn
}

output "app_policy_json" {
  description = "The same permissions as a JSON policy document."
  value       = data.aws_iam_policy_document.app.json
}

output "query_policy_arn" {
  description = "Managed policy to query the lake with Athena, read-only (attach to analysts' roles or groups)."
  value       = aws_iam_policy.query.arn
}
