################################################################################
# General
################################################################################

variable "region" {
  description = "AWS region for every resource (also exported to the pods as AWS_REGION)."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Short name prefixed to every resource name (IAM role and policy names start with \"<name>-\", which the Terraform CI role's IAM rights are scoped to)."
  type        = string
  default     = "pdm"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name (prod, staging, ...): part of resource names and the PDM_ENV of the Dagster pods."
  type        = string
  default     = "prod"
}

variable "tags" {
  description = "Extra tags added to every AWS resource (merged over Project/Environment/ManagedBy)."
  type        = map(string)
  default     = {}
}

################################################################################
# Network
################################################################################

variable "vpc_cidr" {
  description = "CIDR block of the VPC; split into public, private (nodes) and database subnets per availability zone."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 18
    error_message = "vpc_cidr must be a valid IPv4 CIDR of /18 or larger."
  }
}

variable "availability_zone_letters" {
  description = "Letters of the availability zones (in var.region) to spread subnets, nodes and NAT gateways over; an explicit list so the set never grows by itself when AWS adds a zone."
  type        = list(string)
  default     = ["a", "b", "c"]

  validation {
    condition     = length(var.availability_zone_letters) >= 2 && length(var.availability_zone_letters) <= 4
    error_message = "Give 2 to 4 zones (RDS needs subnets in at least two)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for the whole VPC (cheaper, one zone of failure) instead of one per zone."
  type        = bool
  default     = false
}

################################################################################
# EKS
################################################################################

variable "cluster_version" {
  description = "Kubernetes minor version of the EKS control plane and the managed node group."
  type        = string
  default     = "1.33"
}

variable "cluster_endpoint_public_access" {
  description = "Expose the EKS API endpoint publicly (needed by GitHub-hosted runners; authentication stays IAM-only). The private endpoint is always on."
  type        = bool
  default     = true
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDR blocks allowed to reach the public EKS API endpoint (narrow this to your runners/VPN where possible)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "node_instance_types" {
  description = "EC2 instance types of the managed node group (first one preferred)."
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "node_min_size" {
  description = "Minimum number of nodes in the managed node group."
  type        = number
  default     = 2
}

variable "node_max_size" {
  description = "Maximum number of nodes in the managed node group."
  type        = number
  default     = 6
}

variable "node_desired_size" {
  description = "Initial desired number of nodes (later changes are ignored by the EKS module so an autoscaler can own it)."
  type        = number
  default     = 3
}

variable "node_disk_size_gb" {
  description = "Root EBS volume size of each node in GiB (encrypted gp3)."
  type        = number
  default     = 80
}

variable "eks_admin_principal_arns" {
  description = "IAM principal ARNs (users or roles, not assumed-role sessions) given cluster-admin through EKS access entries, e.g. the role you bootstrap with. The github_terraform role is always added."
  type        = list(string)
  default     = []
}

################################################################################
# GitHub Actions (OIDC)
################################################################################

variable "github_repository" {
  description = "GitHub repository allowed to assume the CI roles, as owner/name."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must look like owner/name."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's token.actions.githubusercontent.com OIDC provider; set false and pass github_oidc_provider_arn when the account already has one."
  type        = bool
  default     = true
}

variable "github_oidc_provider_arn" {
  description = "ARN of an existing GitHub Actions OIDC provider, used when create_github_oidc_provider is false."
  type        = string
  default     = ""
}

variable "github_production_environment" {
  description = "GitHub deployment environment whose jobs may assume the deploy and apply roles (protect it with required reviewers)."
  type        = string
  default     = "production"
}

################################################################################
# Storage
################################################################################

variable "bucket_prefix" {
  description = "Globally unique prefix of the S3 bucket names: <prefix>-landing, <prefix>-dagster-io, <prefix>-mlflow-artifacts (and <prefix>-access-logs)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,40}[a-z0-9]$", var.bucket_prefix))
    error_message = "bucket_prefix must be 3-42 lowercase letters, digits or hyphens (the longest suffix is -mlflow-artifacts)."
  }
}

