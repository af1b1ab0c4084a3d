# The service's permissions, scoped to its own bucket, topic, queues and keys. One managed policy is
# attached to both the ECS task role (here) and the EKS IRSA role (modules/irsa); so are the policies of
# optional features (extra_task_policy_arns here, extra_policy_arns there: the lake's).
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_iam_policy_document" "app" {
  statement {
    sid = "BucketLevel"
    # ListBucket backs HeadBucket (/ready) and 404-vs-403 on reads; ListBucketVersions backs the
    # consumer's lookup of the version an event was about.
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [var.bucket_arn]
  }

  statement {
    sid = "Objects"
    # PutObject covers the multipart upload calls except the abort.
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:PutObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${var.bucket_arn}/*"]
  }

  statement {
    sid       = "PublishChanges"
    actions   = ["sns:Publish"]
    resources = [var.topic_arn]
  }

  statement {
    sid = "IngestionQueue"
    # SendMessage: POST /users/sqs/send and the DLQ redrive put messages back on this queue.
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:SendMessage",
    ]
    resources = [var.queue_arn]
  }

  statement {
    sid = "DeadLetterQueue"
    # The redrive finds the DLQ from the queue's RedrivePolicy (GetQueueUrl), then receives and deletes.
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [var.dlq_arn]
  }

  statement {
    sid       = "DataKeys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = var.kms_key_arns
  }

  dynamic "statement" {
    for_each = length(var.cross_account_role_arns) > 0 ? [1] : []
    content {
      sid       = "CrossAccountSources"
      actions   = ["sts:AssumeRole"]
      resources = var.cross_account_role_arns
    }
  }
}

resource "aws_iam_policy" "app" {
  name        = "${var.name}-app"
  description = "aws-s3-service: its bucket, topic, queues and keys"
  policy      = data.aws_iam_policy_document.app.json
  tags        = var.tags
}

# --- ECS roles ----------------------------------------------------------------------------------
data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "task" {
  count = var.create_ecs_roles ? 1 : 0

  name               = "${var.name}-task"
  description        = "aws-s3-service containers on ECS"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "task" {
  count = var.create_ecs_roles ? 1 : 0

  role       = aws_iam_role.task[0].name
  policy_arn = aws_iam_policy.app.arn
}

# Policies of optional features (the lake), keyed by a fixed name so their ARNs may be unknown at plan.
resource "aws_iam_role_policy_attachment" "task_extra" {
  for_each = var.create_ecs_roles ? var.extra_task_policy_arns : {}

  role       = aws_iam_role.task[0].name
  policy_arn = each.value
}

resource "aws_iam_role" "execution" {
  count = var.create_ecs_roles ? 1 : 0

  name               = "${var.name}-task-execution"
  description        = "ECS agent for aws-s3-service: pull the image, write logs, read the injected secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  count = var.create_ecs_roles ? 1 : 0

  role       = aws_iam_role.execution[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "InjectedSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = var.execution_secret_arns
  }

  dynamic "statement" {
    for_each = length(var.execution_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DecryptSecrets"
      actions   = ["kms:Decrypt"]
      resources = var.execution_kms_key_arns
    }
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  count = var.create_ecs_roles && length(var.execution_secret_arns) > 0 ? 1 : 0

  name   = "read-injected-secrets"
  role   = aws_iam_role.execution[0].id
  policy = data.aws_iam_policy_document.execution_secrets.json
}
