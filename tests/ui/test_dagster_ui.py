"""The user's path through the browser: Dagster UI, the Evidently drift report, the MLflow UI.

One fresh ``PDM_HOME`` (a 16-machine simulator fleet, as in the README walkthrough test), one
``dagster dev`` on a free port, Debian's chromium driven by Playwright (no browser download).
In order:

1. the global asset lineage shows every asset group of the definitions;
2. ``full_pipeline`` is launched with its **Materialize all** button (what the README tells a
   user to click) and the run succeeds;
3. ``model_evaluation``'s ``plots`` metadata opens and its PNG plots are drawn;
4. a simulated batch lands (``fleet-feed``), the landing-zone sensor ingests it, and the Evidently
   report linked from ``drift_report`` renders its columns;
   then the same **Materialize all** still launches one run (terminated at once: it is the
   launch that is tested, not a second training);
5. ``mlflow ui`` (as ``make mlflow-ui`` starts it) lists ``pdm-fleet-model`` with its champion and
   the ``pdm-platform`` experiment.

Screenshots go to ``$PDM_UI_ARTIFACTS`` (default: a pytest temp dir) and, with
``PDM_UPDATE_SCREENSHOTS=1``, to ``docs/images/`` for the README. A failing step saves
``FAILED-<step>.png`` there and names it in the error.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pdm_platform.drift_demo import stop_process_group, wait_until
from tests.services import dagster_dev_server, free_port
from tests.tooling import unavailable

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DOCS_IMAGES = REPO / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
MAX_SCREENSHOT_BYTES = 300_000
RUN_DONE = ("SUCCESS", "FAILURE", "CANCELED")
BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------------------------
# helpers


def graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POSTs a query to the webserver's ``/graphql`` and returns its ``data``."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        answer = json.loads(reply.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId jobName status tags { key value } } }
    ... on PythonError { message }
  }
}
"""
RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId status stepStats { stepKey status }
      assetMaterializations { assetKey { path } }
    }
  }
}
"""


def runs(base: str, job: str) -> list[dict[str, Any]]:
    """Runs of a job, newest first, as ``/graphql`` answers them."""
    data = graphql(base, RUNS_QUERY, {"filter": {"pipelineName": job}})["runsOrError"]
    assert data["__typename"] == "Runs", data
    return data["results"]


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            return reply.status == 200
    except OSError:
        return False


class Shots:
    """Saves screenshots as test artifacts and, on request, as the README's pictures."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.update_docs = os.environ.get("PDM_UPDATE_SCREENSHOTS") == "1"

    def save(self, page: Any, name: str, docs: bool = True) -> Path:
        """Screenshot of the viewport as ``<name>.png``.

        Args:
            page: The Playwright page.
            name: File stem.
            docs: A README picture: also ``docs/images/<name>.png`` when updating them.
        """
        path = self.directory / f"{name}.png"
        page.screenshot(path=str(path))
        size = path.stat().st_size
        if docs and self.update_docs:
            assert size < MAX_SCREENSHOT_BYTES, f"{path} is {size} bytes: too big for the README"
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_IMAGES / path.name)
        return path

    @contextmanager
    def step(self, page: Any, name: str) -> Iterator[None]:
        """Runs a UI step; when it fails, saves ``FAILED-<name>.png`` and names it."""
        try:
            yield
        except Exception as error:
            path = self.directory / f"FAILED-{name}.png"
            try:
                page.screenshot(path=str(path))
                where = f"screenshot: {path}"
            except Exception as shot_error:  # the browser itself may be gone
                where = f"no screenshot ({shot_error})"
            raise AssertionError(f"UI step {name!r} failed ({where}): {error}") from error


def skip_community_dialog(page: Any) -> None:
    """Clicks **Skip** on Dagster's "Join the Dagster community" dialog when it shows.

    It shows on the first visit to a fresh instance (its answer is stored in the instance).
    """
    page.get_by_role("link", name="Overview").first.wait_for(timeout=60_000)
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=5_000)
    except Exception:
        return
    skip.click()
    skip.wait_for(state="hidden", timeout=10_000)


