################################################################################
# IAM roles for service accounts (IRSA), least privilege per workload:
#   dagster/dagster-user-code  (user-code server and every run pod): read/write dagster-io,
#                               landing (incoming/archive/quarantine only), mlflow-artifacts;
#   mlflow/mlflow              (tracking server, proxied artifact serving): mlflow-artifacts;
#   pdm-prod/pdm-risk-service  (the Bento): read-only mlflow-artifacts, for loading a model
#                               straight from the registry's artifact store.
# Each role is trusted only by its own service account through the cluster's OIDC provider.
################################################################################

locals {
  bucket_arns = { for k, b in aws_s3_bucket.data : k => b.arn }
  landing_zone_folders = [
    for folder in ["incoming", "archive", "quarantine"] : "${var.landing_prefix}/${folder}"
  ]

  irsa = {
    dagster_user_code = {
      role_name       = "${var.name}-dagster-user-code-${var.environment}"
      namespace       = local.namespaces.dagster
      service_account = local.service_accounts.dagster_user_code
      policy          = data.aws_iam_policy_document.dagster_user_code.json
    }
    mlflow = {
      role_name       = "${var.name}-mlflow-${var.environment}"
      namespace       = local.namespaces.mlflow
      service_account = local.service_accounts.mlflow
      policy          = data.aws_iam_policy_document.mlflow.json
    }
    # Default name pdm-risk-service-prod: the role ARN in
    # bento_service/k8s/overlays/prod/serviceaccount-patch.yaml.
    risk_service = {
      role_name       = "${var.name}-risk-service-${var.environment}"
      namespace       = local.namespaces.serving
      service_account = local.service_accounts.risk_service
      policy          = data.aws_iam_policy_document.risk_service.json
    }
  }
}

data "aws_iam_policy_document" "irsa_assume" {
  for_each = local.irsa

  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:sub"
      values   = ["system:serviceaccount:${each.value.namespace}:${each.value.service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "irsa" {
  for_each = local.irsa

  name                 = each.value.role_name
  description          = "IRSA for ${each.value.namespace}/${each.value.service_account}"
  assume_role_policy   = data.aws_iam_policy_document.irsa_assume[each.key].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "irsa" {
  for_each = local.irsa

  name   = "${each.value.role_name}-s3"
  role   = aws_iam_role.irsa[each.key].id
  policy = each.value.policy
}

# SSE-KMS: reading needs kms:Decrypt, writing kms:GenerateDataKey, both only through S3.
data "aws_iam_policy_document" "s3_kms_read_write" {
  statement {
    sid       = "S3KeyThroughS3Only"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.s3.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "dagster_user_code" {
  source_policy_documents = [data.aws_iam_policy_document.s3_kms_read_write.json]

  statement {
    sid       = "ListDagsterIoAndMlflowArtifacts"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arns.dagster_io, local.bucket_arns.mlflow_artifacts]
  }

  statement {
    sid    = "ReadWriteDagsterIoAndMlflowArtifacts"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${local.bucket_arns.dagster_io}/*", "${local.bucket_arns.mlflow_artifacts}/*"]
  }

  statement {
    sid       = "ListLandingZoneFolders"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arns.landing]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = flatten([for f in local.landing_zone_folders : [f, "${f}/*"]])
    }
  }

  statement {
    sid       = "LandingBucketLocation"
    effect    = "Allow"
    actions   = ["s3:GetBucketLocation"]
    resources = [local.bucket_arns.landing]
  }

  statement {
    sid    = "ReadWriteLandingZoneFolders"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = [for f in local.landing_zone_folders : "${local.bucket_arns.landing}/${f}/*"]
  }
}

data "aws_iam_policy_document" "mlflow" {
  source_policy_documents = [data.aws_iam_policy_document.s3_kms_read_write.json]

  statement {
    sid       = "ListMlflowArtifacts"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arns.mlflow_artifacts]
  }

  statement {
    sid    = "ReadWriteMlflowArtifacts"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${local.bucket_arns.mlflow_artifacts}/*"]
  }
}

data "aws_iam_policy_document" "risk_service" {
  statement {
    sid       = "ListMlflowArtifacts"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arns.mlflow_artifacts]
  }

  statement {
    sid       = "ReadMlflowArtifacts"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arns.mlflow_artifacts}/*"]
  }

  statement {
    sid       = "DecryptThroughS3Only"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.s3.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}
