# The service's Iceberg lake (issue 19): one bucket holding the warehouse (<prefix>/, written by the app
# through pyiceberg) and Athena's query results (athena-results/), its own KMS key, the Glue database the
# tables are registered in, an Athena workgroup to query them, and two managed policies: the app's
# (attached to the ECS task role and the IRSA role by the environment) and the analysts' (query only).
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  warehouse      = "s3://${aws_s3_bucket.this.id}/${var.warehouse_prefix}"
  results_prefix = "athena-results"

  glue_catalog_arn  = "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog"
  glue_database_arn = "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/${var.database_name}"
  # Every table of the database, and only those (tables are created by the app, one per data set).
  glue_tables_arn  = "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${var.database_name}/*"
  workgroup_arn    = "arn:${local.partition}:athena:${local.region}:${local.account_id}:workgroup/${var.name}"
  data_catalog_arn = "arn:${local.partition}:athena:${local.region}:${local.account_id}:datacatalog/AwsDataCatalog"
}

# Its own key: whoever may query the lake gets kms:Decrypt on this key, not on the keys of the service's
# bucket, queues, logs or secrets. Athena and S3 use it with the caller's credentials: no service principal.
module "kms" {
  source = "../kms"

  name        = "${var.name}-lake"
  description = "${var.name}: Iceberg warehouse and Athena query results"
  tags        = var.tags
}

# --- bucket ------------------------------------------------------------------------------------
# A bucket of its own rather than a prefix of the service's bucket: that one sends every ObjectCreated to
# the ingestion queue, keeps noncurrent versions for ingestion, and is encrypted with the data-plane key.
resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:cross-region replication is a DR decision per environment; the lake is derived data, rebuilt from PostgreSQL and the service's bucket.
  #checkov:skip=CKV2_AWS_62:nothing consumes events of the lake's files: the app writes them and Athena reads them through the Glue catalog.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Data files that compaction or snapshot expiry delete stay restorable as noncurrent versions for
