"""Loaders turning external data sources into the canonical telemetry frame.

Every loader returns a :class:`pdm_core.schema.LoadResult`. Structural problems (missing file,
missing or extra columns, undecodable bytes, ...) raise
:class:`pdm_core.errors.DataValidationError`; row-level problems follow the ``on_bad_rows``
policy (``"quarantine"`` or ``"fail"``).
"""

from pdm_core.loaders.cmapss import CMAPSS_SUBSETS, load_cmapss
from pdm_core.loaders.tabular import TabularMapping, load_mapping, load_tabular, mapping_info

__all__ = [
    "CMAPSS_SUBSETS",
    "TabularMapping",
    "load_cmapss",
    "load_mapping",
    "load_tabular",
    "mapping_info",
]
