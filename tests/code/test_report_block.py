"""The shared writer of generated benchmark blocks in BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report_block import markers, write_block


def test_replaces_only_its_own_block(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    a_start, a_end = markers("a")
    b_start, b_end = markers("b")
    path.write_text(
        f"# Benchmarks\n\nsummary\n\n{a_start}\nold a\n{a_end}\n\n{b_start}\nb\n{b_end}\n"
    )

    write_block(path, "a", "new a\nsecond line")

    text = path.read_text()
    assert f"{a_start}\nnew a\nsecond line\n{a_end}" in text
    assert "old a" not in text
    assert f"{b_start}\nb\n{b_end}" in text
    assert text.startswith("# Benchmarks\n\nsummary\n")


def test_appends_a_missing_block_under_its_heading(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    write_block(path, "drift", "| table |", heading="## Drift")
    write_block(path, "drift", "| second |", heading="## Drift")

    text = path.read_text()
    start, end = markers("drift")
    assert text == f"# Benchmarks\n\n## Drift\n\n{start}\n| second |\n{end}\n"


def test_text_with_regex_replacement_characters_is_kept_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    write_block(path, "x", "first")
    write_block(path, "x", r"p99 \1 ms \g<0>")
    assert r"p99 \1 ms \g<0>" in path.read_text()