# noncurrent_version_days (lifecycle below), e.g. to roll a table back to an expired snapshot.
resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.kms.key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  # Whole bucket: uploads the app or Athena never completed, and versions replaced or deleted (files
  # orphaned by compaction, snapshot expiry or orphan-file removal; expired query results).
  rule {
    id     = "noncurrent-versions-and-incomplete-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # A deleted file leaves a delete marker; once its noncurrent version has expired, the marker goes too.
  rule {
    id     = "warehouse-expired-delete-markers"
    status = "Enabled"
    filter {
      prefix = "${var.warehouse_prefix}/"
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "expire-athena-results"
    status = "Enabled"
    filter {
      prefix = "${local.results_prefix}/"
    }
    expiration {
      days = var.athena_results_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_logging" "this" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.this.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.bucket_name}/"
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  # PutBucketPolicy fails while the public access block is being created.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# --- catalog and query engine -------------------------------------------------------------------
# The app registers its Iceberg tables here (pyiceberg's Glue catalog, LAKE_NAMESPACE). Terraform owns the
# database: the app may create and update tables in it, not databases. Tables land under
# <warehouse>/<database>.db/<table>, where pyiceberg puts them anyway.
resource "aws_glue_catalog_database" "this" {
  name         = var.database_name
  description  = "Iceberg tables of ${var.name} (written by the service; query with the Athena workgroup ${var.name})"
  location_uri = "${local.warehouse}/${var.database_name}.db"
  tags         = var.tags
}

resource "aws_athena_workgroup" "this" {
  name          = var.name
  description   = "Queries of the ${var.name} lake (Glue database ${var.database_name})"
  state         = "ENABLED"
  force_destroy = var.force_destroy

  configuration {
    # Clients cannot override the result location or turn its encryption off.
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff_per_query

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location       = "s3://${aws_s3_bucket.this.id}/${local.results_prefix}/"
      expected_bucket_owner = local.account_id

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = module.kms.key_arn
      }
    }
  }

  tags = var.tags
}

# --- the app's permissions ------------------------------------------------------------------------
# What pyiceberg's Glue catalog and its S3 file IO call while the app appends a file's rows: GetDatabase
# (table locations), GetTable/GetTables (load, exists, list), CreateTable (first write of a data set),
# UpdateTable (each commit, with Glue's version check); S3 object reads and writes under the warehouse
# prefix only; the lake's key.
data "aws_iam_policy_document" "app" {
  statement {
    sid = "GlueDatabaseExists"
    # pyiceberg's create_namespace_if_not_exists (app/lake/catalog.py) calls CreateDatabase and takes
    # AlreadyExists for "exists"; without the permission Glue answers AccessDenied instead. Scoped to the
    # one database Terraform creates above, it lets the app create nothing else.
    actions   = ["glue:CreateDatabase"]
    resources = [local.glue_catalog_arn, local.glue_database_arn]
  }

  statement {
    sid = "GlueTables"
    actions = [
      "glue:GetDatabase",
      "glue:GetTable",
      "glue:GetTables",
      "glue:CreateTable",
      "glue:UpdateTable",
    ]
    resources = [local.glue_catalog_arn, local.glue_database_arn, local.glue_tables_arn]
  }

  statement {
    sid     = "WarehouseList"
    actions = ["s3:ListBucket"]
    # The prefix condition also covers HeadObject on a missing key (pyiceberg checks a new metadata file
    # does not exist): S3 answers 404 rather than 403 only with ListBucket on that key.
    resources = [aws_s3_bucket.this.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.warehouse_prefix, "${var.warehouse_prefix}/*"]
    }
  }

  statement {
    sid = "WarehouseObjects"
    # DeleteObject: table maintenance (files of expired snapshots, orphaned files).
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${aws_s3_bucket.this.arn}/${var.warehouse_prefix}/*"]
  }

  statement {
    sid       = "LakeKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [module.kms.key_arn]
  }
}

resource "aws_iam_policy" "app" {
  name        = "${var.name}-lake"
  description = "aws-s3-service: write its Iceberg tables (Glue database ${var.database_name}, ${local.warehouse})"
  policy      = data.aws_iam_policy_document.app.json
  tags        = var.tags
}

# --- the analysts' permissions --------------------------------------------------------------------
# Attach to the roles or groups of whoever queries the lake: Athena in this workgroup only, the Glue
# database read-only, warehouse files read-only, results under athena-results/, and the lake's key.
data "aws_iam_policy_document" "query" {
  statement {
    sid = "AthenaWorkgroup"
    actions = [
      "athena:StartQueryExecution",
      "athena:StopQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:GetQueryResultsStream",
      "athena:GetQueryRuntimeStatistics",
      "athena:BatchGetQueryExecution",
      "athena:ListQueryExecutions",
      "athena:GetWorkGroup",
    ]
    resources = [local.workgroup_arn]
  }

  statement {
    sid = "AthenaCatalog"
    actions = [
      "athena:GetDataCatalog",
      "athena:ListDatabases",
      "athena:GetDatabase",
      "athena:ListTableMetadata",
      "athena:GetTableMetadata",
    ]
    resources = [local.data_catalog_arn]
  }

  statement {
    sid = "GlueRead"
    actions = [
      "glue:GetDatabase",
      "glue:GetTable",
      "glue:GetTables",
      "glue:GetPartitions",
    ]
    resources = [local.glue_catalog_arn, local.glue_database_arn, local.glue_tables_arn]
  }

  statement {
    sid       = "BucketLocation"
    actions   = ["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.this.arn]
  }

  statement {
    sid       = "BucketList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = [
        var.warehouse_prefix,
        "${var.warehouse_prefix}/*",
        local.results_prefix,
        "${local.results_prefix}/*",
      ]
    }
  }

  statement {
    sid       = "WarehouseRead"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.this.arn}/${var.warehouse_prefix}/*"]
  }

  statement {
    sid = "QueryResults"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.this.arn}/${local.results_prefix}/*"]
  }

  statement {
    sid       = "LakeKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [module.kms.key_arn]
  }
}

resource "aws_iam_policy" "query" {
  name        = "${var.name}-lake-query"
  description = "Query the ${var.name} lake with Athena (workgroup ${var.name}, Glue database ${var.database_name}), read-only"
  policy      = data.aws_iam_policy_document.query.json
  tags        = var.tags
}
