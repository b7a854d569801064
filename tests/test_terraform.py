"""Terraform for AWS (terraform/): offline validation, documentation, pinning, security properties.

``.ci/validate-terraform`` (terraform fmt -check and checkov) runs as a subprocess; outside
CI a machine without the terraform CLI or the validators skips that test, under ``CI=true`` it
fails. The other tests parse ``terraform/**/*.tf`` with python-hcl2 and check properties that
checkov does not (or not in this form): every variable and output documented and typed, every
registry module and Helm chart pinned exactly, buckets/ECR/RDS hardened. Each checker is a
function over a directory so the negative tests can show that it reports a broken copy.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2

from tests.tooling import run_ci_script, unavailable

REPO_ROOT = Path(__file__).resolve().parents[1]
TF_DIR = REPO_ROOT / "terraform"
SCRIPT = REPO_ROOT / ".ci" / "validate-terraform"
MISSING_TERRAFORM_EXIT = 3  # .ci/validate-terraform: the terraform CLI is not installed

# One worker runs all of these (make test uses --dist loadfile).

EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
VAR_REF = re.compile(r"\$\{var\.(\w+)\}")


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


def load_tf(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Parses every ``*.tf`` file below a directory and merges the top-level blocks.

    Args:
        directory: Root of a Terraform configuration.

    Returns:
        Block kind (``resource``, ``variable``, ...) to the list of parsed blocks, each tagged
        with the file it came from under the key ``__file__``.
    """
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        with open(path, encoding="utf-8") as fh:
            parsed = hcl2.load(fh)
        for kind, blocks in parsed.items():
            for block in blocks:
                merged.setdefault(kind, []).append({**block, "__file__": str(path)})
    return merged


def labelled(config: dict[str, list[dict[str, Any]]], kind: str) -> Iterator[tuple[str, dict]]:
    """Yields ``(label, body)`` of single-label blocks (``variable``, ``output``, ``module``).

    Args:
        config: The output of :func:`load_tf`.
        kind: Block kind.

    Yields:
        The block label and its body.
    """
    for block in config.get(kind, []):
        for label, body in block.items():
            if label != "__file__":
                yield label, body


def typed(
    config: dict[str, list[dict[str, Any]]], kind: str, type_name: str
) -> Iterator[tuple[str, dict]]:
    """Yields ``(name, body)`` of every ``resource``/``data`` block of one type.

    Args:
        config: The output of :func:`load_tf`.
        kind: ``resource`` or ``data``.
        type_name: Resource type, e.g. ``aws_s3_bucket``.

    Yields:
        The block name and its body.
    """
    for block in config.get(kind, []):
        yield from block.get(type_name, {}).items()


