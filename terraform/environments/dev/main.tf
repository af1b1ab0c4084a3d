# One environment of aws-s3-service. dev and prod share this file; they differ in variables.tf
# defaults (sizes, redundancy, protection) and in their state key (backend.tf).
data "aws_caller_identity" "current" {}

locals {
  name        = "${var.project}-${var.environment}"
  account_id  = data.aws_caller_identity.current.account_id
  bucket_name = coalesce(var.bucket_name, "${local.name}-${local.account_id}-${var.aws_region}")
  tags = merge(var.tags, {
    Project     = var.project
    Environment = var.environment
    ManagedBy   = "terraform"
  })

  # Must equal the app's SQS_VISIBILITY_TIMEOUT_SECONDS (the heartbeat's extension step): short, so a
  # dead task's messages come back within seconds (README: "Recovery after a crash").
  sqs_visibility_timeout_seconds = 30

  database_url_secret_arn = var.enable_rds ? module.rds[0].database_url_secret_arn : var.database_url_secret_arn
  app_secret_arns = merge(
    { DATABASE_URL = local.database_url_secret_arn },
    var.create_jwt_secret ? { JWT_SECRET = aws_secretsmanager_secret.jwt[0].arn } : {},
  )

  # The lake (lake_enabled): Glue and Athena names allow no dashes, so the database is <project>_<env>.
  lake_bucket_name   = "${local.name}-lake-${local.account_id}-${var.aws_region}"
  lake_database_name = replace(local.name, "-", "_")
  # The lake's policy for the service's roles (ECS task role, IRSA role); a fixed key, known at plan.
  lake_policy_arns = var.lake_enabled ? { lake = module.lake[0].app_policy_arn } : {}
}

# Settings that depend on each other are checked at plan time (variable validations cannot see
# other variables before Terraform 1.9).
resource "terraform_data" "config_checks" {
  lifecycle {
    precondition {
      condition     = var.enable_rds || var.database_url_secret_arn != null
      error_message = "Without enable_rds, set database_url_secret_arn to a secret holding DATABASE_URL."
    }
    precondition {
      condition     = var.create_jwt_secret || var.jwt_jwks_url != null
      error_message = "The service needs create_jwt_secret or jwt_jwks_url (JWT_SECRET or JWT_JWKS_URL)."
    }
    precondition {
      condition     = var.jwt_jwks_url == null || (var.jwt_issuer != null && var.jwt_audience != null)
      error_message = "With jwt_jwks_url, set jwt_issuer and jwt_audience too: the service refuses to start without them."
    }
    precondition {
      condition     = var.enable_ecs || var.enable_eks
      error_message = "Enable at least one runtime: enable_ecs or enable_eks."
    }
  }
}

# Key for operational data: log groups, alerts topic, ECR, EKS secrets, RDS and Secrets Manager.
module "kms" {
  source = "../../modules/kms"

  name               = "${local.name}-ops"
  description        = "${local.name}: logs, alerts, images, EKS secrets, database and app secrets"
  cloudwatch_logs    = true
  service_principals = ["cloudwatch.amazonaws.com"]
  tags               = local.tags
}

module "vpc" {
  source = "../../modules/vpc"

  name                    = local.name
  cidr_block              = var.vpc_cidr
  availability_zones      = [for s in var.availability_zone_suffixes : "${var.aws_region}${s}"]
  single_nat_gateway      = var.single_nat_gateway
  flow_log_retention_days = var.flow_log_retention_days
  log_kms_key_arn         = module.kms.key_arn
  cluster_name            = var.enable_eks ? local.name : null
  tags                    = local.tags
}

module "ecr" {
  source = "../../modules/ecr"

  name        = local.name
  kms_key_arn = module.kms.key_arn
  tags        = local.tags
}

module "alarms" {
  source = "../../modules/alarms"

