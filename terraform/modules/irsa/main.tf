# IAM role for the service's pods: only tokens of one service account in one namespace of this
# cluster, audience sts.amazonaws.com, may assume it.
locals {
  issuer = trimprefix(var.oidc_issuer_url, "https://")
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  description        = "aws-s3-service pods (${var.namespace}/${var.service_account}) via IRSA"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "this" {
  role       = aws_iam_role.this.name
  policy_arn = var.policy_arn
}

# Policies of optional features (the lake), keyed by a fixed name so their ARNs may be unknown at plan.
resource "aws_iam_role_policy_attachment" "extra" {
  for_each = var.extra_policy_arns

  role       = aws_iam_role.this.name
  policy_arn = each.value
}
