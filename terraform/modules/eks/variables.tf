variable "name" {
  description = "Name of the cluster (e.g. aws-s3-service-dev)."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and node groups."
  type        = string
  default     = "1.31"

  validation {
    condition     = can(regex("^1\\.[0-9]+$", var.kubernetes_version)) && try(tonumber(split(".", var.kubernetes_version)[1]) >= 29, false)
    error_message = "kubernetes_version must be 1.29 or newer, written as 1.NN."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (two or more AZs) of the control plane ENIs and the nodes."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two availability zones."
  }
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API endpoint publicly (restricted to public_access_cidrs); false keeps it VPC-only."
  type        = bool
  default     = false
}

variable "public_access_cidrs" {
  description = "Networks allowed to the public API endpoint when endpoint_public_access is true."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "public_access_cidrs must not contain 0.0.0.0/0: name the operator / CI networks."
  }
}

variable "node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
  default     = ["t3.medium"]
}

variable "node_min_size" {
  description = "Minimum number of nodes."
  type        = number
  default     = 1
}

variable "node_desired_size" {
  description = "Nodes at creation (the cluster autoscaler may change it afterwards)."
  type        = number
  default     = 2
}

variable "node_max_size" {
  description = "Maximum number of nodes."
  type        = number
  default     = 3

  validation {
    condition     = var.node_max_size >= 1
    error_message = "node_max_size must be at least 1."
  }
}

variable "node_disk_size_gib" {
  description = "Root volume size of each node, GiB."
  type        = number
  default     = 50
}

variable "kms_key_arn" {
  description = "KMS key encrypting Kubernetes secrets and the control-plane log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the control-plane log group, in days."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