  name                    = local.name
  kms_key_arn             = module.kms.key_arn
  alert_emails            = var.alert_emails
  queue_name              = module.messaging.queue_name
  alb_alarms              = var.enable_ecs
  alb_arn_suffix          = var.enable_ecs ? module.alb[0].arn_suffix : ""
  target_group_arn_suffix = var.enable_ecs ? module.alb[0].target_group_arn_suffix : ""
  tags                    = local.tags
}

module "messaging" {
  source = "../../modules/messaging"

  name                       = local.name
  bucket_name                = local.bucket_name
  force_destroy              = var.bucket_force_destroy
  access_log_bucket          = var.s3_access_log_bucket
  visibility_timeout_seconds = local.sqs_visibility_timeout_seconds
  max_receive_count          = 5
  alarm_actions              = [module.alarms.topic_arn]
  tags                       = local.tags
}

module "iam" {
  source = "../../modules/iam"

  name                    = local.name
  bucket_arn              = module.messaging.bucket_arn
  topic_arn               = module.messaging.topic_arn
  queue_arn               = module.messaging.queue_arn
  dlq_arn                 = module.messaging.dlq_arn
  kms_key_arns            = [module.messaging.kms_key_arn]
  cross_account_role_arns = values(var.s3_bucket_roles)
  create_ecs_roles        = var.enable_ecs
  execution_secret_arns   = values(local.app_secret_arns)
  execution_kms_key_arns  = [module.kms.key_arn]
  extra_task_policy_arns  = local.lake_policy_arns
  tags                    = local.tags
}

# --- lake: Iceberg tables registered in Glue, queried with Athena ---------------------------------
module "lake" {
  source = "../../modules/lake"
  count  = var.lake_enabled ? 1 : 0

  name                                  = local.name
  bucket_name                           = local.lake_bucket_name
  database_name                         = local.lake_database_name
  force_destroy                         = var.bucket_force_destroy
  access_log_bucket                     = var.s3_access_log_bucket
  noncurrent_version_days               = var.lake_noncurrent_version_days
  athena_results_days                   = var.athena_results_retention_days
  athena_bytes_scanned_cutoff_per_query = var.athena_bytes_scanned_cutoff_per_query
  tags                                  = local.tags
}

