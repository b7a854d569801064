################################################################################
# RDS PostgreSQL: one Multi-AZ instance in the isolated database subnets holding the
# `dagster` and `mlflow` databases (created with their owner roles by the bootstrap job in
# kubernetes.tf). The master password is generated and rotated by RDS in Secrets Manager
# (manage_master_user_password); applications never use it. Only the EKS node security
# group may connect, on 5432, and only over TLS (rds.force_ssl).
################################################################################

resource "aws_db_subnet_group" "this" {
  name        = local.full_name
  description = "Isolated database subnets of ${local.full_name}"
  subnet_ids  = module.vpc.database_subnets
}

resource "aws_security_group" "rds" {
  name        = "${local.full_name}-rds"
  description = "PostgreSQL of ${local.full_name}: 5432 from the EKS nodes only"
  vpc_id      = module.vpc.vpc_id

  ingress {
    description     = "PostgreSQL from EKS node security group"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [module.eks.node_security_group_id]
  }

  # No egress rules: the database initiates no connections.

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_parameter_group" "this" {
  name        = "${local.full_name}-${var.rds_parameter_group_family}"
  family      = var.rds_parameter_group_family
  description = "${local.full_name}: TLS only, connection and slow-statement logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "rds" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${local.full_name}/${each.key}"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.rds.arn
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${local.full_name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  identifier     = local.full_name
  engine         = "postgres"
  engine_version = var.rds_engine_version
  instance_class = var.rds_instance_class

  # The initial database; the bootstrap job creates `mlflow` and the owner roles.
  db_name  = local.databases.dagster
  username = "pdm_admin"
  port     = 5432

  # Master password generated, stored and rotated by RDS in Secrets Manager (KMS-encrypted).
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = aws_kms_key.rds.arn
  iam_database_authentication_enabled = true

  allocated_storage     = var.rds_allocated_storage_gb
  max_allocated_storage = var.rds_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.rds.arn

  multi_az               = var.rds_multi_az
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.rds.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name

  backup_retention_period   = var.rds_backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${local.full_name}-final"
  delete_automated_backups  = false

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = false

  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.rds.arn
  performance_insights_retention_period = 7

  depends_on = [aws_cloudwatch_log_group.rds]
}
