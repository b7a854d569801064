"""The configured telemetry source: built-in simulator, NASA C-MAPSS or the user's own table.

Chosen by environment for ``make demo`` (``PDM_SOURCE`` and friends, see
:meth:`TelemetrySource.from_env`) and overridable per run in the Dagster Launchpad under
``resources.telemetry_source.config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dagster as dg

from pdm_core.schema import DatasetInfo, LoadResult
from pdm_resources.env_config import from_environment

SourceKind = Literal["simulator", "cmapss", "tabular"]


ENV_VARS = {
    "source": "PDM_SOURCE",
    "horizon": "PDM_HORIZON",
    "sim_machines": "PDM_SIM_MACHINES",
    "sim_steps": "PDM_SIM_STEPS",
    "sim_seed": "PDM_SIM_SEED",
    "cmapss_dir": "PDM_CMAPSS_DIR",
    "cmapss_subset": "PDM_CMAPSS_SUBSET",
    "cmapss_cycles_as_age": "PDM_CMAPSS_CYCLES_AS_AGE",
    "tabular_config": "PDM_TABULAR_CONFIG",
    "max_rejected_fraction": "PDM_MAX_REJECTED_FRACTION",
}
"""The environment variable behind each setting (README, configuration reference)."""


class TelemetrySource(dg.ConfigurableResource):
    """Where raw telemetry comes from.

    Attributes:
        source: ``simulator``, ``cmapss`` or ``tabular``.
        horizon: Horizon H (readings) of the ``failure_within_h`` label.
        sim_machines: Simulator: machines in the fleet.
        sim_steps: Simulator: readings per machine.
        sim_seed: Simulator: random seed.
        cmapss_dir: C-MAPSS: directory with ``train_FD00x.txt`` etc.
        cmapss_subset: C-MAPSS: FD001 to FD004.
        cmapss_cycles_as_age: C-MAPSS: give each reading ``time_since_maintenance`` = its cycle
            number (the engine's age; every trajectory starts in normal operation without
            maintenance within it), so the features include it. Serving clients then send
            ``time_since_maintenance`` with each reading (the service requires it); the
            cycle numbers the service assigns to timestamp-only windows are never used.
        tabular_config: Own data: path of the mapping file (YAML or JSON).
        max_rejected_fraction: Fail the load when more rows than this share are rejected.
    """

    source: SourceKind = "simulator"
    horizon: int = 30
    sim_machines: int = 40
    sim_steps: int = 2_000
    sim_seed: int = 42
    cmapss_dir: str = ""
    cmapss_subset: str = "FD001"
    cmapss_cycles_as_age: bool = True
    tabular_config: str = ""
    max_rejected_fraction: float = 0.01

    @classmethod
    def from_env(cls) -> TelemetrySource:
        """Builds the source from ``PDM_*`` environment variables (documented in the README)."""
        return from_environment(cls, ENV_VARS)

    def describe(self) -> str:
        """One line saying what this source reads."""
        if self.source == "simulator":
            return (
                f"simulator ({self.sim_machines} machines x {self.sim_steps} readings, "
                f"seed {self.sim_seed})"
            )
        if self.source == "cmapss":
            return f"NASA C-MAPSS {self.cmapss_subset} from {self.cmapss_dir}"
        return f"tabular data described by {self.tabular_config}"

    def dataset_info(self) -> DatasetInfo:
        """Column roles of this source's data (the landing contract of new files).

        Read from the configuration for the simulator and your own data (the mapping names the
        columns); C-MAPSS is loaded (three small text files) to learn its active columns.
        """
        if self.source == "simulator":
            from pdm_core.simulator import SimulatorConfig, dataset_info

            return dataset_info(SimulatorConfig(n_machines=1, n_steps=1, horizon=self.horizon))
        if self.source == "tabular" and self.tabular_config:
            from pdm_core.loaders import load_mapping, mapping_info

            return mapping_info(load_mapping(Path(self.tabular_config)))
        return self.load().info

    def load(self) -> LoadResult:
        """Loads the telemetry into the canonical frame.

        Raises:
            ValueError: The configuration is incomplete (e.g. no C-MAPSS directory).
            pdm_core.errors.DataValidationError: The data breaks a rule (names file and line).
        """
        if self.source == "simulator":
            from pdm_core.schema import empty_rejects
            from pdm_core.simulator import SimulatorConfig, dataset_info, simulate

            config = SimulatorConfig(
                n_machines=self.sim_machines,
                n_steps=self.sim_steps,
                seed=self.sim_seed,
                horizon=self.horizon,
            )
            frame = simulate(config)
            return LoadResult(frame, dataset_info(config), empty_rejects(), len(frame))
        if self.source == "cmapss":
            if not self.cmapss_dir:
                raise ValueError("source 'cmapss' needs cmapss_dir (env PDM_CMAPSS_DIR)")
            from pdm_core.loaders import load_cmapss

            return load_cmapss(
                Path(self.cmapss_dir),
                self.cmapss_subset,
                horizon=self.horizon,
                max_rejected_fraction=self.max_rejected_fraction,
                cycles_as_age=self.cmapss_cycles_as_age,
            )
        if self.source == "tabular":
            if not self.tabular_config:
                raise ValueError("source 'tabular' needs tabular_config (env PDM_TABULAR_CONFIG)")
            from pdm_core.loaders import load_mapping, load_tabular

            return load_tabular(
                load_mapping(Path(self.tabular_config)),
                max_rejected_fraction=self.max_rejected_fraction,
            )
        raise ValueError(f"unknown source {self.source!r}; use simulator, cmapss or tabular")
