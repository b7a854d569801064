"""Bearer tokens of the risk service (bento_service.tokens), without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bento_service.tokens import BearerTokens, NoTokens


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_missing_or_empty_directory_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(NoTokens, match=r"PDM_SERVE_TOKENS_DIR='.*absent' is not a directory"):
        BearerTokens(tmp_path / "absent", 10)
    (tmp_path / ".hidden").write_text("t1")
    (tmp_path / "blank").write_text("  \n")
    with pytest.raises(NoTokens, match="holds no token file"):
        BearerTokens(tmp_path, 10)


def test_tokens_are_read_again_after_the_interval_and_fail_closed(tmp_path: Path) -> None:
    (tmp_path / "one").write_text("t1\n")
    clock = Clock()
    tokens = BearerTokens(tmp_path, 10, clock)
    assert tokens.refusal(b"Bearer t1") is None
    assert tokens.refusal(b"Bearer t2") == "unknown bearer token"
    assert tokens.refusal(None) == tokens.refusal(b"t1") == "no bearer token"
    (tmp_path / "two").write_text("t2")
    clock.now = 9.9
    assert tokens.refusal(b"Bearer t2") == "unknown bearer token"  # not read again yet
    clock.now = 10.0
    assert tokens.refusal(b"Bearer t2") is None and tokens.refusal(b"Bearer t1") is None
    for path in tmp_path.iterdir():
        path.unlink()
    clock.now = 20.0
    assert tokens.refusal(b"Bearer t1") == "unknown bearer token"  # no token left: none valid
