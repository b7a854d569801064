################################################################################
# In-cluster objects Terraform owns: namespaces, the Dagster user-code service account
# (IRSA), database credentials as Kubernetes secrets, the runtime environment ConfigMap, the
# database bootstrap job and the Grafana dashboard ConfigMap.
#
# Secrets: the application database passwords are random_password values and the RDS master
# password is read from its Secrets Manager secret at plan time, so they are in the Terraform
# state; keep the state bucket private and KMS-encrypted (README.md).
################################################################################

resource "kubernetes_namespace_v1" "this" {
  for_each = local.namespaces

  metadata {
    name = each.value
    labels = {
      "app.kubernetes.io/managed-by" = "terraform"
      "app.kubernetes.io/part-of"    = var.name
    }
  }

  depends_on = [module.eks]
}

# Used by the user-code deployment (Helm release pdm-user-code, deployed by CD with
# serviceAccount.create=false, name=dagster-user-code) and by every run pod.
resource "kubernetes_service_account_v1" "dagster_user_code" {
  metadata {
    name      = local.service_accounts.dagster_user_code
    namespace = kubernetes_namespace_v1.this["dagster"].metadata[0].name
    annotations = {
      "eks.amazonaws.com/role-arn" = aws_iam_role.irsa["dagster_user_code"].arn
    }
  }
}

# The runtime environment of the Dagster code (pdm_resources reads these); the user-code
# release refers to it with envConfigMaps: [{name: pdm-runtime-env}].
resource "kubernetes_config_map_v1" "pdm_runtime_env" {
  metadata {
    name      = "pdm-runtime-env"
    namespace = kubernetes_namespace_v1.this["dagster"].metadata[0].name
  }

  data = local.pdm_runtime_env
}

################################################################################
# Database credentials
################################################################################

resource "random_password" "db" {
  for_each = local.databases

  length  = 40
  special = false # used inside connection URLs
}

data "aws_secretsmanager_secret_version" "rds_master" {
  secret_id = aws_db_instance.this.master_user_secret[0].secret_arn
}

locals {
  rds_master = jsondecode(data.aws_secretsmanager_secret_version.rds_master.secret_string)
}

# The Dagster chart reads the password from this secret (global.postgresqlSecretName).
resource "kubernetes_secret_v1" "dagster_postgresql" {
  metadata {
    name      = "dagster-postgresql-secret"
    namespace = kubernetes_namespace_v1.this["dagster"].metadata[0].name
  }

  data = {
    "postgresql-password" = random_password.db["dagster"].result
  }
}

resource "kubernetes_secret_v1" "mlflow_db" {
  metadata {
    name      = "mlflow-db"
    namespace = kubernetes_namespace_v1.this["mlflow"].metadata[0].name
  }

  data = {
    username = local.databases.mlflow
    password = random_password.db["mlflow"].result
  }
}

# Master credentials for the bootstrap job only, in a namespace nothing else runs in.
resource "kubernetes_secret_v1" "db_admin" {
  metadata {
    name      = "pdm-db-admin"
    namespace = kubernetes_namespace_v1.this["db_admin"].metadata[0].name
  }

  data = merge(
    {
      PGUSER     = local.rds_master.username
      PGPASSWORD = local.rds_master.password
    },
    { for db, _ in local.databases : "${upper(db)}_PASSWORD" => random_password.db[db].result },
  )
}

resource "kubernetes_config_map_v1" "db_bootstrap" {
  metadata {
    name      = "pdm-db-bootstrap"
    namespace = kubernetes_namespace_v1.this["db_admin"].metadata[0].name
  }

  data = {
    "bootstrap.sql" = templatefile("${path.module}/scripts/db-bootstrap.sql.tftpl", {
      databases = keys(local.databases)
    })
  }
}

locals {
  # A new job name (so a new run) whenever the script or an application password changes.
  db_bootstrap_hash = substr(sha256(join("\n", concat(
    [kubernetes_config_map_v1.db_bootstrap.data["bootstrap.sql"], var.db_bootstrap_image],
    [for db, _ in local.databases : random_password.db[db].result],
  ))), 0, 10)
}

resource "kubernetes_job_v1" "db_bootstrap" {
  # The image (var.db_bootstrap_image) is pinned to an exact PostgreSQL release tag; set the
  # variable to name@sha256:... where a digest pin is required.
  metadata {
    name      = "pdm-db-bootstrap-${local.db_bootstrap_hash}"
    namespace = kubernetes_namespace_v1.this["db_admin"].metadata[0].name
    labels = {
      "app.kubernetes.io/name"       = "pdm-db-bootstrap"
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }

  spec {
    backoff_limit = 6

    template {
      metadata {
        labels = {
          "app.kubernetes.io/name" = "pdm-db-bootstrap"
        }
      }

      spec {
        restart_policy                  = "Never"
        automount_service_account_token = false

        security_context {
          run_as_non_root = true
          run_as_user     = 70 # postgres user of the alpine image
          run_as_group    = 70

          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        container {
          name              = "psql"
          image             = var.db_bootstrap_image
          image_pull_policy = "Always"
          command = concat(
            ["psql", "--no-psqlrc", "--file=/bootstrap/bootstrap.sql"],
            [for db, _ in local.databases : "--set=${db}_password=$(${upper(db)}_PASSWORD)"],
          )

          env {
            name  = "PGHOST"
            value = aws_db_instance.this.address
          }
          env {
            name  = "PGPORT"
            value = tostring(aws_db_instance.this.port)
          }
          env {
            name  = "PGDATABASE"
            value = aws_db_instance.this.db_name
          }
          env {
            name  = "PGSSLMODE"
            value = "require"
          }
          env {
            name  = "PGCONNECT_TIMEOUT"
            value = "10"
          }

          env_from {
            secret_ref {
              name = kubernetes_secret_v1.db_admin.metadata[0].name
            }
          }

          resources {
            requests = {
              cpu    = "50m"
              memory = "64Mi"
            }
            limits = {
              cpu    = "250m"
              memory = "128Mi"
            }
          }

          security_context {
            allow_privilege_escalation = false
            privileged                 = false
            read_only_root_filesystem  = true
            run_as_non_root            = true

            capabilities {
              drop = ["ALL"]
            }
          }

          volume_mount {
            name       = "script"
            mount_path = "/bootstrap"
            read_only  = true
          }
        }

        volume {
          name = "script"

          config_map {
            name = kubernetes_config_map_v1.db_bootstrap.metadata[0].name
          }
        }
      }
    }
  }

  wait_for_completion = true

  timeouts {
    create = "10m"
    update = "10m"
  }
}

################################################################################
# Monitoring: Grafana admin credentials and the provisioned dashboard
################################################################################

resource "random_password" "grafana_admin" {
  length  = 32
  special = false
}

resource "kubernetes_secret_v1" "grafana_admin" {
  metadata {
    name      = "grafana-admin"
    namespace = kubernetes_namespace_v1.this["monitoring"].metadata[0].name
  }

  data = {
    "admin-user"     = "admin"
    "admin-password" = random_password.grafana_admin.result
  }
}

# Picked up by the Grafana dashboard sidecar of kube-prometheus-stack (label grafana_dashboard).
resource "kubernetes_config_map_v1" "grafana_dashboards" {
  metadata {
    name      = "pdm-grafana-dashboards"
    namespace = kubernetes_namespace_v1.this["monitoring"].metadata[0].name
    labels = {
      grafana_dashboard = "1"
    }
  }

  data = {
    for f in fileset("${path.module}/dashboards", "*.json") : f => file("${path.module}/dashboards/${f}")
  }
}
