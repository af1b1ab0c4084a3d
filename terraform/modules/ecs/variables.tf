variable "name" {
  description = "Name of the cluster, service and task family (e.g. aws-s3-service-dev)."
  type        = string
}

variable "aws_region" {
  description = "Region of the service (AWS_REGION and the awslogs region)."
  type        = string
}

variable "image" {
  description = "Container image, <ecr repository url>:<tag>."
  type        = string

  validation {
    condition     = can(regex(":[^/]+$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must carry an explicit tag other than latest (the repository's tags are immutable)."
  }
}

variable "cpu" {
  description = "Task CPU units (256 = 0.25 vCPU)."
  type        = number

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.cpu)
    error_message = "cpu must be a Fargate size: 256, 512, 1024, 2048 or 4096."
  }
}

variable "memory" {
  description = "Task memory in MiB (must be valid for the chosen cpu)."
  type        = number

  validation {
    condition     = var.memory >= 512 && var.memory <= 30720
    error_message = "memory must be between 512 and 30720 MiB."
  }
}

variable "desired_count" {
  description = "Tasks kept running (the minimum when autoscaling is on)."
  type        = number

  validation {
    condition     = var.desired_count >= 1
    error_message = "desired_count must be at least 1."
  }
}

variable "autoscaling_max_count" {
  description = "Upper bound of CPU target-tracking autoscaling; null disables autoscaling."
  type        = number
  default     = null
}

variable "autoscaling_cpu_target" {
  description = "Average CPU utilisation (percent) the autoscaling keeps the service at."
  type        = number
  default     = 60

  validation {
    condition     = var.autoscaling_cpu_target > 10 && var.autoscaling_cpu_target < 95
    error_message = "autoscaling_cpu_target must be between 10 and 95."
  }
}

variable "container_port" {
  description = "Port uvicorn listens on in the container."
  type        = number
  default     = 8000
}

variable "vpc_id" {
  description = "VPC of the tasks."
  type        = string
}

variable "vpc_cidr_block" {
  description = "CIDR of the VPC (PostgreSQL is reached inside it)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets the tasks run in."
  type        = list(string)
}

variable "alb_security_group_id" {
  description = "Security group of the load balancer; the only source allowed to reach the tasks."
  type        = string
}

variable "target_group_arn" {
  description = "Target group the tasks register in."
  type        = string
}

variable "task_role_arn" {
  description = "Role the service's code runs as (bucket, topic, queues)."
  type        = string
}

variable "execution_role_arn" {
  description = "Role the ECS agent uses to pull the image, write logs and read the injected secrets."
  type        = string
}

variable "environment" {
  description = "Plain environment variables of the container (S3_BUCKET_NAME, SNS_TOPIC_ARN, ...)."
  type        = map(string)

  validation {
    condition     = alltrue([for k in ["S3_BUCKET_NAME", "SNS_TOPIC_ARN", "SQS_QUEUE_URL"] : contains(keys(var.environment), k)])
    error_message = "environment must set S3_BUCKET_NAME, SNS_TOPIC_ARN and SQS_QUEUE_URL (the app refuses to start without them)."
  }

  validation {
    condition     = length(setintersection(keys(var.environment), ["DATABASE_URL", "JWT_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])) == 0
    error_message = "Secrets and static AWS keys never go in plain environment variables: use secrets (and the task role)."
  }
}

variable "secrets" {
  description = "Environment variables injected from Secrets Manager: name -> secret ARN (DATABASE_URL, JWT_SECRET)."
  type        = map(string)

  validation {
    condition     = contains(keys(var.secrets), "DATABASE_URL")
    error_message = "secrets must provide DATABASE_URL."
  }
}

variable "log_retention_days" {
  description = "Retention of the container log group, in days."
  type        = number

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts."
  }
}

variable "log_kms_key_arn" {
  description = "KMS key encrypting the log groups and ECS Exec sessions."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
