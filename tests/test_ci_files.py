"""CI/CD files: GitHub workflows, the Dagster user-code image and its Helm values.

``.ci/validate-ci-files`` (check-jsonschema, checkov, hadolint) runs as a subprocess, once on
the repository's files and on broken copies that it must reject. The properties that those
tools do not check are asserted here on the parsed YAML: pinned actions, least-privilege
permissions, OIDC only where an AWS role is assumed, deployments only from main into the
protected environment, a non-root image. Outside CI a machine that cannot build the tools
skips the subprocess tests; under ``CI=true`` they fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tooling import run_ci_script, unavailable

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / ".ci" / "validate-ci-files"
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
DOCKERFILE = REPO_ROOT / "deploy" / "dagster" / "Dockerfile"
VALUES = REPO_ROOT / "deploy" / "dagster" / "user-code-values.yaml"
VALIDATORS = REPO_ROOT / ".tools" / "validators" / "bin"

# Repository variables the workflows may read (the Terraform README lists the same names).
REPOSITORY_VARIABLES = {
    "AWS_REGION",
    "AWS_DEPLOY_ROLE_ARN",
    "AWS_TERRAFORM_ROLE_ARN",
    "EKS_CLUSTER_NAME",
    "ECR_REGISTRY",
    "TF_STATE_BUCKET",
    "MLFLOW_TRACKING_URI",
    "PDM_S3_BUCKET",
    "PDM_LANDING_S3_BUCKET",
    "CMAPSS_ZIP_URL",
}
AWS_CREDENTIALS_ACTION = "aws-actions/configure-aws-credentials"
# A tag of a major version (v4, v4.1, v4.1.2) or a full commit SHA.
PINNED_REF = re.compile(r"^(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
# Commands that change production.
DEPLOY_COMMANDS = ("kubectl apply", "helm upgrade", "terraform apply", "docker push")

# One worker runs the subprocess tests (make test uses --dist loadfile).


# -- checkers (used on the repository's files and on broken examples) -------------------


def load_workflow(path: Path) -> dict[str, Any]:
    """Parses a workflow file.

    Args:
        path: A ``.github/workflows/*.yml`` file.

    Returns:
        The workflow as a mapping; the ``on`` key stays ``"on"`` (YAML 1.1 reads a bare
        ``on`` as the boolean True, which is mapped back here).
    """
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(workflow, dict), f"{path.name}: not a mapping"
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def iter_uses(workflow: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Yields every ``uses:`` reference of a workflow.

    Args:
        workflow: A parsed workflow.

    Yields:
        ``(where, reference)``: the job (and step) and the ``uses`` value, for steps and for
        jobs that call a reusable workflow.
    """
    for job_id, job in (workflow.get("jobs") or {}).items():
        if "uses" in job:
            yield job_id, str(job["uses"])
        for index, step in enumerate(job.get("steps") or []):
            if "uses" in step:
                yield f"{job_id}.steps[{index}]", str(step["uses"])


def unpinned_uses(workflow: dict[str, Any]) -> list[str]:
    """Lists the ``uses:`` references that are not pinned to a version tag or a commit SHA.

    Local actions (``./path``) and images pinned by digest (``docker://...@sha256:...``) count
    as pinned; a branch (``@main``, ``@master``) or no ref at all does not.

    Args:
        workflow: A parsed workflow.

    Returns:
        ``"<where>: <reference>"`` for each unpinned reference, empty when all are pinned.
    """
    problems = []
    for where, ref in iter_uses(workflow):
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            if "@sha256:" not in ref:
                problems.append(f"{where}: {ref}")
            continue
        _, _, version = ref.partition("@")
        if not PINNED_REF.match(version):
            problems.append(f"{where}: {ref}")
    return problems


def assumes_aws_role(job: dict[str, Any]) -> bool:
    """Whether a job assumes an AWS role with configure-aws-credentials (OIDC).

    Args:
        job: A job of a parsed workflow.

    Returns:
        True when a step uses the action with ``role-to-assume``.
    """
    return any(
        str(step.get("uses", "")).startswith(f"{AWS_CREDENTIALS_ACTION}@")
        and "role-to-assume" in (step.get("with") or {})
        for step in job.get("steps") or []
    )


def grants_id_token(permissions: Any) -> bool:
    """Whether a ``permissions:`` value grants ``id-token: write``.

    Args:
        permissions: The value of a workflow's or a job's ``permissions`` key.

    Returns:
        True for ``write-all`` or a mapping with ``id-token: write``.
    """
    if permissions == "write-all":
        return True
    return isinstance(permissions, dict) and permissions.get("id-token") == "write"


def id_token_problems(workflow: dict[str, Any]) -> list[str]:
    """Lists misplaced or missing ``id-token: write`` grants.

    ``id-token: write`` belongs exactly to the jobs that assume an AWS role: never at the
    workflow level, never in another job, always in such a job.

    Args:
        workflow: A parsed workflow.

    Returns:
        One message per problem, empty when the grants are right.
    """
    problems = []
    if grants_id_token(workflow.get("permissions")):
        problems.append("workflow-level permissions grant id-token: write")
    for job_id, job in (workflow.get("jobs") or {}).items():
        grants, assumes = grants_id_token(job.get("permissions")), assumes_aws_role(job)
        if grants and not assumes:
            problems.append(f"{job_id}: id-token: write without assuming an AWS role")
        if assumes and not grants:
            problems.append(f"{job_id}: assumes an AWS role without id-token: write")
    return problems


def job_commands(job: dict[str, Any]) -> str:
    """All ``run:`` scripts of a job, joined.

    Args:
        job: A job of a parsed workflow.

    Returns:
        The scripts separated by newlines.
    """
    return "\n".join(str(step.get("run", "")) for step in job.get("steps") or [])


def deploys(job: dict[str, Any]) -> bool:
    """Whether a job changes production (applies, upgrades or pushes images).

    Args:
        job: A job of a parsed workflow.

    Returns:
        True when one of its scripts runs a command of ``DEPLOY_COMMANDS``.
    """
    commands = job_commands(job)
    return any(command in commands for command in DEPLOY_COMMANDS)


def environment_name(job: dict[str, Any]) -> str | None:
    """The job's ``environment`` (a name or a mapping with ``name``), or None."""
    environment = job.get("environment")
    if isinstance(environment, dict):
        return environment.get("name")
    return environment


def final_user(dockerfile: str) -> str | None:
    """The ``USER`` in effect in the last stage of a Dockerfile.

    Args:
        dockerfile: The Dockerfile's text.

    Returns:
        The argument of the last ``USER`` after the last ``FROM``, or None (root).
    """
    user = None
    lines = re.sub(r"\\\n", " ", dockerfile).splitlines()
    for line in lines:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        instruction = words[0].upper()
        if instruction == "FROM":
            user = None
        elif instruction == "USER" and len(words) > 1:
            user = words[1]
    return user


def is_root(user: str | None) -> bool:
    """Whether a Dockerfile ``USER`` value (``name``, ``uid`` or ``uid:gid``) means root."""
    if user is None:
        return True
    return user.split(":")[0] in {"root", "0"}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict[str, Any]]:
    found = {path.name: load_workflow(path) for path in sorted(WORKFLOWS_DIR.glob("*.y*ml"))}
    assert {"ci.yml", "cd.yml", "terraform.yml"} <= set(found)
    return found


@pytest.fixture(scope="module")
def tools() -> None:
    """Builds (or reuses) .tools/validators; skips here, fails under CI, when it cannot."""
    if all((VALIDATORS / tool).exists() for tool in ("checkov", "hadolint", "check-jsonschema")):
        return
    result = run_ci_script(REPO_ROOT / ".ci" / "validate-manifests", "--setup")
    if result.returncode != 0:
        unavailable(f"cannot build the validators:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def validated(tools: None) -> subprocess.CompletedProcess[str]:
    """One run of the script on the repository's files."""
    return run_ci_script(SCRIPT)


@pytest.fixture
def workflows_copy(tmp_path: Path) -> Path:
    target = tmp_path / ".github" / "workflows"
    shutil.copytree(WORKFLOWS_DIR, target)
    return target


# -- the offline validators ------------------------------------------------------------------


def test_validate_ci_files_passes(validated):
    assert validated.returncode == 0, validated.stdout[-3000:] + validated.stderr[-3000:]
    for framework in ("github_actions", "dockerfile"):
        assert re.search(rf"checkov {framework}: [1-9]\d* passed, 0 failed", validated.stderr)
    assert "ok -- validation done" in validated.stdout


def test_validate_ci_files_rejects_a_checkov_failure(tools, workflows_copy):
    (workflows_copy / "bad.yml").write_text(
        "name: bad\non: push\npermissions: write-all\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        '    steps:\n      - run: echo "${{ github.event.head_commit.message }}"\n'
    )
    result = run_ci_script(SCRIPT, env={"WORKFLOWS_DIR": str(workflows_copy)})
    assert result.returncode != 0
    assert "CKV2_GHA_1" in result.stdout and "CKV_GHA_2" in result.stdout


def test_validate_ci_files_rejects_a_schema_error(tools, workflows_copy):
    (workflows_copy / "bad.yml").write_text("name: bad\non: push\njobs:\n  a:\n    steps: 3\n")
    result = run_ci_script(SCRIPT, env={"WORKFLOWS_DIR": str(workflows_copy)})
    assert result.returncode != 0
    assert "bad.yml" in result.stdout + result.stderr


def test_validate_ci_files_rejects_a_hadolint_finding(tools, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.read_text().replace("uv==", "uv>="))
    result = run_ci_script(SCRIPT, env={"DOCKERFILE": str(dockerfile)})
    assert result.returncode != 0
    assert "DL3013" in result.stdout + result.stderr


# -- properties of the workflows ---------------------------------------------------------------


def test_every_action_is_pinned(workflows):
    for name, workflow in workflows.items():
        assert list(iter_uses(workflow)), f"{name}: no actions found"
        assert unpinned_uses(workflow) == [], name


@pytest.mark.parametrize(
    ("ref", "pinned"),
    [
        ("actions/checkout@main", False),
        ("actions/checkout@master", False),
        ("actions/checkout", False),
        ("actions/checkout@v4", True),
        ("actions/checkout@v4.2.2", True),
        ("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", True),
        ("actions/checkout@11bd719", False),
        ("./.github/actions/local", True),
        ("docker://alpine:3", False),
    ],
)
def test_unpinned_uses_checker(ref, pinned):
    workflow = {"jobs": {"a": {"steps": [{"uses": ref}]}}}
    assert (unpinned_uses(workflow) == []) is pinned


def test_a_workflow_on_a_branch_ref_is_reported(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(
        "name: bad\non: push\npermissions:\n  contents: read\njobs:\n  build:\n"
        "    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@main\n"
        "      - uses: actions/setup-python@v5\n  reuse:\n"
        "    uses: org/repo/.github/workflows/x.yml@master\n"
    )
    assert unpinned_uses(load_workflow(path)) == [
        "build.steps[0]: actions/checkout@main",
        "reuse: org/repo/.github/workflows/x.yml@master",
    ]


def test_every_workflow_has_read_only_top_level_permissions(workflows):
    for name, workflow in workflows.items():
        assert workflow.get("permissions") == {"contents": "read"}, name


def test_id_token_only_where_an_aws_role_is_assumed(workflows):
    for name, workflow in workflows.items():
        assert id_token_problems(workflow) == [], name
    assumers = {
        f"{name}:{job_id}"
        for name, workflow in workflows.items()
        for job_id, job in workflow["jobs"].items()
        if assumes_aws_role(job)
    }
    assert assumers == {
        "cd.yml:bento",
        "cd.yml:user-code",
        "terraform.yml:plan",
        "terraform.yml:apply",
    }


def test_id_token_checker_reports_a_stray_grant():
    workflow = {
        "permissions": {"contents": "read", "id-token": "write"},
        "jobs": {
            "lint": {"permissions": {"id-token": "write"}, "steps": [{"run": "make lint"}]},
            "deploy": {
                "steps": [{"uses": f"{AWS_CREDENTIALS_ACTION}@v4", "with": {"role-to-assume": "x"}}]
            },
        },
    }
    assert id_token_problems(workflow) == [
        "workflow-level permissions grant id-token: write",
        "lint: id-token: write without assuming an AWS role",
        "deploy: assumes an AWS role without id-token: write",
    ]


def test_cd_runs_only_on_main_or_by_hand(workflows):
    triggers = workflows["cd.yml"]["on"]
    assert set(triggers) == {"push", "workflow_dispatch"}
    assert triggers["push"] == {"branches": ["main"]}
    assert not (triggers["workflow_dispatch"] or {}).get("inputs")


def test_deploying_jobs_use_the_production_environment(workflows):
    deploying = {}
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            if deploys(job) or (assumes_aws_role(job) and name == "cd.yml"):
                deploying[f"{name}:{job_id}"] = environment_name(job)
    assert deploying == {
        "cd.yml:bento": "production",
        "cd.yml:user-code": "production",
        "terraform.yml:apply": "production",
    }
    # The apply job only runs for main.
    apply = workflows["terraform.yml"]["jobs"]["apply"]
    assert "github.ref == 'refs/heads/main'" in apply["if"]


def test_jobs_have_timeouts_and_workflows_concurrency(workflows):
    for name, workflow in workflows.items():
        assert workflow.get("concurrency"), name
        for job_id, job in workflow["jobs"].items():
            assert 0 < job.get("timeout-minutes", 0) <= 60, f"{name}:{job_id}"


def test_only_known_repository_variables_and_no_secrets():
    for path in sorted(WORKFLOWS_DIR.glob("*.y*ml")):
        text = path.read_text(encoding="utf-8")
        assert "secrets." not in text, path.name
        used = set(re.findall(r"vars\.([A-Za-z0-9_]+)", text))
        assert used <= REPOSITORY_VARIABLES, (path.name, used - REPOSITORY_VARIABLES)


def test_no_expression_is_expanded_inside_a_script(workflows):
    # Values reach scripts through env: (no script injection through ${{ }}).
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            assert "${{" not in job_commands(job), f"{name}:{job_id}"


def test_cd_pins_the_risk_service_to_the_pushed_digest_and_rolls_back(workflows):
    job = workflows["cd.yml"]["jobs"]["bento"]
    commands = job_commands(job)
    # The steps' logic is in deploy/cd/bento-steps.sh (run by tests/test_cd_steps.py).
    steps = "deploy/cd/bento-steps.sh"
    assert (REPO_ROOT / steps).is_file()
    pin = f'{steps} pin bento_service/k8s/overlays/prod "$IMAGE_REPO" "$DIGEST" $MODEL_VERSION'
    assert pin in commands
    assert job["env"]["IMAGE"] == "${{ vars.ECR_REGISTRY }}/pdm-risk-service:${{ github.sha }}"
    assert "kubectl rollout status deployment/pdm-risk-service" in commands
    assert (REPO_ROOT / "examples" / "serving" / "predict_request.json").is_file()
    assert f"{steps} smoke http://127.0.0.1:18080 examples/serving/predict_request.json" in commands
    rollback = job["steps"][-1]
    assert rollback["if"] == "failure()"
    assert rollback["env"]["APPLY_OUTCOME"] == "${{ steps.apply.outcome }}"
    assert f'{steps} rollback-decision "$APPLY_OUTCOME"' in rollback["run"]
    assert "kubectl rollout undo deployment/pdm-risk-service" in rollback["run"]
    assert rollback["run"].rstrip().endswith("exit 1")


def test_cd_helm_release_matches_the_values_file(workflows):
    commands = re.sub(r"\s*\\\n\s*", " ", job_commands(workflows["cd.yml"]["jobs"]["user-code"]))
    assert (
        "helm upgrade --install pdm-user-code dagster/dagster-user-deployments "
        f"--version {_locked_version('dagster')} --namespace dagster "
        "-f deploy/dagster/user-code-values.yaml"
    ) in commands
    assert "--atomic --wait" in commands
    values = yaml.safe_load(VALUES.read_text())
    env = values["deployments"][0]["env"]
    set_env = set(re.findall(r"deployments\[0\]\.env\.([A-Z0-9_]+)=", commands))
    assert set_env == {"PDM_S3_BUCKET", "PDM_LANDING_S3_BUCKET", "AWS_REGION"}
    assert not set_env & set(env), "CD must not silently override a value of the file"


# -- the user-code image and its Helm values -----------------------------------------------


def test_dockerfile_final_user_is_not_root():
    user = final_user(DOCKERFILE.read_text())
    assert not is_root(user), user
    assert user is not None and user.split(":")[0].isdigit(), "fixed numeric uid"


def test_final_user_checker():
    assert final_user("FROM a\nUSER 10001\nFROM b\n") is None
    assert is_root(final_user("FROM a AS x\nUSER app\nFROM b\nUSER root\n"))
    assert is_root(final_user("FROM a\nUSER 0:0\n"))
    assert final_user("FROM a\nRUN x \\\n  USER 1\nUSER 10001:10001\n") == "10001:10001"


def test_dockerfile_matches_the_makefile_and_the_chart():
    dockerfile = DOCKERFILE.read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert uv_version and f"uv=={uv_version.group(1)}" in dockerfile
    assert "uv sync --frozen --no-dev" in dockerfile
    assert re.findall(r"^FROM python:3\.11-slim-bookworm", dockerfile, re.M)
    assert "EXPOSE 3030" in dockerfile and "HEALTHCHECK" in dockerfile
    deployment = yaml.safe_load(VALUES.read_text())["deployments"][0]
    uid = int(final_user(dockerfile).split(":")[0])  # type: ignore[union-attr]
    assert deployment["podSecurityContext"]["runAsUser"] == uid
    assert deployment["securityContext"]["runAsNonRoot"] is True
    assert deployment["securityContext"]["allowPrivilegeEscalation"] is False
    assert deployment["port"] == 3030
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "pdm_platform.definitions"]


def test_user_code_values():
    values = yaml.safe_load(VALUES.read_text())
    assert [d["name"] for d in values["deployments"]] == ["pdm-user-code"]
    deployment = values["deployments"][0]
    assert deployment["image"]["repository"] == "<ECR_REGISTRY>/pdm-dagster-user-code"
    assert deployment["image"]["tag"] is None
    assert deployment["env"] == {
        "PDM_ENV": "prod",
        "PDM_S3_PREFIX": "pdm",
        "MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc.cluster.local:5000",
    }
    assert values["serviceAccount"] == {
        "create": False,
        "name": "dagster-user-code",
        "annotations": {},
    }
    assert deployment["resources"]["requests"] and deployment["resources"]["limits"]


def test_dockerignore_keeps_local_state_out():
    patterns = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv/", ".tools/", ".pdm*", ".git/"} <= patterns
    # Package metadata the build needs stays in the context.
    assert not {"pyproject.toml", "uv.lock", "README.md"} & patterns


def _locked_version(package: str) -> str:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    versions = [p["version"] for p in lock["package"] if p["name"] == package]
    assert len(versions) == 1, package
    return versions[0]
