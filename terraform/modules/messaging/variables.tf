variable "name" {
  description = "Name prefix of the topic, queues and key (e.g. aws-s3-service-dev)."
  type        = string
}

variable "bucket_name" {
  description = "Globally unique name of the bucket holding the JSON objects and the files to ingest."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of lower case letters, digits, '.' and '-'."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy the bucket with objects in it (disposable environments only)."
  type        = bool
  default     = false
}

variable "access_log_bucket" {
  description = "Existing bucket receiving S3 server access logs; null disables access logging."
  type        = string
  default     = null
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept (ingestion may read older versions)."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_days >= 7
    error_message = "noncurrent_version_days must be at least 7: the consumer may look up the version an event named."
  }
}

variable "visibility_timeout_seconds" {
  description = "Visibility timeout of the ingestion queue; matches the app's SQS_VISIBILITY_TIMEOUT_SECONDS."
  type        = number
  default     = 30

  validation {
    condition     = var.visibility_timeout_seconds >= 30 && var.visibility_timeout_seconds <= 43200
    error_message = "visibility_timeout_seconds must be between 30 and 43200."
  }
}

variable "max_receive_count" {
  description = "Receives after which a message moves to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "alarm_actions" {
  description = "SNS topic ARNs notified when the dead-letter queue is not empty."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
