variable "name" {
  description = "Name prefix of every resource (e.g. aws-s3-service-dev)."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 CIDR of the VPC; cut into 16 equal subnets (/20s of a /16), public ones first."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && try(tonumber(split("/", var.cidr_block)[1]) <= 20, false)
    error_message = "cidr_block must be a valid IPv4 CIDR of /20 or larger."
  }
}

variable "availability_zones" {
  description = "Availability zones (names) to spread the subnets over, one public and one private subnet each."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4
    error_message = "Give 2 to 4 availability zones (EKS and the ALB need at least two)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all private subnets (cheap, dev) instead of one per AZ (zone-failure tolerant, prod)."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow log group, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a retention period CloudWatch Logs accepts."
  }
}

variable "log_kms_key_arn" {
  description = "KMS key ARN encrypting the flow log group (its policy must allow CloudWatch Logs)."
  type        = string
}

variable "cluster_name" {
  description = "EKS cluster name to tag the subnets for load balancer discovery; null when there is no cluster."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
