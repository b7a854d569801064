"""``simulate_feed``: a Launchpad job that writes simulated telemetry batches into the landing zone.

The job is the Dagster face of ``fleet-feed`` (:mod:`pdm_core.feed`): it continues the default
simulator fleet with new batches in ``<landing root>/incoming`` (``$PDM_LANDING_DIR``, else
``$PDM_HOME/landing``, as for the landing zone resource), optionally drifted, and
numbers them after the batches earlier runs wrote.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from pdm_core.names import SIMULATE_FEED_JOB


class FeedSettings(dg.Config):
    """What the simulator feed writes (drift, when set, applies to every batch of the run)."""

    batches: int = Field(1, description="Files (batches) to write.")
    steps_per_batch: int = Field(50, description="Readings per machine in one batch.")
    machines: int = Field(40, description="Machines in the fleet (ids M000..).")
    seed: int = Field(42, description="Seed of the fleet (42: the default source's fleet).")
    bias_sd: dict[str, float] = Field(
        {},
        description="bias per sensor in sd units, e.g. {vibration: 0.5}",
    )
    noise_scale: float = Field(1.0, description="Multiplier on every sensor's noise.")
    new_regime: bool = Field(
        False, description="Machines also run in the unseen 'overload' regime."
    )
    degradation_rate: float = Field(
        1.0, description="Multiplier on wear speed (2.0 halves component lives)."
    )


@dg.op(description="Writes simulated telemetry batches into the landing zone's incoming folder.")
def write_feed_batches(context: dg.OpExecutionContext, config: FeedSettings) -> list[str]:
    """Writes ``config.batches`` feed files and returns their paths."""
    from pdm_core.feed import FeedConfig, next_batch, run_feed
    from pdm_core.paths import landing_dir
    from pdm_core.simulator import DriftSpec

    root = landing_dir()
    first = next_batch(root)
    try:
        feed = FeedConfig(
            n_machines=config.machines,
            steps_per_batch=config.steps_per_batch,
            seed=config.seed,
            drift=DriftSpec(
                noise_scale=config.noise_scale,
                new_regime=config.new_regime,
                degradation_rate=config.degradation_rate,
            ),
            drift_from_batch=first,
            bias_sd=dict(config.bias_sd),
        )
        if config.batches < 1:
            raise ValueError(f"batches must be >= 1, got {config.batches}")
    except ValueError as error:
        raise dg.Failure(description=f"invalid feed settings: {error}") from error

    def log_batch(number: int, path: Path, rows: int) -> None:
        context.log.info(f"batch {number}: wrote {rows:,} readings to {path}")

    written = run_feed(
        feed, root / "incoming", root, config.batches, progress=False, on_batch=log_batch
    )
    context.log.info(
        f"{len(written)} file(s) in {root / 'incoming'}; drift: {feed.describe_drift()}"
    )
    return [str(path) for path in written]


@dg.job(
    name=SIMULATE_FEED_JOB,
    description="Writes new simulated telemetry batches (optionally drifted) into the landing "
    "zone, continuing the default simulator fleet; set the drift under ops.write_feed_batches.",
)
def simulate_feed() -> None:
    """Runs :func:`write_feed_batches` once."""
    write_feed_batches()
