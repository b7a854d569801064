"""Bearer tokens for callers outside the cluster, read from a directory and re-read while serving.

Off unless ``PDM_SERVE_TOKENS_DIR`` names a directory. Every regular file in it whose name does
not start with a dot holds one token (surrounding whitespace ignored), which is the layout of a
Kubernetes Secret mounted as a volume: one file per key. Several tokens are valid at once, so a
new one can be added, clients moved to it and the old one removed without a restart: the
directory is read again at most every ``PDM_SERVE_TOKENS_RELOAD_S`` seconds, and the kubelet
updates a mounted Secret in place.

Only SHA-256 digests of the tokens are kept, and a presented token is compared with every one
of them by :func:`hmac.compare_digest` (no early exit), so neither the answer time nor a memory
dump tells a caller how close a guess was. Nothing here ever logs a token.

This module must not import Dagster.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path

LOGGER = logging.getLogger("pdm.service.tokens")
SCHEME = b"bearer "


class NoTokens(ValueError):
    """The token directory is missing or holds no token."""


def read_token_digests(directory: Path) -> list[bytes]:
    """SHA-256 digests of the tokens in ``directory`` (one per non-hidden, non-empty file).

    Raises:
        NoTokens: The directory does not exist or holds no token (naming it).
    """
    if not directory.is_dir():
        raise NoTokens(f"PDM_SERVE_TOKENS_DIR={str(directory)!r} is not a directory")
    digests = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue  # a Secret volume's ..data links and timestamped folders are hidden
        token = path.read_bytes().strip()
        if token:
            digests.append(hashlib.sha256(token).digest())
    if not digests:
        raise NoTokens(f"PDM_SERVE_TOKENS_DIR={str(directory)!r} holds no token file")
    return digests


class BearerTokens:
    """The valid tokens of one worker, re-read from their directory every ``reload_s``."""

    def __init__(
        self, directory: Path, reload_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.directory = directory
        self.reload_s = reload_s
        self._clock = clock
        self._digests = read_token_digests(directory)  # a bad setting stops the start
        self._read_at = clock()

    def _current(self) -> list[bytes]:
        now = self._clock()
        if now - self._read_at >= self.reload_s:
            self._read_at = now
            try:
                self._digests = read_token_digests(self.directory)
            except (NoTokens, OSError) as error:  # fail closed: no token is valid
                LOGGER.error("no valid bearer token any more: %s", error)
                self._digests = []
        return self._digests

    def refusal(self, authorization: bytes | None) -> str | None:
        """Why a request with this ``Authorization`` header is refused; None when it is not."""
        if not authorization or authorization[: len(SCHEME)].lower() != SCHEME:
            return "no bearer token"
        presented = hashlib.sha256(authorization[len(SCHEME) :].strip()).digest()
        matches = [hmac.compare_digest(presented, known) for known in self._current()]
        return None if any(matches) else "unknown bearer token"