variable "landing_prefix" {
  description = "Key prefix of the landing zone in the landing bucket (PDM_LANDING_S3_PREFIX); incoming/, archive/ and quarantine/ live below it."
  type        = string
  default     = "landing"
}

variable "dagster_io_prefix" {
  description = "Key prefix of the Dagster IO manager and warehouse in the dagster-io bucket (PDM_S3_PREFIX)."
  type        = string
  default     = "pdm"
}

variable "landing_archive_ia_days" {
  description = "Days after which archived landing files move to S3 Standard-IA."
  type        = number
  default     = 30
}

variable "landing_archive_glacier_days" {
  description = "Days after which archived landing files move to S3 Glacier Instant Retrieval."
  type        = number
  default     = 90
}

variable "landing_quarantine_expiration_days" {
  description = "Days after which quarantined landing files (and their reason records) are deleted."
  type        = number
  default     = 180
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent (overwritten or deleted) object versions are removed in every bucket."
  type        = number
  default     = 90
}

variable "access_log_expiration_days" {
  description = "Days S3 server access logs are kept in the access-logs bucket."
  type        = number
  default     = 365
}

################################################################################
# ECR
################################################################################

variable "ecr_keep_tagged_images" {
  description = "Number of most recent tagged images kept in each ECR repository (older ones expire)."
  type        = number
  default     = 50
}

variable "ecr_untagged_expiration_days" {
  description = "Days after which untagged images (failed or superseded pushes) expire."
  type        = number
  default     = 7
}

################################################################################
# RDS PostgreSQL
################################################################################

variable "rds_instance_class" {
  description = "Instance class of the PostgreSQL instance holding the Dagster and MLflow databases."
  type        = string
  default     = "db.t4g.medium"
}

variable "rds_engine_version" {
  description = "PostgreSQL engine version (major or major.minor; minor upgrades are automatic)."
  type        = string
  default     = "16"
}

variable "rds_parameter_group_family" {
  description = "DB parameter group family matching rds_engine_version."
  type        = string
  default     = "postgres16"
}

variable "rds_allocated_storage_gb" {
  description = "Initial allocated storage in GiB (gp3, encrypted)."
  type        = number
  default     = 50
}

variable "rds_max_allocated_storage_gb" {
  description = "Upper bound for storage autoscaling in GiB."
  type        = number
  default     = 200
}

variable "rds_multi_az" {
  description = "Run the instance Multi-AZ (a standby in a second zone)."
  type        = bool
  default     = true
}

variable "rds_backup_retention_days" {
  description = "Automated backup retention in days (at least 7)."
  type        = number
  default     = 14

  validation {
    condition     = var.rds_backup_retention_days >= 7 && var.rds_backup_retention_days <= 35
    error_message = "rds_backup_retention_days must be between 7 and 35."
  }
}

################################################################################
# Cluster workloads (Helm)
################################################################################

variable "dagster_image_tag" {
  description = "Tag of the Dagster webserver/daemon images (match the dagster version of the user code)."
  type        = string
  default     = "1.13.27"
}

variable "dagster_max_concurrent_runs" {
  description = "QueuedRunCoordinator limit of runs executing at once."
  type        = number
  default     = 5
}

variable "mlflow_image_tag" {
  description = "Tag of the burakince/mlflow tracking-server image used by the community-charts mlflow chart."
  type        = string
  default     = "3.14.0"
}

variable "db_bootstrap_image" {
  description = "PostgreSQL client image of the one-off job that creates the dagster/mlflow roles and databases (pin a digest, name@sha256:..., where your policy requires it)."
  type        = string
  default     = "public.ecr.aws/docker/library/postgres:16.9-alpine"
}

variable "prometheus_retention" {
  description = "How long Prometheus keeps samples (its storage is the pod's emptyDir; see README)."
  type        = string
  default     = "15d"
}
