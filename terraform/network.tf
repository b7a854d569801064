################################################################################
# VPC: public subnets (load balancers, NAT; /22 blocks 0-3 of a /16), private subnets
# (EKS nodes; /19 blocks 1-4) and isolated database subnets (RDS, no route to the internet;
# /22 blocks 40-43), one of each per availability zone.
################################################################################

module "vpc" {
  #checkov:skip=CKV_TF_1:Terraform Registry module pinned to an exact version (no ranges) as the project requires; the registry protocol has no commit-hash pins, a git source would be needed for that.
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.21.0"

  name = local.full_name
  cidr = var.vpc_cidr
  azs  = local.azs

  public_subnets   = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 6, i)]
  private_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 3, i + 1)]
  database_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 6, i + 40)]

  create_database_subnet_group           = false # rds.tf owns its subnet group
  create_database_subnet_route_table     = true
  create_database_internet_gateway_route = false
  create_database_nat_gateway_route      = false

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway

  enable_dns_hostnames = true
  enable_dns_support   = true

  # The default security group of the VPC denies everything (nothing should use it).
  manage_default_security_group  = true
  default_security_group_ingress = []
  default_security_group_egress  = []

  # VPC flow logs to CloudWatch Logs (rejected and accepted traffic, for audits).
  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = 365
  flow_log_max_aggregation_interval               = 60

  public_subnet_tags = {
    "kubernetes.io/role/elb" = 1
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = 1
  }
}
