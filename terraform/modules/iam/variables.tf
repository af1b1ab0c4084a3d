variable "name" {
  description = "Name prefix of the policy and the ECS roles (e.g. aws-s3-service-dev)."
  type        = string
}

variable "bucket_arn" {
  description = "ARN of the service's bucket."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9.-]+$", var.bucket_arn))
    error_message = "bucket_arn must be an S3 bucket ARN (arn:aws:s3:::name)."
  }
}

variable "topic_arn" {
  description = "ARN of the change-notification topic the service publishes to."
  type        = string
}

variable "queue_arn" {
  description = "ARN of the ingestion queue."
  type        = string
}

variable "dlq_arn" {
  description = "ARN of the ingestion dead-letter queue (read and emptied by the redrive)."
  type        = string
}

variable "kms_key_arns" {
  description = "KMS keys encrypting the bucket, topic and queues."
  type        = list(string)

  validation {
    condition     = length(var.kms_key_arns) > 0
    error_message = "kms_key_arns must name at least one key: the bucket, topic and queues are encrypted."
  }
}

variable "cross_account_role_arns" {
  description = "Roles in other accounts the service assumes to read their buckets (the values of S3_BUCKET_ROLES)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.cross_account_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", arn))])
    error_message = "cross_account_role_arns must be IAM role ARNs."
  }
}

variable "create_ecs_roles" {
  description = "Create the ECS task role (the service) and task execution role (image pull, logs, secrets)."
  type        = bool
  default     = true
}

variable "extra_task_policy_arns" {
  description = "More managed policies for the ECS task role, by a fixed name (e.g. lake = the lake module's app_policy_arn)."
  type        = map(string)
  default     = {}
}

variable "execution_secret_arns" {
  description = "Secrets Manager secrets the ECS agent reads to inject DATABASE_URL and JWT_SECRET."
  type        = list(string)
  default     = []
}

variable "execution_kms_key_arns" {
  description = "KMS keys encrypting those secrets."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
