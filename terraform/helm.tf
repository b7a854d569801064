################################################################################
# Helm releases: Dagster (webserver, daemon, K8sRunLauncher; user code comes from CD),
# MLflow tracking server, kube-prometheus-stack (Prometheus, Alertmanager, Grafana).
# Chart versions are pinned exactly; bump them deliberately.
################################################################################

resource "helm_release" "kube_prometheus_stack" {
  name       = "kube-prometheus-stack"
  repository = "https://prometheus-community.github.io/helm-charts"
  chart      = "kube-prometheus-stack"
  version    = "67.8.0"
  namespace  = kubernetes_namespace_v1.this["monitoring"].metadata[0].name

  timeout         = 900
  atomic          = true
  cleanup_on_fail = true

  values = [templatefile("${path.module}/helm-values/kube-prometheus-stack.yaml.tftpl", {
    grafana_admin_secret = kubernetes_secret_v1.grafana_admin.metadata[0].name
    retention            = var.prometheus_retention
    serving_namespace    = local.namespaces.serving
    dagster_namespace    = local.namespaces.dagster
  })]

  depends_on = [kubernetes_config_map_v1.grafana_dashboards]
}

resource "helm_release" "mlflow" {
  name       = "mlflow"
  repository = "https://community-charts.github.io/helm-charts"
  chart      = "mlflow"
  version    = "1.12.0"
  namespace  = kubernetes_namespace_v1.this["mlflow"].metadata[0].name

  timeout         = 600
  atomic          = true
  cleanup_on_fail = true

  values = [templatefile("${path.module}/helm-values/mlflow.yaml.tftpl", {
    namespace              = local.namespaces.mlflow
    image_tag              = var.mlflow_image_tag
    service_account        = local.service_accounts.mlflow
    role_arn               = aws_iam_role.irsa["mlflow"].arn
    postgresql_host        = aws_db_instance.this.address
    postgresql_port        = aws_db_instance.this.port
    postgresql_database    = local.databases.mlflow
    postgresql_secret_name = kubernetes_secret_v1.mlflow_db.metadata[0].name
    artifacts_bucket       = aws_s3_bucket.data["mlflow_artifacts"].bucket
    region                 = var.region
  })]

  depends_on = [kubernetes_job_v1.db_bootstrap]
}

resource "helm_release" "dagster" {
  name       = "dagster"
  repository = "https://dagster-io.github.io/helm"
  chart      = "dagster"
  version    = "1.13.27"
  namespace  = kubernetes_namespace_v1.this["dagster"].metadata[0].name

  timeout         = 600
  atomic          = true
  cleanup_on_fail = true

  values = [templatefile("${path.module}/helm-values/dagster.yaml.tftpl", {
    postgresql_secret_name = kubernetes_secret_v1.dagster_postgresql.metadata[0].name
    postgresql_host        = aws_db_instance.this.address
    postgresql_port        = aws_db_instance.this.port
    postgresql_username    = local.databases.dagster
    postgresql_database    = local.databases.dagster
    dagster_image_tag      = var.dagster_image_tag
    max_concurrent_runs    = var.dagster_max_concurrent_runs
    runtime_env            = local.pdm_runtime_env
    runtime_env_config_map = kubernetes_config_map_v1.pdm_runtime_env.metadata[0].name
    run_service_account    = kubernetes_service_account_v1.dagster_user_code.metadata[0].name
  })]

  depends_on = [kubernetes_job_v1.db_bootstrap]
}
