variable "name" {
  description = "Repository name (e.g. aws-s3-service)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$", var.name))
    error_message = "name must be a valid ECR repository name (lower case, digits, . _ - /)."
  }
}

variable "kms_key_arn" {
  description = "KMS key ARN encrypting the images."
  type        = string
}

variable "keep_tagged_images" {
  description = "Number of tagged images kept; older ones are expired by the lifecycle policy."
  type        = number
  default     = 50

  validation {
    condition     = var.keep_tagged_images >= 5
    error_message = "keep_tagged_images must be at least 5 so a rollback target always exists."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
