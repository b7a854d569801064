# Predictive-maintenance platform on AWS: network, EKS, storage, registry, database, IAM and
# the in-cluster services (Dagster, MLflow, kube-prometheus-stack). Resources are split by
# kind into network.tf, eks.tf, kms.tf, s3.tf, ecr.tf, rds.tf, iam.tf, github.tf,
# kubernetes.tf and helm.tf; this file holds the shared data sources and names.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# The zones named in var.availability_zone_letters, checked to exist and be available.
data "aws_availability_zones" "selected" {
  state = "available"

  filter {
    name   = "zone-name"
    values = [for letter in var.availability_zone_letters : "${var.region}${letter}"]
  }
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # "<name>-<environment>", e.g. pdm-prod: the EKS cluster, the RDS instance, KMS aliases.
  full_name    = "${var.name}-${var.environment}"
  cluster_name = local.full_name
  azs          = sort(data.aws_availability_zones.selected.names)

  tags = merge(
    {
      Project     = var.name
      Environment = var.environment
      ManagedBy   = "terraform"
      Repository  = var.github_repository
    },
    var.tags,
  )

  # Buckets, named from var.bucket_prefix.
  buckets = {
    landing          = "${var.bucket_prefix}-landing"
    dagster_io       = "${var.bucket_prefix}-dagster-io"
    mlflow_artifacts = "${var.bucket_prefix}-mlflow-artifacts"
  }
  access_logs_bucket = "${var.bucket_prefix}-access-logs"

  # ECR repositories: the Bento image and the Dagster user-code image.
  ecr_repositories = {
    risk_service = "pdm-risk-service"
    user_code    = "pdm-dagster-user-code"
  }
  ecr_registry = "${local.account_id}.dkr.ecr.${var.region}.amazonaws.com"

  # Kubernetes namespaces and service accounts (IRSA subjects).
  namespaces = {
    dagster    = "dagster"
    mlflow     = "mlflow"
    monitoring = "monitoring"
    serving    = "pdm-prod"
    db_admin   = "pdm-db-admin"
  }
  service_accounts = {
    dagster_user_code = "dagster-user-code"
    mlflow            = "mlflow"
    risk_service      = "pdm-risk-service"
  }

  # Databases (and their owner roles) on the one PostgreSQL instance.
  databases = {
    dagster = "dagster"
    mlflow  = "mlflow"
  }

  mlflow_tracking_uri = "http://mlflow.${local.namespaces.mlflow}.svc.cluster.local:5000"

  # Environment of the Dagster run pods and the user-code deployment (pdm_resources reads it).
  pdm_runtime_env = {
    PDM_ENV               = "prod" # the S3 resources (pdm_resources/environment.py), whatever var.environment names
    PDM_S3_BUCKET         = local.buckets.dagster_io
    PDM_S3_PREFIX         = var.dagster_io_prefix
    PDM_LANDING_S3_BUCKET = local.buckets.landing
    PDM_LANDING_S3_PREFIX = var.landing_prefix
    AWS_REGION            = var.region
    AWS_DEFAULT_REGION    = var.region
    MLFLOW_TRACKING_URI   = local.mlflow_tracking_uri
  }
}
