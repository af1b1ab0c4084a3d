variable "name" {
  description = "Name of the load balancer and prefix of its target group and security group (at most 26 characters)."
  type        = string

  validation {
    condition     = length(var.name) <= 26
    error_message = "name must be at most 26 characters (ALB and target group names are limited to 32 with the suffixes added)."
  }
}

variable "vpc_id" {
  description = "VPC of the load balancer and its targets."
  type        = string
}

variable "vpc_cidr_block" {
  description = "CIDR of the VPC; the ALB only talks to targets inside it."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets (two or more AZs) the load balancer is placed in."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "An application load balancer needs subnets in at least two availability zones."
  }
}

variable "container_port" {
  description = "Port the service listens on inside the task."
  type        = number
  default     = 8000
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener; null serves plain HTTP only (dev without a domain)."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN or null."
  }
}

variable "ingress_cidr_blocks" {
  description = "Client networks allowed to reach the listeners."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "deletion_protection" {
  description = "Refuse to delete the load balancer until this is turned off."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "Existing bucket (with the ELB log delivery policy) receiving access logs; null disables them."
  type        = string
  default     = null
}

variable "idle_timeout" {
  description = "Seconds an idle connection is kept; large uploads stream through it."
  type        = number
  default     = 120
}

variable "web_acl_arn" {
  description = "WAFv2 web ACL to associate with the load balancer; null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
