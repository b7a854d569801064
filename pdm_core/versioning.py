"""Content hashes that identify a version of a table."""

from __future__ import annotations

import hashlib

import pandas as pd


def frame_version(frame: pd.DataFrame) -> str:
    """Returns a short content hash of a frame: same columns and values, same hash.

    The hash covers column names, dtypes and every value (row order matters), not the index.

    Args:
        frame: Any DataFrame.

    Returns:
        16 hex characters.
    """
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
