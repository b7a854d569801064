"""``fleet-feed``: write new simulated telemetry batches into the landing zone.

Each batch is one Parquet file ``feed-<number>.parquet`` in ``<landing-dir>/incoming`` holding
``--steps-per-batch`` readings of every machine; numbering continues across runs (state in
``<landing-dir>/.feed-state.json``). The landing dir defaults to ``$PDM_LANDING_DIR``, else
``$PDM_HOME/landing``, as for the pipeline's landing zone. Drift flags inject drift from
``--drift-from-batch`` on, an absolute batch number that defaults to the first batch this run
writes.

Examples::

    fleet-feed --batches 5
    fleet-feed --batches 10 --bias vibration=0.5 --noise-scale 1.5 --drift-from-batch 12
    fleet-feed --landing-dir /data/landing --new-regime --no-progress
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from pdm_core import paths
from pdm_core.simulator import SENSORS, DriftSpec


def _int_at_least(minimum: int):  # type: ignore[no-untyped-def]
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _bias(text: str) -> tuple[str, float]:
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not raw.strip():
        raise argparse.ArgumentTypeError(f"expected SENSOR=SD, e.g. vibration=0.5; got {text!r}")
    if name not in SENSORS:
        raise argparse.ArgumentTypeError(
            f"unknown sensor {name!r}; known sensors: {', '.join(SENSORS)}"
        )
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bias of {name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"bias of {name} must be finite, got {raw!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="fleet-feed",
        description="Write new simulated telemetry batches into the landing zone.",
    )
    parser.add_argument(
        "--batches", type=_positive_int, default=1, help="files to write (default 1)"
    )
    parser.add_argument("--steps-per-batch", type=_positive_int, default=50,
                        help="readings per machine in one file (default 50)")  # fmt: skip
    parser.add_argument("--machines", type=_positive_int, default=40,
                        help="machines in the fleet (default 40)")  # fmt: skip
    parser.add_argument("--seed", type=_non_negative_int, default=42,
                        help="seed of the fleet (default 42, the default source's)")  # fmt: skip
    parser.add_argument("--horizon", type=_positive_int, default=30,
                        help="horizon H of the failure_within_h label (default 30)")  # fmt: skip
    parser.add_argument("--landing-dir", type=Path, default=None,
                        help="landing zone root (default: $PDM_LANDING_DIR, else "
                        "$PDM_HOME/landing); files go to its incoming/ directory")  # fmt: skip
    drift = parser.add_argument_group("drift")
    drift.add_argument("--bias", type=_bias, action="append", default=[], metavar="SENSOR=SD",
                       help="add SD standard deviations of SENSOR to its readings (repeatable); "
                       f"sensors: {', '.join(SENSORS)}")  # fmt: skip
    drift.add_argument("--noise-scale", type=_positive_float, default=None,
                       help="multiply sensor noise by X (default 1)")  # fmt: skip
    drift.add_argument("--new-regime", action="store_true",
                       help="machines also run in the unseen 'overload' regime")  # fmt: skip
    drift.add_argument("--degradation-rate", type=_positive_float, default=None,
                       help="multiply wear speed by X (default 1)")  # fmt: skip
    drift.add_argument("--drift-from-batch", type=_non_negative_int, default=None, metavar="K",
                       help="absolute batch number from which drift applies "
                       "(default: the first batch of this run)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar; print one line per file instead")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fleet-feed``."""
    from pdm_core.feed import FeedConfig, next_batch, run_feed

    parser = build_parser()
    args = parser.parse_args(argv)
    any_drift = (
        bool(args.bias)
        or args.new_regime
        or (args.noise_scale is not None or args.degradation_rate is not None)
    )
    if args.drift_from_batch is not None and not any_drift:
        parser.error("--drift-from-batch needs a drift flag (--bias, --noise-scale, ...)")
    root = Path(args.landing_dir or paths.landing_dir()).expanduser()
    incoming = root / "incoming"
    try:
        first = next_batch(root)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bias_sd: dict[str, float] = {}
    for name, value in args.bias:
        bias_sd[name] = bias_sd.get(name, 0.0) + value
    config = FeedConfig(
        n_machines=args.machines,
        steps_per_batch=args.steps_per_batch,
        seed=args.seed,
        horizon=args.horizon,
        drift=DriftSpec(
            noise_scale=args.noise_scale if args.noise_scale is not None else 1.0,
            new_regime=args.new_regime,
            degradation_rate=args.degradation_rate if args.degradation_rate is not None else 1.0,
        ),
        drift_from_batch=args.drift_from_batch if args.drift_from_batch is not None else first,
        bias_sd=bias_sd,
    )
    rows = 0

    def report(number: int, path: Path, n_rows: int) -> None:
        nonlocal rows
        rows += n_rows
        if args.no_progress:
            print(f"{path.name}: {n_rows:,} readings (batch {number})", flush=True)

    written = run_feed(
        config, incoming, root, args.batches, progress=not args.no_progress, on_batch=report
    )
    last = first + len(written) - 1
    numbers = f"batch {first}" if last == first else f"batches {first}-{last}"
    print(
        f"wrote {len(written)} file(s), {rows:,} readings of {args.machines} machines "
        f"({numbers}); drift: {config.describe_drift()}; landing dir {root} "
        f"(files in {incoming})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
