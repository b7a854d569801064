"""``fleet-simulate``: write simulated fleet telemetry to CSV or Parquet.

Examples::

    fleet-simulate --machines 20 --steps 1000 --out data/telemetry.csv
    fleet-simulate --out drifted.parquet --bias temperature=5 --noise-scale 2 --new-regime
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pdm_core.simulator import SENSORS, DriftSpec, SimulatorConfig, simulate


def _bias(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if name not in SENSORS or not value:
        raise argparse.ArgumentTypeError(f"expected SENSOR=VALUE with SENSOR in {SENSORS}")
    return name, float(value)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="fleet-simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output .csv or .parquet")
    parser.add_argument("--machines", type=int, default=40)
    parser.add_argument("--steps", type=int, default=2000, help="readings per machine")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--first-step", type=int, default=0, help="step of the first reading")
    parser.add_argument("--bias", type=_bias, action="append", default=[], metavar="S=V",
                        help="add V to sensor S (repeatable)")  # fmt: skip
    parser.add_argument("--noise-scale", type=float, default=1.0)
    parser.add_argument("--new-regime", action="store_true", help="add the unseen regime")
    parser.add_argument("--degradation-rate", type=float, default=1.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fleet-simulate``."""
    args = build_parser().parse_args(argv)
    drift = DriftSpec(
        sensor_bias=dict(args.bias),
        noise_scale=args.noise_scale,
        new_regime=args.new_regime,
        degradation_rate=args.degradation_rate,
    )
    config = SimulatorConfig(
        n_machines=args.machines,
        n_steps=args.steps,
        seed=args.seed,
        horizon=args.horizon,
        first_step=args.first_step,
        drift=drift,
    )
    frame = simulate(config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".parquet":
        frame.to_parquet(args.out, index=False)
    elif args.out.suffix == ".csv":
        frame.to_csv(args.out, index=False)
    else:
        print(f"error: --out must end in .csv or .parquet, got {args.out}", file=sys.stderr)
        return 2
    print(f"wrote {len(frame):,} readings of {args.machines} machines to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