# --- app secrets ---------------------------------------------------------------------------------
resource "random_password" "jwt" {
  count = var.create_jwt_secret ? 1 : 0

  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "jwt" {
  #checkov:skip=CKV2_AWS_57:an HS256 signing secret; rotating it invalidates every issued token, so it is replaced deliberately (terraform apply -replace).
  count = var.create_jwt_secret ? 1 : 0

  name                    = "${local.name}/jwt-secret"
  description             = "JWT_SECRET (HS256) of aws-s3-service"
  kms_key_id              = module.kms.key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret_version" "jwt" {
  count = var.create_jwt_secret ? 1 : 0

  secret_id     = aws_secretsmanager_secret.jwt[0].id
  secret_string = random_password.jwt[0].result
}

# --- database ------------------------------------------------------------------------------------
module "rds" {
  source = "../../modules/rds"
  count  = var.enable_rds ? 1 : 0

  name                  = local.name
  engine_version        = var.rds_engine_version
  instance_class        = var.rds_instance_class
  multi_az              = var.rds_multi_az
  deletion_protection   = var.rds_deletion_protection
  backup_retention_days = var.rds_backup_retention_days
  vpc_id                = module.vpc.vpc_id
  private_subnet_ids    = module.vpc.private_subnet_ids
  allowed_security_group_ids = concat(
    var.enable_ecs ? [module.ecs[0].tasks_security_group_id] : [],
    var.enable_eks ? [module.eks[0].cluster_security_group_id] : [],
  )
  kms_key_arn                 = module.kms.key_arn
  secret_recovery_window_days = var.secret_recovery_window_days
  tags                        = local.tags
}

# --- ECS Fargate ---------------------------------------------------------------------------------
module "alb" {
  source = "../../modules/alb"
  count  = var.enable_ecs ? 1 : 0

  name                = local.name
  vpc_id              = module.vpc.vpc_id
  vpc_cidr_block      = module.vpc.vpc_cidr_block
  public_subnet_ids   = module.vpc.public_subnet_ids
  certificate_arn     = var.certificate_arn
  ingress_cidr_blocks = var.alb_ingress_cidrs
  deletion_protection = var.alb_deletion_protection
  access_logs_bucket  = var.alb_access_logs_bucket
  tags                = local.tags
}

module "ecs" {
  source = "../../modules/ecs"
  count  = var.enable_ecs ? 1 : 0

  name                  = local.name
  aws_region            = var.aws_region
  image                 = "${module.ecr.repository_url}:${var.image_tag}"
  cpu                   = var.ecs_cpu
  memory                = var.ecs_memory
  desired_count         = var.ecs_desired_count
  autoscaling_max_count = var.ecs_autoscaling_max_count
  vpc_id                = module.vpc.vpc_id
  vpc_cidr_block        = module.vpc.vpc_cidr_block
  private_subnet_ids    = module.vpc.private_subnet_ids
  alb_security_group_id = module.alb[0].security_group_id
  target_group_arn      = module.alb[0].target_group_arn
  task_role_arn         = module.iam.task_role_arn
  execution_role_arn    = module.iam.execution_role_arn
  log_retention_days    = var.log_retention_days
  log_kms_key_arn       = module.kms.key_arn

  environment = merge(
    {
      S3_BUCKET_NAME                 = module.messaging.bucket_name
      SNS_TOPIC_ARN                  = module.messaging.topic_arn
      SQS_QUEUE_URL                  = module.messaging.queue_url
      SQS_VISIBILITY_TIMEOUT_SECONDS = tostring(local.sqs_visibility_timeout_seconds)
      AWS_REGION                     = var.aws_region
      LOG_FORMAT                     = "json"
      LOG_LEVEL                      = var.log_level
    },
    var.jwt_jwks_url == null ? {} : { JWT_JWKS_URL = var.jwt_jwks_url },
    var.jwt_issuer == null ? {} : { JWT_ISSUER = var.jwt_issuer },
    var.jwt_audience == null ? {} : { JWT_AUDIENCE = var.jwt_audience },
    length(var.s3_bucket_roles) == 0 ? {} : { S3_BUCKET_ROLES = jsonencode(var.s3_bucket_roles) },
    var.lake_enabled ? {
      LAKE_WAREHOUSE = module.lake[0].warehouse
      LAKE_CATALOG   = "glue"
      LAKE_NAMESPACE = module.lake[0].glue_database_name
    } : {},
  )
  secrets = local.app_secret_arns

  tags = local.tags

  depends_on = [terraform_data.config_checks]
}

# --- EKS -----------------------------------------------------------------------------------------
module "eks" {
  source = "../../modules/eks"
  count  = var.enable_eks ? 1 : 0

  name                   = local.name
  kubernetes_version     = var.eks_version
  private_subnet_ids     = module.vpc.private_subnet_ids
  endpoint_public_access = var.eks_endpoint_public_access
  public_access_cidrs    = var.eks_public_access_cidrs
  node_instance_types    = var.eks_node_instance_types
  node_min_size          = var.eks_node_min_size
  node_desired_size      = var.eks_node_desired_size
  node_max_size          = var.eks_node_max_size
  kms_key_arn            = module.kms.key_arn
  log_retention_days     = var.log_retention_days
  tags                   = local.tags
}

module "irsa" {
  source = "../../modules/irsa"
  count  = var.enable_eks ? 1 : 0

  name              = "${local.name}-irsa"
  oidc_provider_arn = module.eks[0].oidc_provider_arn
  oidc_issuer_url   = module.eks[0].oidc_issuer_url
  namespace         = var.k8s_namespace
  service_account   = var.k8s_service_account
  policy_arn        = module.iam.policy_arn
  extra_policy_arns = local.lake_policy_arns
  tags              = local.tags
}
