variable "name" {
  description = "Name prefix of the alerts topic and the alarms (e.g. aws-s3-service-dev)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the alerts topic (its policy must let cloudwatch.amazonaws.com use it)."
  type        = string
}

variable "alert_emails" {
  description = "Addresses subscribed to the alerts topic (each must confirm the subscription)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alert_emails must be e-mail addresses."
  }
}

variable "queue_name" {
  description = "Name of the ingestion queue."
  type        = string
}

variable "oldest_message_age_threshold_seconds" {
  description = "Alarm when the oldest message of the ingestion queue is older than this (the consumer is stuck or too slow)."
  type        = number
  default     = 1800

  validation {
    condition     = var.oldest_message_age_threshold_seconds >= 900
    error_message = "The threshold must be at least 900 s: backed-off retries legitimately wait up to SQS_BACKOFF_MAX_SECONDS (900)."
  }
}

variable "alb_alarms" {
  description = "Create the load balancer alarms (the ECS deployment has an ALB)."
  type        = bool
  default     = true
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (used when alb_alarms is true)."
  type        = string
  default     = ""
}

variable "target_group_arn_suffix" {
  description = "ARN suffix of the target group (used when alb_alarms is true)."
  type        = string
  default     = ""
}

variable "error_rate_threshold_percent" {
  description = "Alarm when 5xx responses exceed this share of the requests over 5 minutes."
  type        = number
  default     = 5

  validation {
    condition     = var.error_rate_threshold_percent > 0 && var.error_rate_threshold_percent <= 100
    error_message = "error_rate_threshold_percent must be in (0, 100]."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
