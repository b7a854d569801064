################################################################################
# EKS: private nodes in one managed node group, IRSA (OIDC provider), API-only access
# entries (no aws-auth ConfigMap), secrets envelope-encrypted with a module-created KMS key.
################################################################################

locals {
  cluster_admin_policy_arn = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
  namespace_admin_policy   = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy"
  namespace_edit_policy    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"

  # Cluster admins: the Terraform CI role (it manages the Helm releases below) and any
  # principals passed in var.eks_admin_principal_arns (e.g. the role you bootstrap with).
  eks_admin_access_entries = {
    for arn in distinct(concat([aws_iam_role.github_terraform.arn], var.eks_admin_principal_arns)) :
    arn => {
      principal_arn = arn
      type          = "STANDARD"
      policy_associations = {
        cluster_admin = {
          policy_arn   = local.cluster_admin_policy_arn
          access_scope = { type = "cluster" }
        }
      }
    }
  }

  # The CD role deploys the Bento (kustomize, namespace pdm-prod) and the Dagster user code
  # (Helm release pdm-user-code, namespace dagster): admin inside those two namespaces only,
  # nothing cluster-scoped. In namespace mlflow it may edit (the `edit` role includes
  # pods/portforward): the Bento build reads the champion from the in-cluster MLflow server
  # through `kubectl port-forward`, so MLflow needs no public endpoint.
  deploy_access_entry = {
    github_deploy = {
      principal_arn = aws_iam_role.github_deploy.arn
      type          = "STANDARD"
      policy_associations = {
        namespaces_admin = {
          policy_arn = local.namespace_admin_policy
          access_scope = {
            type       = "namespace"
            namespaces = [local.namespaces.serving, local.namespaces.dagster]
          }
        }
        mlflow_port_forward = {
          policy_arn = local.namespace_edit_policy
          access_scope = {
            type       = "namespace"
            namespaces = [local.namespaces.mlflow]
          }
        }
      }
    }
  }
}

module "eks" {
  #checkov:skip=CKV_TF_1:Terraform Registry module pinned to an exact version (no ranges) as the project requires; the registry protocol has no commit-hash pins, a git source would be needed for that.
  source  = "terraform-aws-modules/eks/aws"
  version = "20.37.1"

  cluster_name    = local.cluster_name
  cluster_version = var.cluster_version

  cluster_endpoint_private_access      = true
  cluster_endpoint_public_access       = var.cluster_endpoint_public_access
  cluster_endpoint_public_access_cidrs = var.cluster_endpoint_public_access_cidrs

  vpc_id                   = module.vpc.vpc_id
  subnet_ids               = module.vpc.private_subnets
  control_plane_subnet_ids = module.vpc.private_subnets

  # IRSA: the module creates the cluster's IAM OIDC provider (iam.tf trusts it).
  enable_irsa = true

  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = false
  access_entries                           = merge(local.eks_admin_access_entries, local.deploy_access_entry)

  cluster_enabled_log_types              = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = 365

  kms_key_enable_default_policy = true
  kms_key_administrators        = [aws_iam_role.github_terraform.arn]

  cluster_addons = {
    coredns                = { most_recent = true }
    kube-proxy             = { most_recent = true }
    eks-pod-identity-agent = { most_recent = true }
    vpc-cni = {
      most_recent    = true
      before_compute = true
    }
  }

  eks_managed_node_groups = {
    default = {
      name            = "${local.full_name}-default"
      use_name_prefix = true
      ami_type        = "AL2023_x86_64_STANDARD"
      instance_types  = var.node_instance_types
      capacity_type   = "ON_DEMAND"

      min_size     = var.node_min_size
      max_size     = var.node_max_size
      desired_size = var.node_desired_size

      # Role name starts with "<name>-" so the Terraform CI role's scoped IAM rights cover it.
      iam_role_name            = "${local.full_name}-nodes"
      iam_role_use_name_prefix = true

      block_device_mappings = {
        xvda = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size           = var.node_disk_size_gb
            volume_type           = "gp3"
            encrypted             = true
            delete_on_termination = true
          }
        }
      }

      # IMDSv2 only, and a hop limit of 1 so pods cannot borrow the node role: workloads get
      # AWS credentials through IRSA (iam.tf) instead.
      metadata_options = {
        http_endpoint               = "enabled"
        http_tokens                 = "required"
        http_put_response_hop_limit = 1
      }
    }
  }
}
