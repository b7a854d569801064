"""The README's walkthroughs, run as written, in a fresh clone of the repository.

A shell (or Python) block of README.md is *runnable* when the line right before its fence is one
of these markers:

``<!-- runnable -->``
    Runs to completion with ``bash -euo pipefail`` (a ``python`` block with the clone's
    ``.venv/bin/python``) in the clone's root; it must exit 0.
``<!-- runnable: background port=3001 -->``
    Starts a server (``make serve``): the block runs in the background in its own process group
    until the test ends, and the next block runs once ``127.0.0.1:<port>`` accepts connections.

An optional ``timeout=<seconds>`` sets a block's limit (default 900). The blocks run in README
order, in a ``git clone`` of this repository's HEAD (commit before running; with
``PDM_README_WORKTREE=1`` the working tree's uncommitted files are laid over the clone, for
developing the README). The clone installs itself (``make demo`` bootstraps ``.tools`` and
``.venv`` with the shared uv cache), keeps its state in its own ``.pdm/`` (the documented
default ``PDM_HOME``), and finds the datasets through a ``shared`` link beside it, as
``tests/conftest.py`` expects. A smaller simulator fleet (``PDM_SIM_MACHINES``,
``PDM_SIM_STEPS``, with the effect size such a fleet needs, ``PDM_DRIFT_MIN_EFFECT``; all
documented) keeps the run within a few minutes.

After ``make demo`` and ``make drift-demo`` the test also checks what they printed and left in
``PDM_HOME`` (``tests/walkthrough_checks.py``): every asset materialised; stationary batches
trigger nothing, the drifted batch exactly one retrain, and the sensor's tick after it no second.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pdm_platform.drift_demo import stop_process_group
from tests.walkthrough_checks import check_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DEFAULT_TIMEOUT = 900.0
MARKER = re.compile(r"^<!--\s*runnable(?::\s*(?P<options>[^>]*?))?\s*-->\s*$")
ALMOST_MARKER = re.compile(r"^<!--\s*runnable\b")  # a marker MARKER would not read
FENCE = re.compile(r"^```(?P<lang>bash|sh|python)\s*$")


@dataclass(frozen=True)
class Block:
    """One runnable block of a markdown document.

    Attributes:
        code: The block's text, without the fences.
        lang: ``bash`` (also for ``sh``) or ``python``.
        line: 1-based line number of its opening fence.
        background: Runs in the background (a server) until the end.
        port: With ``background``: the port on 127.0.0.1 that answers once it is up.
        timeout: Seconds the block (or the server's start) may take.
    """

    code: str
    lang: str
    line: int
    background: bool = False
    port: int | None = None
    timeout: float = DEFAULT_TIMEOUT


@dataclass
class _Options:
    background: bool = False
    port: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    unknown: list[str] = field(default_factory=list)


def _parse_options(text: str | None) -> _Options:
    options = _Options()
    for word in (text or "").split():
        key, _, value = word.partition("=")
        if word == "background":
            options.background = True
        elif key == "port" and value.isdigit():
            options.port = int(value)
        elif key == "timeout" and value.replace(".", "", 1).isdigit():
            options.timeout = float(value)
        else:
            options.unknown.append(word)
    return options


def extract_blocks(markdown: str) -> list[Block]:
    """The runnable blocks of a markdown text, in order.

    Args:
        markdown: The document.

    Returns:
        One :class:`Block` per marker.

    Raises:
        ValueError: A comment that starts like a marker does not parse as one, a marker is not
            directly followed by a ``bash``/``sh``/``python`` fence, has an unknown option, a
            background block names no port, or a fence is unclosed.
    """
    lines = markdown.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        marker = MARKER.match(line)
        index += 1
        if not marker:
            if ALMOST_MARKER.match(line):
                raise ValueError(f"line {index}: malformed marker {line!r} (options after a colon)")
            continue
        options = _parse_options(marker.group("options"))
        where = f"line {index}"
        if options.unknown:
            raise ValueError(f"{where}: unknown runnable option(s) {options.unknown}")
        if options.background and options.port is None:
            raise ValueError(f"{where}: a background block needs port=<n>")
        fence = FENCE.match(lines[index].strip()) if index < len(lines) else None
        if not fence:
            raise ValueError(f"{where}: a runnable marker must precede a ```bash/```python fence")
        start = index + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"line {start}: unclosed code fence")
        lang = "python" if fence.group("lang") == "python" else "bash"
        blocks.append(
            Block(
                code="\n".join(lines[start:end]) + "\n",
                lang=lang,
                line=start,
                background=options.background,
                port=options.port,
                timeout=options.timeout,
            )
        )
        index = end + 1
    return blocks


# --------------------------------------------------------------------------------------------
# fast tests of the extractor and of the README's own consistency

SAMPLE = """\
# Title

```bash
echo not marked
```

<!-- runnable -->
```bash
make demo
echo done
```

Some text.

<!-- runnable: background port=3001 timeout=120 -->
```bash
make serve
```

<!-- runnable -->
```python
print("hello")
```

```python
print("not marked either")
```
"""


def test_extract_blocks_finds_only_marked_blocks() -> None:
    blocks = extract_blocks(SAMPLE)
    assert [b.code for b in blocks] == [
        "make demo\necho done\n",
        "make serve\n",
        'print("hello")\n',
    ]
    assert [b.lang for b in blocks] == ["bash", "bash", "python"]
    assert [b.line for b in blocks] == [8, 16, 21]  # the opening fences
    assert [b.background for b in blocks] == [False, True, False]
    assert blocks[1].port == 3001 and blocks[1].timeout == 120
    assert blocks[0].port is None and blocks[0].timeout == DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- runnable -->\nplain text\n", "must precede"),
        ("<!-- runnable -->\n```json\n{}\n```\n", "must precede"),
        ("<!-- runnable: background -->\n```bash\nx\n```\n", "needs port"),
        ("<!-- runnable: foreground -->\n```bash\nx\n```\n", "unknown runnable option"),
        ("<!-- runnable -->\n```bash\nmake demo\n", "unclosed"),
        ("<!-- runnable timeout=60 -->\n```bash\nx\n```\n", "malformed marker"),
    ],
)
def test_extract_blocks_rejects_broken_markers(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_blocks(text)


def test_readme_markers_are_valid_and_name_existing_make_targets() -> None:
    text = README.read_text()
    blocks = extract_blocks(text)
    assert len(blocks) >= 4, "README.md should mark its walkthrough blocks <!-- runnable -->"
    targets = set(re.findall(r"^([a-z0-9-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    mentioned = set(re.findall(r"\bmake ([a-z][a-z0-9-]*)", text))
    assert mentioned <= targets, f"README mentions unknown make targets: {mentioned - targets}"
    scripts = set(re.findall(r"^(fleet-[a-z-]+) =", (REPO / "pyproject.toml").read_text(), re.M))
    used = set(re.findall(r"\.venv/bin/(fleet-[a-z-]+)", text))
    assert used <= scripts, f"README uses unknown console scripts: {used - scripts}"


# --------------------------------------------------------------------------------------------
# the README, run in a fresh clone


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _clean_env(clone: Path) -> dict[str, str]:
    """The caller's environment without this checkout's venv, state or settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PDM_", "MLFLOW_", "BENTOML_", "DAGSTER_", "PYTEST_"))
        and key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"}
    }
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    env["PATH"] = os.pathsep.join(p for p in paths if not (Path(p).parent / "pyvenv.cfg").exists())
    env.setdefault("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))  # shared, as the Makefile
    env.update(
        PDM_HOME=str(clone / ".pdm"),  # the documented default, inside the throw-away clone
        PDM_SIM_MACHINES="16",
        PDM_SIM_STEPS="1200",
        # A 16-machine fleet varies more from batch to batch than the default 40 (README,
        # "Why an effect size of 0.2"): the drift demo's stationary batches must stay quiet.
        PDM_DRIFT_MIN_EFFECT="0.35",
        CI=os.environ.get("CI", ""),
    )
    return env


def _clone(target: Path) -> Path:
    """A ``git clone`` of HEAD, with a ``shared`` link beside it; optionally the work tree.

    The clone lies under a folder whose name starts with a dot (as under ``~/.cache/``): the
    project must work wherever it is cloned.
    """
    target = target / ".cache"
    target.mkdir()
    clone = target / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    if os.environ.get("PDM_README_WORKTREE") == "1":
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO, check=True, capture_output=True,
        ).stdout.decode().split("\0")  # fmt: skip
        for name in filter(None, listed):
            source = REPO / name
            if source.is_file():
                (clone / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, clone / name)
    shared = Path(os.environ.get("PDM_SHARED_DATA", REPO.parent / "shared" / "data")).parent
    if shared.exists():
        (target / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    return clone


@pytest.fixture()
def servers() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in reversed(started):
        stop_process_group(process)


def test_readme_walkthrough_runs_in_a_fresh_clone(
    tmp_path: Path, servers: list[subprocess.Popen]
) -> None:
    blocks = extract_blocks(README.read_text())
    clone = _clone(tmp_path)
    env = _clean_env(clone)
    logs = tmp_path / "logs"
    logs.mkdir()
    timings: list[str] = []
    for number, block in enumerate(blocks, 1):
        label = f"README.md block {number} (line {block.line})"
        command = (
            ["bash", "-euo", "pipefail", "-c", block.code]
            if block.lang == "bash"
            else [str(clone / ".venv" / "bin" / "python"), "-c", block.code]
        )
        log = logs / f"block-{number:02d}.log"
        started = time.monotonic()
        if block.background:
            assert block.port is not None
            assert not _port_open(block.port), f"{label}: port {block.port} is already in use"
            with open(log, "wb") as handle:
                process = subprocess.Popen(
                    command, cwd=clone, env=env, stdout=handle, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            servers.append(process)
            while not _port_open(block.port):
                waited = time.monotonic() - started
                if process.poll() is not None or waited > block.timeout:
                    state = f"exited {process.returncode}" if process.poll() is not None else (
                        f"not listening after {waited:.0f}s"
                    )  # fmt: skip
                    pytest.fail(f"{label} {state}:\n{block.code}\n{log.read_text()[-4000:]}")
                time.sleep(1)
        else:
            try:
                done = subprocess.run(
                    command, cwd=clone, env=env, capture_output=True, text=True,
                    timeout=block.timeout,
                )  # fmt: skip
            except subprocess.TimeoutExpired as error:
                pytest.fail(f"{label} ran over {block.timeout:.0f}s:\n{block.code}\n{error}")
            log.write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                pytest.fail(
                    f"{label} exited {done.returncode}:\n{block.code}\n--- output (tail) ---\n"
                    f"{(done.stdout + done.stderr)[-4000:]}\n(logs: {logs})"
                )
            check = check_for(block.code.strip().splitlines()[0])
            if check is not None:
                check(done.stdout + done.stderr, Path(env["PDM_HOME"]))
        first = block.code.strip().splitlines()[0][:60]
        timings.append(f"{label}: {first} {time.monotonic() - started:.0f}s")
    print("\n".join(timings))
