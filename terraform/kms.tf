################################################################################
# Customer-managed KMS keys (rotated yearly), one per kind of data: S3 objects, ECR images,
# the database (storage, Performance Insights, the managed master secret, its log groups).
# Key policies delegate to IAM (the account root statement): who may use a key is decided by
# the IAM policies in iam.tf and github.tf, which name each key's ARN.
################################################################################

data "aws_iam_policy_document" "kms_account_root" {
  #checkov:skip=CKV_AWS_109:This is a KMS key policy, not an identity policy: Resource "*" means the key it is attached to, and the account-root statement is AWS's default key policy that hands access control to IAM (the scoped policies in iam.tf/github.tf).
  #checkov:skip=CKV_AWS_111:KMS key policy; Resource "*" is the key itself and the only principal is this account's root (delegation to IAM), see CKV_AWS_109.
  #checkov:skip=CKV_AWS_356:KMS key policy; a key policy cannot name other resources, "*" is the key itself (see CKV_AWS_109).
  statement {
    sid       = "EnableIAMPolicies"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy "*" means "this key"

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

data "aws_iam_policy_document" "kms_rds" {
  source_policy_documents = [data.aws_iam_policy_document.kms_account_root.json]

  statement {
    sid    = "AllowCloudWatchLogsForRdsLogGroups"
    effect = "Allow"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"] # in a key policy "*" means "this key"

    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/rds/instance/${local.full_name}/*"]
    }
  }
}

resource "aws_kms_key" "s3" {
  description             = "${local.full_name}: S3 buckets (landing, dagster-io, mlflow-artifacts)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_account_root.json
}

resource "aws_kms_alias" "s3" {
  name          = "alias/${local.full_name}-s3"
  target_key_id = aws_kms_key.s3.key_id
}

resource "aws_kms_key" "ecr" {
  description             = "${local.full_name}: ECR repositories"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_account_root.json
}

resource "aws_kms_alias" "ecr" {
  name          = "alias/${local.full_name}-ecr"
  target_key_id = aws_kms_key.ecr.key_id
}

resource "aws_kms_key" "rds" {
  description             = "${local.full_name}: RDS storage, Performance Insights, master secret, log groups"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_rds.json
}

resource "aws_kms_alias" "rds" {
  name          = "alias/${local.full_name}-rds"
  target_key_id = aws_kms_key.rds.key_id
}
