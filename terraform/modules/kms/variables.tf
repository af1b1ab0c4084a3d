variable "name" {
  description = "Alias suffix of the key (alias/<name>) and Name tag."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9/_-]+$", var.name))
    error_message = "name may contain letters, digits, '/', '_' and '-' only."
  }
}

variable "description" {
  description = "What the key protects; shown in the KMS console."
  type        = string
}

variable "service_principals" {
  description = "AWS service principals (e.g. s3.amazonaws.com, sns.amazonaws.com) that may encrypt/decrypt with the key on behalf of this account."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.service_principals : endswith(p, ".amazonaws.com")])
    error_message = "service_principals must be AWS service principals ending in .amazonaws.com."
  }
}

variable "cloudwatch_logs" {
  description = "Allow CloudWatch Logs in this region to encrypt log groups of this account with the key."
  type        = bool
  default     = false
}

variable "deletion_window_in_days" {
  description = "Waiting period before a scheduled key deletion takes effect."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
