variable "name" {
  description = "Name of the role (e.g. aws-s3-service-dev-irsa)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "oidc_issuer_url" {
  description = "Issuer URL of the cluster (https://oidc.eks.<region>.amazonaws.com/id/<id>)."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the service account."
  type        = string
  default     = "aws-s3-service"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace)) && length(var.namespace) <= 63
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "service_account" {
  description = "Name of the Kubernetes service account the pods run as (the Helm chart's serviceAccount.name)."
  type        = string
  default     = "aws-s3-service"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", var.service_account)) && length(var.service_account) <= 253
    error_message = "service_account must be a DNS-1123 subdomain."
  }
}

variable "policy_arn" {
  description = "Managed policy with the service's permissions (modules/iam policy_arn)."
  type        = string
}

variable "extra_policy_arns" {
  description = "More managed policies for the role, by a fixed name (e.g. lake = the lake module's app_policy_arn)."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
