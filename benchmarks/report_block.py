"""Writes a benchmark's generated block into BENCHMARKS.md between its own markers.

Every ``make bench*`` target owns one block, ``<!-- bench:<name>:start -->`` ...
``<!-- bench:<name>:end -->``. Rewriting only that block leaves the hand-written summary
and the other areas' figures as they are, so each benchmark can be rerun on its own.
"""

from __future__ import annotations

import re
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """The start and end comments of the block called ``name`` (for example ``drift``)."""
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def write_block(path: Path, name: str, text: str, heading: str = "") -> None:
    """Replaces block ``name`` in the markdown file at ``path`` with ``text``.

    A file without that block gets it appended, after ``heading`` when one is given, so a
    new benchmark lands in its own section rather than inside another one.
    """
    start, end = markers(name)
    block = f"{start}\n{text.strip()}\n{end}"
    content = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(content):
        content = pattern.sub(lambda _: block, content, count=1)
    else:
        section = f"{heading.strip()}\n\n{block}" if heading.strip() else block
        content = f"{content.rstrip()}\n\n{section}"
    path.write_text(content.rstrip() + "\n")
