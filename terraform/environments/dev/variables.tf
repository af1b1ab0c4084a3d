# Defaults are the dev sizes; override in terraform.tfvars or with -var.

# --- account and naming --------------------------------------------------------------------------
variable "aws_region" {
  description = "Region of the whole stack (also the app's AWS_REGION)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region name such as us-east-1."
  }
}

variable "aws_account_id" {
  description = "Account the stack belongs to; the provider refuses to run against any other. null skips the check."
  type        = string
  default     = null

  validation {
    condition     = var.aws_account_id == null || can(regex("^[0-9]{12}$", var.aws_account_id))
    error_message = "aws_account_id must be 12 digits."
  }
}

variable "project" {
  description = "Project name, the first part of every resource name."
  type        = string
  default     = "aws-s3-service"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.project))
    error_message = "project must be 2-21 lower case letters, digits and dashes, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name, the second part of every resource name."
  type        = string
  default     = "dev"

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "bucket_name" {
  description = "Name of the service's bucket; null derives <project>-<environment>-<account id>-<region>."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags on every resource (Project, Environment and ManagedBy are always set)."
  type        = map(string)
  default     = {}
}

# --- what to deploy ------------------------------------------------------------------------------
variable "enable_ecs" {
  description = "Run the service on ECS Fargate behind an ALB."
  type        = bool
  default     = true
}

variable "enable_eks" {
  description = "Create the EKS cluster and the IRSA role for the Helm chart."
  type        = bool
  default     = true
}

variable "enable_rds" {
  description = "Create the PostgreSQL instance and its DATABASE_URL secret; false needs database_url_secret_arn."
  type        = bool
  default     = true
}

variable "database_url_secret_arn" {
  description = "Existing Secrets Manager secret holding DATABASE_URL, used when enable_rds is false."
  type        = string
  default     = null

  validation {
    condition     = var.database_url_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.database_url_secret_arn))
    error_message = "database_url_secret_arn must be a Secrets Manager secret ARN."
  }
}

# --- network -------------------------------------------------------------------------------------
variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC."
  type        = string
  default     = "10.10.0.0/16"
}

variable "availability_zone_suffixes" {
  description = "Zone letters within aws_region to use (a, b -> us-east-1a, us-east-1b); one subnet pair and, without single_nat_gateway, one NAT gateway each."
  type        = list(string)
  default     = ["a", "b"]

  validation {
    condition     = length(var.availability_zone_suffixes) >= 2 && alltrue([for s in var.availability_zone_suffixes : can(regex("^[a-z]$", s))])
    error_message = "availability_zone_suffixes must be at least two single letters."
  }
}

variable "single_nat_gateway" {
  description = "One shared NAT gateway (cheap) instead of one per AZ (survives a zone failure)."
  type        = bool
  default     = true
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow logs, in days."
  type        = number
  default     = 30
}

# --- the application -----------------------------------------------------------------------------
variable "image_tag" {
  description = "Tag of the image in the ECR repository to run (the git SHA CI pushed)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid Docker tag other than latest (latest moves; deploy a build's own tag)."
  }
}

variable "log_level" {
  description = "LOG_LEVEL of the service."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "create_jwt_secret" {
  description = "Generate an HS256 JWT_SECRET in Secrets Manager (dev/test tokens); production uses jwt_jwks_url."
  type        = bool
  default     = true
}

variable "jwt_jwks_url" {
  description = "JWKS URL of the identity provider (JWT_JWKS_URL); null when only JWT_SECRET is used."
  type        = string
  default     = null

  validation {
    condition     = var.jwt_jwks_url == null || startswith(coalesce(var.jwt_jwks_url, "-"), "https://")
    error_message = "jwt_jwks_url must be an https:// URL."
  }
}

variable "jwt_issuer" {
  description = "Expected iss claim (JWT_ISSUER); required with jwt_jwks_url."
  type        = string
  default     = null
}

variable "jwt_audience" {
  description = "Expected aud claim (JWT_AUDIENCE); required with jwt_jwks_url."
  type        = string
  default     = null
}

variable "s3_bucket_roles" {
  description = "Buckets of other accounts the service ingests from: bucket name -> role ARN it assumes (S3_BUCKET_ROLES)."
  type        = map(string)
  default     = {}
}

# --- ECS -----------------------------------------------------------------------------------------
variable "ecs_cpu" {
  description = "Task CPU units."
  type        = number
  default     = 256
}

variable "ecs_memory" {
  description = "Task memory, MiB."
  type        = number
  default     = 512
}

variable "ecs_desired_count" {
  description = "Tasks running (the autoscaling minimum)."
  type        = number
  default     = 1
}

variable "ecs_autoscaling_max_count" {
  description = "Autoscaling ceiling on CPU; null keeps a fixed task count."
  type        = number
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the service's and the EKS control plane's logs, in days."
  type        = number
  default     = 14

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts."
  }
}