def variable_defaults(config: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Default value of every variable that has one.

    Args:
        config: The output of :func:`load_tf`.

    Returns:
        Variable name to its default.
    """
    return {
        name: body["default"] for name, body in labelled(config, "variable") if "default" in body
    }


def resolve(value: Any, defaults: dict[str, Any]) -> Any:
    """Replaces ``${var.x}`` references by the variables' defaults.

    Args:
        value: A parsed attribute value.
        defaults: The output of :func:`variable_defaults`.

    Returns:
        The default itself for a bare ``${var.x}``, else the string with each reference
        substituted; other values unchanged.
    """
    if not isinstance(value, str):
        return value
    bare = re.fullmatch(r"\$\{var\.(\w+)\}", value)
    if bare:
        return defaults[bare.group(1)]
    return VAR_REF.sub(lambda m: str(defaults[m.group(1)]), value)


def refers_to(body: dict[str, Any], address: str) -> bool:
    """Whether a block's ``bucket``/``for_each``/``repository`` attribute names a resource.

    Args:
        body: A parsed block body.
        address: ``<type>.<name>`` of the resource, e.g. ``aws_s3_bucket.data``.

    Returns:
        True when one of those attributes references the address.
    """
    pattern = re.compile(re.escape(address) + r"(?![\w-])")
    return any(
        isinstance(body.get(key), str) and pattern.search(body[key])
        for key in ("bucket", "for_each", "repository")
    )


# --------------------------------------------------------------------------------------------
# Checkers (each returns a list of problems; empty means fine)
# --------------------------------------------------------------------------------------------


def documentation_problems(directory: Path) -> list[str]:
    """Variables without a non-empty description or a type; outputs without a description.

    Args:
        directory: Root of a Terraform configuration.

    Returns:
        One message per problem.
    """
    config = load_tf(directory)
    problems = []
    for name, body in labelled(config, "variable"):
        if not str(body.get("description", "")).strip():
            problems.append(f"variable {name}: no description")
        if not str(body.get("type", "")).strip():
            problems.append(f"variable {name}: no type")
    for name, body in labelled(config, "output"):
        if not str(body.get("description", "")).strip():
            problems.append(f"output {name}: no description")
    return problems


def pinning_problems(directory: Path) -> list[str]:
    """Registry modules and Helm charts not pinned to an exact version; unconstrained core.

    Args:
        directory: Root of a Terraform configuration.

    Returns:
        One message per problem.
    """
    config = load_tf(directory)
    problems = []
    for name, body in labelled(config, "module"):
        source = body.get("source", "")
        is_local = source.startswith(("./", "../"))
        is_registry = not is_local and "://" not in source and source.count("/") in (2, 3)
        if is_registry and not EXACT_VERSION.match(str(body.get("version", ""))):
            problems.append(f"module {name}: registry source {source} without an exact version")
    for name, body in typed(config, "resource", "helm_release"):
        if not EXACT_VERSION.match(str(body.get("version", ""))):
            problems.append(f"helm_release {name}: chart version not pinned exactly")
    terraform_blocks = config.get("terraform", [])
    if not any(str(block.get("required_version", "")).strip() for block in terraform_blocks):
        problems.append("terraform: no required_version")
    providers = [
        (name, spec)
        for block in terraform_blocks
        for group in block.get("required_providers", [])
        for name, spec in group.items()
    ]
    if not providers:
        problems.append("terraform: no required_providers")
    for name, spec in providers:
        if not isinstance(spec, dict) or not str(spec.get("version", "")).strip():
            problems.append(f"provider {name}: no version constraint")
    return problems


def _tls_only(document: dict[str, Any]) -> bool:
    for statement in document.get("statement", []):
        if statement.get("effect") != "Deny":
            continue
        for condition in statement.get("condition", []):
            if (
                condition.get("test") == "Bool"
                and condition.get("variable") == "aws:SecureTransport"
                and condition.get("values") == ["false"]
            ):
                return True
    return False


def s3_problems(directory: Path) -> list[str]:
    """Buckets lacking versioning, SSE, a full public-access block or a TLS-only policy.

    Args:
        directory: Root of a Terraform configuration.

    Returns:
        One message per problem.
    """
    config = load_tf(directory)
    documents = dict(typed(config, "data", "aws_iam_policy_document"))
    problems = []
    for name, _ in typed(config, "resource", "aws_s3_bucket"):
        address = f"aws_s3_bucket.{name}"

        def companions(type_name: str, address: str = address) -> list[dict[str, Any]]:
            return [b for _, b in typed(config, "resource", type_name) if refers_to(b, address)]

        if not any(
            v.get("versioning_configuration", [{}])[0].get("status") == "Enabled"
            for v in companions("aws_s3_bucket_versioning")
        ):
            problems.append(f"{address}: no versioning")
        if not any(
            rule.get("apply_server_side_encryption_by_default", [{}])[0].get("sse_algorithm")
            in ("aws:kms", "aws:kms:dsse", "AES256")
            for sse in companions("aws_s3_bucket_server_side_encryption_configuration")
            for rule in sse.get("rule", [])
        ):
            problems.append(f"{address}: no server-side encryption")
        flags = ("block_public_acls", "block_public_policy", "ignore_public_acls")
        if not any(
            all(block.get(flag) is True for flag in (*flags, "restrict_public_buckets"))
            for block in companions("aws_s3_bucket_public_access_block")
        ):
            problems.append(f"{address}: public access not fully blocked")
        tls = False
        for policy in companions("aws_s3_bucket_policy"):
            match = re.search(r"data\.aws_iam_policy_document\.(\w+)", str(policy.get("policy")))
            if match and match.group(1) in documents and _tls_only(documents[match.group(1)]):
                tls = True
        if not tls:
            problems.append(f"{address}: no bucket policy denying aws:SecureTransport=false")
        if not companions("aws_s3_bucket_lifecycle_configuration"):
            problems.append(f"{address}: no lifecycle configuration")
    return problems


def ecr_problems(directory: Path) -> list[str]:
    """ECR repositories without immutable tags, scan on push, KMS or a lifecycle policy.

    Args:
        directory: Root of a Terraform configuration.

    Returns:
        One message per problem.
    """
    config = load_tf(directory)
    problems = []
    for name, body in typed(config, "resource", "aws_ecr_repository"):
        if body.get("image_tag_mutability") != "IMMUTABLE":
            problems.append(f"aws_ecr_repository.{name}: tags not IMMUTABLE")
        scanning = body.get("image_scanning_configuration", [{}])[0]
        if scanning.get("scan_on_push") is not True:
            problems.append(f"aws_ecr_repository.{name}: no scan on push")
        encryption = body.get("encryption_configuration", [{}])[0]
        if encryption.get("encryption_type") != "KMS":
            problems.append(f"aws_ecr_repository.{name}: not KMS-encrypted")
        if not any(
            refers_to(b, f"aws_ecr_repository.{name}")
            for _, b in typed(config, "resource", "aws_ecr_lifecycle_policy")
        ):
            problems.append(f"aws_ecr_repository.{name}: no lifecycle policy")
    return problems


def rds_problems(directory: Path) -> list[str]:
    """DB instances not encrypted, publicly accessible, or with short/no backups.

    Args:
        directory: Root of a Terraform configuration.

    Returns:
        One message per problem.
    """
    config = load_tf(directory)
    defaults = variable_defaults(config)
    problems = []
    instances = list(typed(config, "resource", "aws_db_instance"))
    if not instances:
        problems.append("no aws_db_instance")
    for name, body in instances:
        address = f"aws_db_instance.{name}"
        if body.get("storage_encrypted") is not True:
            problems.append(f"{address}: storage not encrypted")
        if body.get("publicly_accessible") is not False:
            problems.append(f"{address}: publicly_accessible is not false")
        retention = resolve(body.get("backup_retention_period", 0), defaults)
        if not isinstance(retention, int) or retention < 7:
            problems.append(f"{address}: backup retention {retention!r} < 7 days")
        if body.get("deletion_protection") is not True:
            problems.append(f"{address}: no deletion protection")
        if body.get("manage_master_user_password") is not True and not body.get(
            "iam_database_authentication_enabled"
        ):
            problems.append(f"{address}: neither a managed master password nor IAM auth")
    return problems


# --------------------------------------------------------------------------------------------
# The validation script
# --------------------------------------------------------------------------------------------


def test_validate_terraform_script_passes():
    result = run_ci_script(SCRIPT)
    if result.returncode == MISSING_TERRAFORM_EXIT and "terraform CLI not found" in result.stderr:
        unavailable(f"terraform CLI not installed:\n{result.stderr[-1000:]}")
    checkov = REPO_ROOT / ".tools" / "validators" / "bin" / "checkov"
    if result.returncode != 0 and not checkov.exists():
        unavailable(f"cannot build the validators:\n{result.stderr[-3000:]}")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "0 failed" in result.stderr


def test_validate_terraform_script_fails_on_unformatted_file(tmp_path):
    if shutil.which("terraform") is None:
        unavailable("terraform CLI not installed")
    copy = tmp_path / "terraform"
    shutil.copytree(TF_DIR, copy)
    (copy / "zz_unformatted.tf").write_text('locals {\n  x=1\n    y = "a"\n}\n', encoding="utf-8")
    result = run_ci_script(SCRIPT, env={"TF_DIR": str(copy)})
    assert result.returncode != 0
    assert "unformatted" in result.stderr


# --------------------------------------------------------------------------------------------
# Documentation and pinning
# --------------------------------------------------------------------------------------------


def test_every_variable_and_output_is_documented_and_typed():
    config = load_tf(TF_DIR)
    assert len(list(labelled(config, "variable"))) >= 10
    assert len(list(labelled(config, "output"))) >= 10
    assert documentation_problems(TF_DIR) == []


def test_documentation_checker_reports_a_variable_without_description(tmp_path):
    (tmp_path / "variables.tf").write_text(
        'variable "ok" {\n  description = "Fine."\n  type        = string\n}\n\n'
        'variable "undocumented" {\n  type = string\n}\n\n'
        'variable "untyped" {\n  description = "No type."\n}\n\n'
        'output "bare" {\n  value = var.ok\n}\n',
        encoding="utf-8",
    )
    assert documentation_problems(tmp_path) == [
        "variable undocumented: no description",
        "variable untyped: no type",
        "output bare: no description",
    ]


def test_modules_charts_and_providers_are_pinned():
    config = load_tf(TF_DIR)
    sources = {body["source"] for _, body in labelled(config, "module")}
    assert {"terraform-aws-modules/vpc/aws", "terraform-aws-modules/eks/aws"} <= sources
    releases = {name: body for name, body in typed(config, "resource", "helm_release")}
    assert set(releases) == {"dagster", "mlflow", "kube_prometheus_stack"}
    assert releases["dagster"]["chart"] == "dagster"
    assert releases["dagster"]["version"] == "1.13.27"
    assert releases["dagster"]["repository"] == "https://dagster-io.github.io/helm"
    assert pinning_problems(TF_DIR) == []


def test_pinning_checker_reports_ranges(tmp_path):
    (tmp_path / "main.tf").write_text(
        'terraform {\n  required_providers {\n    aws = {\n      source = "hashicorp/aws"\n'
        "    }\n  }\n}\n\n"
        'module "vpc" {\n  source  = "terraform-aws-modules/vpc/aws"\n  version = "~> 5.0"\n}\n\n'
        'module "local" {\n  source = "./modules/x"\n}\n\n'
        'resource "helm_release" "x" {\n  chart = "x"\n}\n',
        encoding="utf-8",
    )
    assert pinning_problems(tmp_path) == [
        "module vpc: registry source terraform-aws-modules/vpc/aws without an exact version",
        "helm_release x: chart version not pinned exactly",
        "terraform: no required_version",
        "provider aws: no version constraint",
    ]


def test_backend_is_a_partial_s3_configuration():
    config = load_tf(TF_DIR)
    backends = [b for block in config["terraform"] for b in block.get("backend", [])]
    assert backends == [{"s3": {}}]


# --------------------------------------------------------------------------------------------
# Security properties
# --------------------------------------------------------------------------------------------


def test_buckets_are_versioned_encrypted_private_and_tls_only():
    config = load_tf(TF_DIR)
    assert len(list(typed(config, "resource", "aws_s3_bucket"))) >= 2
    assert s3_problems(TF_DIR) == []


def test_bucket_names_come_from_bucket_prefix():
    locals_ = {k: v for block in load_tf(TF_DIR)["locals"] for k, v in block.items()}
    assert locals_["buckets"] == {
        "landing": "${var.bucket_prefix}-landing",
        "dagster_io": "${var.bucket_prefix}-dagster-io",
        "mlflow_artifacts": "${var.bucket_prefix}-mlflow-artifacts",
    }


def test_s3_checker_reports_a_bucket_without_tls_policy(tmp_path):
    (tmp_path / "s3.tf").write_text(
        'resource "aws_s3_bucket" "open" {\n  bucket = "x"\n}\n\n'
        'resource "aws_s3_bucket_versioning" "open" {\n  bucket = aws_s3_bucket.open.id\n'
        '  versioning_configuration {\n    status = "Suspended"\n  }\n}\n',
        encoding="utf-8",
    )
    assert s3_problems(tmp_path) == [
        "aws_s3_bucket.open: no versioning",
        "aws_s3_bucket.open: no server-side encryption",
        "aws_s3_bucket.open: public access not fully blocked",
        "aws_s3_bucket.open: no bucket policy denying aws:SecureTransport=false",
        "aws_s3_bucket.open: no lifecycle configuration",
    ]


def test_ecr_repositories_are_immutable_and_scanned():
    locals_ = {k: v for block in load_tf(TF_DIR)["locals"] for k, v in block.items()}
    assert set(locals_["ecr_repositories"].values()) == {
        "pdm-risk-service",
        "pdm-dagster-user-code",
    }
    assert ecr_problems(TF_DIR) == []


def test_ecr_checker_reports_mutable_tags(tmp_path):
    (tmp_path / "ecr.tf").write_text(
        'resource "aws_ecr_repository" "r" {\n  name                 = "r"\n'
        '  image_tag_mutability = "MUTABLE"\n}\n',
        encoding="utf-8",
    )
    assert ecr_problems(tmp_path) == [
        "aws_ecr_repository.r: tags not IMMUTABLE",
        "aws_ecr_repository.r: no scan on push",
        "aws_ecr_repository.r: not KMS-encrypted",
        "aws_ecr_repository.r: no lifecycle policy",
    ]


def test_rds_is_encrypted_private_and_backed_up():
    assert rds_problems(TF_DIR) == []


def test_rds_checker_reports_short_backups(tmp_path):
    (tmp_path / "rds.tf").write_text(
        'variable "days" {\n  description = "d"\n  type        = number\n  default     = 3\n}\n\n'
        'resource "aws_db_instance" "db" {\n  storage_encrypted       = true\n'
        "  publicly_accessible     = true\n  backup_retention_period = var.days\n}\n",
        encoding="utf-8",
    )
    assert rds_problems(tmp_path) == [
        "aws_db_instance.db: publicly_accessible is not false",
        "aws_db_instance.db: backup retention 3 < 7 days",
        "aws_db_instance.db: no deletion protection",
        "aws_db_instance.db: neither a managed master password nor IAM auth",
    ]


def test_rds_security_group_admits_only_eks_nodes_on_5432():
    config = load_tf(TF_DIR)
    groups = dict(typed(config, "resource", "aws_security_group"))
    ingress = groups["rds"]["ingress"]
    assert len(ingress) == 1
    assert (ingress[0]["from_port"], ingress[0]["to_port"], ingress[0]["protocol"]) == (
        5432,
        5432,
        "tcp",
    )
    assert ingress[0]["security_groups"] == ["${module.eks.node_security_group_id}"]
    assert "cidr_blocks" not in ingress[0]
    assert "egress" not in groups["rds"]


# --------------------------------------------------------------------------------------------
# Consistency with the rest of the repository
# --------------------------------------------------------------------------------------------


def test_risk_service_role_name_matches_the_prod_overlay():
    config = load_tf(TF_DIR)
    defaults = variable_defaults(config)
    locals_ = {k: v for block in config["locals"] for k, v in block.items()}
    role_name = resolve(locals_["irsa"]["risk_service"]["role_name"], defaults)
    patch = REPO_ROOT / "bento_service/k8s/overlays/prod/serviceaccount-patch.yaml"
    arn = re.search(r"arn:aws:iam::\d+:role/([\w+=,.@-]+)", patch.read_text(encoding="utf-8"))
    assert arn is not None
    assert role_name == arn.group(1) == "pdm-risk-service-prod"
    outputs = dict(labelled(config, "output"))
    assert outputs["risk_service_role_arn"]["value"] == '${aws_iam_role.irsa["risk_service"].arn}'


def test_github_roles_trust_only_the_repository():
    config = load_tf(TF_DIR)
    locals_ = {k: v for block in config["locals"] for k, v in block.items()}
    assert locals_["github_subject_prefix"] == "repo:${var.github_repository}"
    documents = dict(typed(config, "data", "aws_iam_policy_document"))
    expected = {
        "github_deploy_assume": {
            "ref:refs/heads/main",
            "environment:${var.github_production_environment}",
        },
        "github_terraform_assume": {
            "pull_request",
            "environment:${var.github_production_environment}",
        },
    }
    for name, suffixes in expected.items():
        (statement,) = documents[name]["statement"]
        conditions = {c["variable"]: c for c in statement["condition"]}
        sub = conditions["${local.github_oidc_host}:sub"]
        assert sub["test"] == "StringEquals"
        assert {
            v.removeprefix("${local.github_subject_prefix}:") for v in sub["values"]
        } == suffixes
        assert conditions["${local.github_oidc_host}:aud"]["values"] == ["sts.amazonaws.com"]
    outputs = dict(labelled(config, "output"))
    assert {"github_deploy_role_arn", "github_terraform_role_arn", "region", "cluster_name"} <= set(
        outputs
    )


def test_dagster_values_wire_the_run_launcher_and_user_code():
    text = (TF_DIR / "helm-values" / "dagster.yaml.tftpl").read_text(encoding="utf-8")
    for needle in (
        "type: K8sRunLauncher",
        "type: QueuedRunCoordinator",
        "enableSubchart: false",
        'host: "pdm-user-code"',
        "port: 3030",
        'name: "pdm"',
        "enabled: false",  # the chart's own PostgreSQL
        "generatePostgresqlPasswordSecret: false",
        "serviceAccountName: ${run_service_account}",
    ):
        assert needle in text, needle
    locals_ = {k: v for block in load_tf(TF_DIR)["locals"] for k, v in block.items()}
    env = locals_["pdm_runtime_env"]
    assert env["PDM_S3_PREFIX"] == "${var.dagster_io_prefix}"
    assert env["MLFLOW_TRACKING_URI"] == "${local.mlflow_tracking_uri}"
    assert {"PDM_ENV", "PDM_S3_BUCKET", "PDM_LANDING_S3_BUCKET", "AWS_REGION"} <= set(env)
    assert locals_["mlflow_tracking_uri"] == (
        "http://mlflow.${local.namespaces.mlflow}.svc.cluster.local:5000"
    )


def test_dashboard_uses_the_metrics_the_service_and_the_fleet_exporter_export():
    source = (REPO_ROOT / "bento_service" / "metrics.py").read_text(encoding="utf-8")
    exported = re.findall(r'name="(pdm_\w+)"', source)
    assert len(exported) >= 4, exported
    fleet = (REPO_ROOT / "pdm_platform" / "fleet_metrics.py").read_text(encoding="utf-8")
    from_fleet = re.findall(r'MetricFamily\(\s*"(pdm_\w+)"', fleet)
    assert len(from_fleet) >= 5, from_fleet
    exported += from_fleet
    dashboards = list((TF_DIR / "dashboards").glob("*.json"))
    assert dashboards
    exprs = " ".join(
        target["expr"]
        for path in dashboards
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]
        for target in panel.get("targets", [])
    )
    for metric in exported:
        assert re.search(rf"\b{metric}(_bucket|_count|_sum|_total)?\b", exprs), metric
    used = set(re.findall(r"\bpdm_\w+", exprs))
    suffixes = ("", "_bucket", "_count", "_sum", "_total")
    known = {m + suffix for m in exported for suffix in suffixes}
    assert used <= known, used - known
