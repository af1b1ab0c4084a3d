variable "name" {
  description = "Identifier of the instance and prefix of its companions (e.g. aws-s3-service-dev)."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL major (\"16\") or major.minor version."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?$", var.engine_version)) && try(tonumber(split(".", var.engine_version)[0]) >= 15, false)
    error_message = "engine_version must be PostgreSQL 15 or newer."
  }
}

variable "instance_class" {
  description = "DB instance class."
  type        = string
  default     = "db.t4g.small"

  validation {
    condition     = startswith(var.instance_class, "db.")
    error_message = "instance_class must be an RDS class such as db.t4g.small."
  }
}

variable "allocated_storage_gib" {
  description = "Initial storage, GiB."
  type        = number
  default     = 20

  validation {
    condition     = var.allocated_storage_gib >= 20
    error_message = "allocated_storage_gib must be at least 20 (gp3 minimum)."
  }
}

variable "max_allocated_storage_gib" {
  description = "Ceiling of storage autoscaling, GiB."
  type        = number
  default     = 100
}

variable "database_name" {
  description = "Database created in the instance (the DSN's path)."
  type        = string
  default     = "app"
}

variable "username" {
  description = "Master user the service connects as."
  type        = string
  default     = "app"
}

variable "multi_az" {
  description = "Keep a synchronous standby in another AZ (prod)."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Refuse to delete the instance; also keeps a final snapshot on destroy."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days automated backups (point-in-time recovery) are kept."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35 (0 would disable backups)."
  }
}

variable "vpc_id" {
  description = "VPC of the instance."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (two or more AZs) of the DB subnet group."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "A DB subnet group needs subnets in at least two availability zones."
  }
}

variable "allowed_security_group_ids" {
  description = "Security groups allowed to connect on 5432 (ECS tasks, EKS nodes)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key encrypting storage, Performance Insights and the DATABASE_URL secret."
  type        = string
}

variable "secret_recovery_window_days" {
  description = "Days a deleted DATABASE_URL secret can still be restored (0 deletes at once)."
  type        = number
  default     = 7
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