variable "certificate_arn" {
  description = "ACM certificate of the public host name; null serves HTTP only."
  type        = string
  default     = null
}

variable "alb_ingress_cidrs" {
  description = "Client networks allowed to the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "alb_deletion_protection" {
  description = "Deletion protection of the load balancer."
  type        = bool
  default     = false
}

# --- EKS -----------------------------------------------------------------------------------------
variable "eks_version" {
  description = "Kubernetes version of the cluster (1.29 or newer)."
  type        = string
  default     = "1.31"
}

variable "eks_node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
  default     = ["t3.medium"]
}

variable "eks_node_min_size" {
  description = "Minimum nodes."
  type        = number
  default     = 1
}

variable "eks_node_desired_size" {
  description = "Nodes at creation."
  type        = number
  default     = 2
}

variable "eks_node_max_size" {
  description = "Maximum nodes."
  type        = number
  default     = 3

  validation {
    condition     = var.eks_node_max_size >= 1
    error_message = "eks_node_max_size must be at least 1."
  }
}

variable "eks_endpoint_public_access" {
  description = "Expose the Kubernetes API publicly (to eks_public_access_cidrs only); false: reachable from the VPC only."
  type        = bool
  default     = false
}

variable "eks_public_access_cidrs" {
  description = "Operator / CI networks allowed to the public Kubernetes API."
  type        = list(string)
  default     = []
}

variable "k8s_namespace" {
  description = "Namespace the Helm release is installed in (IRSA trust)."
  type        = string
  default     = "aws-s3-service"
}

variable "k8s_service_account" {
  description = "Service account of the Helm release (IRSA trust); the chart names it after the release."
  type        = string
  default     = "aws-s3-service"
}

# --- RDS -----------------------------------------------------------------------------------------
variable "rds_instance_class" {
  description = "DB instance class."
  type        = string
  default     = "db.t4g.small"
}

variable "rds_engine_version" {
  description = "PostgreSQL version (15 or newer)."
  type        = string
  default     = "16"
}

variable "rds_multi_az" {
  description = "Standby in a second AZ."
  type        = bool
  default     = false
}

variable "rds_deletion_protection" {
  description = "Deletion protection (and a final snapshot on destroy)."
  type        = bool
  default     = false
}

variable "rds_backup_retention_days" {
  description = "Days of automated backups."
  type        = number
  default     = 3
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored (0: deleted at once, so a re-created dev stack can reuse the name)."
  type        = number
  default     = 0

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

# --- storage and alerting ------------------------------------------------------------------------
variable "bucket_force_destroy" {
  description = "Let terraform destroy the bucket with objects in it."
  type        = bool
  default     = true
}

variable "s3_access_log_bucket" {
  description = "Existing bucket for S3 server access logs; null disables them."
  type        = string
  default     = null
}

variable "alb_access_logs_bucket" {
  description = "Existing bucket for ALB access logs; null disables them."
  type        = string
  default     = null
}

variable "alert_emails" {
  description = "Addresses subscribed to the alerts topic."
  type        = list(string)
  default     = []
}

# --- lake (Iceberg tables in Glue, queried with Athena) ------------------------------------------
variable "lake_enabled" {
  description = "Create the lake (warehouse bucket, Glue database, Athena workgroup, the app's lake policy on the task and IRSA roles) and set LAKE_WAREHOUSE, LAKE_CATALOG=glue and LAKE_NAMESPACE on ECS."
  type        = bool
  default     = false
}

variable "lake_noncurrent_version_days" {
  description = "Days a replaced or deleted warehouse file (orphaned by compaction or snapshot expiry) stays restorable."
  type        = number
  default     = 7
}

variable "athena_results_retention_days" {
  description = "Days Athena query results are kept."
  type        = number
  default     = 7
}

variable "athena_bytes_scanned_cutoff_per_query" {
  description = "Bytes one Athena query may scan before it is cancelled (at least 10485760, 10 MiB)."
  type        = number
  default     = 1073741824 # 1 GiB
}
