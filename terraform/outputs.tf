################################################################################
# General / GitHub repository variables (README.md: "After the first apply")
################################################################################

output "region" {
  description = "AWS region of the platform (GitHub variable AWS_REGION)."
  value       = var.region
}

output "aws_account_id" {
  description = "AWS account the platform runs in."
  value       = local.account_id
}

output "github_deploy_role_arn" {
  description = "Role GitHub Actions CD assumes through OIDC (GitHub variable AWS_DEPLOY_ROLE_ARN)."
  value       = aws_iam_role.github_deploy.arn
}

output "github_terraform_role_arn" {
  description = "Role GitHub Actions Terraform plan/apply assumes through OIDC (GitHub variable AWS_TERRAFORM_ROLE_ARN)."
  value       = aws_iam_role.github_terraform.arn
}

output "github_oidc_provider_arn" {
  description = "ARN of the GitHub Actions OIDC provider the CI roles trust."
  value       = local.github_oidc_provider_arn
}

################################################################################
# EKS
################################################################################

output "cluster_name" {
  description = "EKS cluster name (GitHub variable EKS_CLUSTER_NAME)."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API server endpoint."
  value       = module.eks.cluster_endpoint
}

output "cluster_oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (IRSA)."
  value       = module.eks.oidc_provider_arn
}

output "node_security_group_id" {
  description = "Security group of the EKS nodes (the only source allowed into RDS)."
  value       = module.eks.node_security_group_id
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

################################################################################
# Storage and registry
################################################################################

output "landing_bucket_name" {
  description = "S3 bucket of the telemetry landing zone (PDM_LANDING_S3_BUCKET)."
  value       = aws_s3_bucket.data["landing"].bucket
}

output "dagster_io_bucket_name" {
  description = "S3 bucket of the Dagster IO manager and warehouse (PDM_S3_BUCKET)."
  value       = aws_s3_bucket.data["dagster_io"].bucket
}

output "mlflow_artifacts_bucket_name" {
  description = "S3 bucket of the MLflow artifact store."
  value       = aws_s3_bucket.data["mlflow_artifacts"].bucket
}

output "access_logs_bucket_name" {
  description = "S3 bucket receiving the server access logs of the three data buckets."
  value       = aws_s3_bucket.access_logs.bucket
}

output "s3_kms_key_arn" {
  description = "KMS key encrypting the data buckets."
  value       = aws_kms_key.s3.arn
}

output "ecr_registry" {
  description = "ECR registry host, <account>.dkr.ecr.<region>.amazonaws.com (GitHub variable ECR_REGISTRY)."
  value       = local.ecr_registry
}

output "ecr_repository_urls" {
  description = "ECR repository URLs by name (pdm-risk-service, pdm-dagster-user-code)."
  value       = { for r in aws_ecr_repository.this : r.name => r.repository_url }
}

output "risk_service_repository_url" {
  description = "ECR repository URL of the BentoML risk-service image."
  value       = aws_ecr_repository.this["risk_service"].repository_url
}

output "user_code_repository_url" {
  description = "ECR repository URL of the Dagster user-code image."
  value       = aws_ecr_repository.this["user_code"].repository_url
}

################################################################################
# Database
################################################################################

output "rds_endpoint" {
  description = "PostgreSQL endpoint, host:port (private; reachable from the EKS nodes only)."
  value       = aws_db_instance.this.endpoint
}

output "rds_address" {
  description = "PostgreSQL host name."
  value       = aws_db_instance.this.address
}

output "rds_master_user_secret_arn" {
  description = "Secrets Manager secret holding the RDS-managed (rotated) master credentials."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "database_names" {
  description = "Databases on the instance (each owned by a role of the same name)."
  value       = local.databases
}

################################################################################
# IRSA
################################################################################

output "dagster_user_code_role_arn" {
  description = "IRSA role of service account dagster/dagster-user-code (user code and run pods)."
  value       = aws_iam_role.irsa["dagster_user_code"].arn
}

output "mlflow_role_arn" {
  description = "IRSA role of service account mlflow/mlflow (tracking server)."
  value       = aws_iam_role.irsa["mlflow"].arn
}

output "risk_service_role_arn" {
  description = "IRSA role of service account pdm-prod/pdm-risk-service; put it in bento_service/k8s/overlays/prod/serviceaccount-patch.yaml."
  value       = aws_iam_role.irsa["risk_service"].arn
}

################################################################################
# In-cluster services
################################################################################

output "mlflow_tracking_uri" {
  description = "MLflow tracking URI inside the cluster (MLFLOW_TRACKING_URI)."
  value       = local.mlflow_tracking_uri
}

output "pdm_runtime_env" {
  description = "Environment of the Dagster code (also ConfigMap dagster/pdm-runtime-env for the pdm-user-code release)."
  value       = local.pdm_runtime_env
}

output "grafana_admin_password" {
  description = "Grafana admin password (user admin); also in secret monitoring/grafana-admin."
  value       = random_password.grafana_admin.result
  sensitive   = true
}