def colours(png: bytes) -> int:
    """Distinct colours of an image (a blank or broken image has one or two)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        found = image.convert("RGB").getcolors(maxcolors=1 << 16)
    return len(found) if found is not None else 1 << 16


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Shots:
    configured = os.environ.get("PDM_UI_ARTIFACTS")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("ui-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return Shots(directory)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-home")


@pytest.fixture(scope="module")
def env(home: Path) -> dict[str, str]:
    """A fresh PDM_HOME with a small simulator fleet; nothing of the caller's state."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PDM_", "MLFLOW_"))}
    base.pop("DAGSTER_HOME", None)
    values = {
        **base,
        "PDM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PDM_SIM_MACHINES": "16",
        "PDM_SIM_STEPS": "1200",
        # A 16-machine fleet varies more from batch to batch than the default 40.
        "PDM_DRIFT_MIN_EFFECT": "0.35",
    }
    # What `make ui` does before `dagster dev`: the instance's dagster.yaml.
    subprocess.run(
        [sys.executable, "-m", "pdm_platform.instance"], env=values, cwd=REPO, check=True
    )
    return values


@pytest.fixture(scope="module")
def expected(env: dict[str, str]) -> dict[str, list[str]]:
    """Asset groups and the full_pipeline job's assets, read from the definitions."""
    script = (
        "import json\n"
        "from pdm_platform.definitions import defs\n"
        "from pdm_assets.jobs import PIPELINE_SELECTION\n"
        "groups = sorted({s.group_name for s in defs.resolve_all_asset_specs()})\n"
        "keys = PIPELINE_SELECTION.resolve(defs.resolve_asset_graph())\n"
        "print(json.dumps({'groups': groups,"
        " 'pipeline': sorted(k.to_user_string() for k in keys)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dagster_url(env: dict[str, str], home: Path) -> Iterator[str]:
    with dagster_dev_server(env, home / "logs" / "dagster-dev.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} not found (.ci/run installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def launch_full_pipeline(page: Any, dagster_url: str) -> str:
    """Clicks what the README says (Jobs, ``full_pipeline``, **Materialize all**); the run id."""
    page.goto(f"{dagster_url}/jobs", wait_until="domcontentloaded")
    skip_community_dialog(page)
    page.get_by_role("link", name="full_pipeline").first.click()
    page.wait_for_url(re.compile(r".*/jobs/full_pipeline.*"))
    before = {r["runId"] for r in runs(dagster_url, "full_pipeline")}
    page.get_by_text("telemetry", exact=True).first.wait_for(state="visible")
    page.locator("button", has_text=re.compile(r"^Materialize all$")).first.click()
    # landed_telemetry (per-batch ingestion) is upstream of drift_report but not in the job:
    # before any batch has landed the UI asks to confirm (the first drift report then says
    # "no landed telemetry yet"); once batches have landed it launches at once. Its
    # "Launched run" toast lasts a few seconds only, so the run is found in /graphql.
    confirm = page.get_by_role("button", name="Confirm")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if confirm.count() and confirm.first.is_visible():
            confirm.first.click()
        launched = [r for r in runs(dagster_url, "full_pipeline") if r["runId"] not in before]
        if launched:
            assert len(launched) == 1, f"one click launched {len(launched)} runs: {launched}"
            return str(launched[0]["runId"])
        page.wait_for_timeout(500)
    raise AssertionError("Materialize all launched no run of full_pipeline within 60 s")


@pytest.fixture(scope="module")
def full_run(browser: Any, dagster_url: str, shots: Shots) -> str:
    """Launches ``full_pipeline`` from its job page in the UI; returns the run id once done."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        with shots.step(page, "launch-full-pipeline"):
            run_id = launch_full_pipeline(page, dagster_url)

        def finished() -> dict[str, Any] | None:
            found = graphql(dagster_url, RUN_QUERY, {"runId": run_id})["runOrError"]
            return found if found.get("status") in RUN_DONE else None

        done = wait_until(f"full_pipeline run {run_id}", finished, timeout=900, every=5)
        with shots.step(page, "full-pipeline-run"):
            page.goto(f"{dagster_url}/runs/{run_id}", wait_until="domcontentloaded")
            page.get_by_text("fleet_health", exact=True).first.wait_for(state="visible")
            shots.save(page, "full-pipeline-run", docs=False)
        assert done["status"] == "SUCCESS", (
            f"run {run_id} ended {done['status']}: {done['stepStats']} "
            f"(run page: {shots.directory / 'full-pipeline-run.png'})"
        )
        return run_id
    finally:
        context.close()


# --------------------------------------------------------------------------------------------
# tests


def test_asset_graph_shows_every_group(
    page: Any, dagster_url: str, expected: dict[str, list[str]], shots: Shots
) -> None:
    groups = expected["groups"]
    assert len(groups) >= 5, groups
    with shots.step(page, "asset-graph"):
        page.goto(f"{dagster_url}/asset-groups", wait_until="domcontentloaded")
        skip_community_dialog(page)
        page.get_by_text("Global asset lineage").first.wait_for()
        for group in groups:
            # once in the sidebar's group list, once as a node of the graph
            named = page.get_by_text(group, exact=True)
            named.first.wait_for(state="visible")
            assert named.count() >= 2, f"group {group!r} shows {named.count()} time(s)"
        page.locator("button", has_text="Materialize all").first.wait_for()
        shots.save(page, "asset-graph")


def test_full_pipeline_launched_from_the_ui_succeeds(
    full_run: str, dagster_url: str, expected: dict[str, list[str]]
) -> None:
    (run,) = [r for r in runs(dagster_url, "full_pipeline") if r["runId"] == full_run]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags.get("dagster/from_ui") == "true", tags
    run = graphql(dagster_url, RUN_QUERY, {"runId": full_run})["runOrError"]
    assert run["stepStats"] and all(s["status"] == "SUCCESS" for s in run["stepStats"]), run
    materialized = {"/".join(m["assetKey"]["path"]) for m in run["assetMaterializations"]}
    assert materialized == set(expected["pipeline"])


def test_evaluation_plots_show_in_the_asset_metadata(
    page: Any, dagster_url: str, full_run: str, shots: Shots
) -> None:
    with shots.step(page, "evaluation-plot"):
        page.goto(f"{dagster_url}/assets/model_evaluation", wait_until="domcontentloaded")
        skip_community_dialog(page)
        row = page.locator("tr").filter(has=page.get_by_text("plots", exact=True))
        row.get_by_text("[Show Markdown]").first.click()
        dialog = page.get_by_role("dialog").filter(has_text="risk_classifier_keras")
        dialog.wait_for(state="visible")
        image = dialog.locator("img[alt='roc']").first
        image.wait_for(state="visible")
        assert image.get_attribute("src").startswith("data:image/png;base64,")
        width, height, complete = image.evaluate(
            "e => [e.naturalWidth, e.naturalHeight, e.complete]"
        )
        assert complete and width > 100 and height > 100, (width, height, complete)
        box = image.bounding_box()
        assert box and box["width"] > 100 and box["y"] < VIEWPORT["height"], box
        # drawn, not a broken-image icon: a plot has axes, a curve, labels
        assert colours(image.screenshot()) > 20
        plots = dialog.locator("img[src^='data:image/png']")
        assert plots.count() >= 8, f"{plots.count()} plots"  # classifiers 4 each, RUL 2 each
        shots.save(page, "evaluation-plot")


def test_drift_report_of_a_landed_batch_renders(
    page: Any, dagster_url: str, full_run: str, env: dict[str, str], shots: Shots
) -> None:
    from pdm_core.simulator import SENSORS

    started = {r["runId"] for r in runs(dagster_url, "ingest_telemetry")}
    feed = subprocess.run(
        [str(BIN / "fleet-feed"), "--batches", "1", "--machines", env["PDM_SIM_MACHINES"],
         "--no-progress"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert feed.returncode == 0, feed.stderr
    assert "wrote 1 file(s)" in feed.stdout, feed.stdout

    def ingested() -> dict[str, Any] | None:
        new = [r for r in runs(dagster_url, "ingest_telemetry") if r["runId"] not in started]
        return new[0] if new and new[0]["status"] in RUN_DONE else None

    run = wait_until("the landing-zone sensor's ingestion run", ingested, timeout=600, every=5)
    assert run["status"] == "SUCCESS", run
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags.get("dagster/sensor_name") == "landing_zone_sensor", tags

    with shots.step(page, "drift-report"):
        page.goto(f"{dagster_url}/assets/drift_report", wait_until="domcontentloaded")
        skip_community_dialog(page)
        row = page.locator("tr").filter(has=page.get_by_text("evidently_report", exact=True))
        link = row.locator("a[href$='.html']").first
        href = link.get_attribute("href")
        assert href and href.startswith("file://"), href
        report = Path(urllib.parse.unquote(href.removeprefix("file://")))
        assert report.is_file() and report.is_relative_to(Path(env["PDM_HOME"])), report
        assert report.parent.name == "drift"
        page.goto(href, wait_until="load")
        # the page is a JavaScript app: these texts exist only once it has rendered
        page.get_by_text("Dataset Drift", exact=True).first.wait_for(state="visible")
        page.get_by_text(re.compile(r"Drift is (not )?detected for")).first.wait_for()
        for sensor in SENSORS:
            page.get_by_text(f"{sensor}__z", exact=True).first.wait_for(state="visible")
        assert page.get_by_text("K-S p_value").count() >= 1
        shots.save(page, "drift-report")


ASSET_PARTITIONS = """
query Partitions($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode { partitionKeysByDimension { name partitionKeys } }
  }
}
"""
TERMINATE = """
mutation($runId: String!) {
  terminateRun(runId: $runId) { __typename }
}
"""


def test_materialize_all_still_launches_one_run_after_batches_landed(
    page: Any, dagster_url: str, full_run: str, shots: Shots
) -> None:
    landed = graphql(dagster_url, ASSET_PARTITIONS, {"key": {"path": ["landed_telemetry"]}})
    assert landed["assetNodeOrError"]["partitionKeysByDimension"][0]["partitionKeys"], landed
    with shots.step(page, "launch-after-batches"):
        run_id = launch_full_pipeline(page, dagster_url)
    assert run_id != full_run

    # The run is only launched to prove the click works; it is cancelled to save minutes.
    # Dagster terminates only QUEUED or STARTED runs (a run still starting gets
    # TerminateRunFailure), so the request is repeated until the run has stopped.
    def stopped() -> dict[str, Any] | None:
        found = graphql(dagster_url, RUN_QUERY, {"runId": run_id})["runOrError"]
        if found.get("status") in RUN_DONE:
            return found
        graphql(dagster_url, TERMINATE, {"runId": run_id})
        return None

    assert wait_until(f"run {run_id} to stop", stopped, timeout=300, every=3)["status"] in RUN_DONE


@pytest.fixture(scope="module")
def mlflow_url(home: Path, env: dict[str, str], full_run: str) -> Iterator[str]:
    """``mlflow ui`` with the Makefile's ``mlflow-ui`` arguments, on a free port."""
    port = free_port()
    store = home / "mlflow"
    command = [str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
               "--default-artifact-root", f"file://{store}/artifacts", "-h", "127.0.0.1",
               "-p", str(port), "--workers", "1"]  # fmt: skip
    log = home / "logs" / "mlflow-ui.log"
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while not http_ok(f"{url}/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow ui did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield url
    finally:
        stop_process_group(process)


def close_mlflow_popups(page: Any) -> None:
    """Closes MLflow's "new Model Registry UI" dialog and its assistant panel when shown."""
    dialog = page.get_by_role("dialog")
    try:
        dialog.first.wait_for(state="visible", timeout=10_000)
        dialog.first.get_by_role("button", name="Close").click()
        dialog.first.wait_for(state="hidden", timeout=10_000)
    except Exception:
        pass
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def test_mlflow_ui_shows_the_registered_model_and_experiment(
    page: Any, mlflow_url: str, shots: Shots
) -> None:
    with shots.step(page, "mlflow-models"):
        page.goto(f"{mlflow_url}/#/models", wait_until="load")
        model = page.get_by_role("link", name="pdm-fleet-model", exact=True)
        model.wait_for(state="visible")
        close_mlflow_popups(page)
        row = page.get_by_role("row").filter(has=model)
        assert "champion" in row.inner_text(), row.inner_text()
        for candidate in ("risk_classifier_keras", "rul_regressor_sklearn"):
            page.get_by_role("link", name=f"pdm-{candidate}", exact=True).wait_for()
        shots.save(page, "mlflow-models")
    with shots.step(page, "mlflow-experiments"):
        page.goto(f"{mlflow_url}/#/experiments", wait_until="load")
        page.get_by_role("link", name="pdm-platform", exact=True).wait_for(state="visible")
        shots.save(page, "mlflow-experiments", docs=False)
