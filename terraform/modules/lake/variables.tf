variable "name" {
  description = "Name prefix of the key, policies and Athena workgroup (e.g. aws-s3-service-dev)."
  type        = string
}

variable "bucket_name" {
  description = "Globally unique name of the lake's bucket (Iceberg warehouse and Athena query results)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of lower case letters, digits, '.' and '-'."
  }
}

variable "warehouse_prefix" {
  description = "Folder of the bucket holding the Iceberg warehouse (the app's LAKE_WAREHOUSE is s3://<bucket>/<prefix>)."
  type        = string
  default     = "warehouse"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", var.warehouse_prefix)) && var.warehouse_prefix != "athena-results"
    error_message = "warehouse_prefix must be one folder name (lower case letters, digits, '_', '-'), other than athena-results."
  }
}

variable "database_name" {
  description = "Glue database of the lake's tables, the app's LAKE_NAMESPACE (Glue and Athena names allow no dashes)."
  type        = string

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,254}$", var.database_name))
    error_message = "database_name must be lower case letters, digits and '_' (Glue/Athena names), at most 255 characters."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy the bucket with objects in it, and the workgroup with its saved queries (disposable environments only)."
  type        = bool
  default     = false
}

variable "access_log_bucket" {
  description = "Existing bucket receiving S3 server access logs; null disables access logging."
  type        = string
  default     = null
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted warehouse file is kept (files orphaned by compaction or snapshot expiry stay restorable that long)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "athena_results_days" {
  description = "Days Athena query results are kept under athena-results/ in the bucket."
  type        = number
  default     = 30

  validation {
    condition     = var.athena_results_days >= 1
    error_message = "athena_results_days must be at least 1."
  }
}

variable "athena_bytes_scanned_cutoff_per_query" {
  description = "Bytes one Athena query of the workgroup may scan before Athena cancels it (at least 10 MiB)."
  type        = number
  default     = 10737418240

  validation {
    condition     = var.athena_bytes_scanned_cutoff_per_query >= 10485760
    error_message = "athena_bytes_scanned_cutoff_per_query must be at least 10485760 (10 MiB), Athena's minimum."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
