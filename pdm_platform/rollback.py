"""Points the ``champion`` alias back at an earlier fleet-model version.

Usage (``make rollback VERSION=3`` runs the second form)::

    python -m pdm_platform.rollback --list
    python -m pdm_platform.rollback --to 3
"""

from __future__ import annotations

import argparse
import sys

from pdm_resources.mlflow_tracking import CHAMPION, MlflowTracking


def versions(tracking: MlflowTracking) -> list[tuple[int, str]]:
    """(version, promotion decision tag) of every fleet-model version, newest first."""
    client = tracking.client()
    found = client.search_model_versions(f"name='{tracking.registered_model}'")
    rows = [(int(v.version), v.tags.get("promotion.decision", "")) for v in found]
    return sorted(rows, reverse=True)


def rollback(tracking: MlflowTracking, to_version: int) -> tuple[str | None, str]:
    """Moves the champion alias to ``to_version``; returns (previous, new) versions."""
    client = tracking.client()
    name = tracking.registered_model
    known = {v for v, _ in versions(tracking)}
    if to_version not in known:
        raise ValueError(f"{name} has no version {to_version}; versions: {sorted(known)}")
    try:
        previous: str | None = str(client.get_model_version_by_alias(name, CHAMPION).version)
    except Exception:  # no champion yet
        previous = None
    client.set_registered_model_alias(name, CHAMPION, str(to_version))
    client.set_model_version_tag(name, str(to_version), "pdm.rollback_from", previous or "none")
    return previous, str(to_version)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Roll the champion alias back.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--to", type=int, help="fleet-model version to make champion")
    group.add_argument("--list", action="store_true", help="list versions")
    args = parser.parse_args(argv)
    tracking = MlflowTracking.from_env()
    if args.list:
        for version, decision in versions(tracking):
            print(f"v{version}\t{decision or '-'}")
        return 0
    try:
        previous, new = rollback(tracking, args.to)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{tracking.registered_model}@{CHAMPION}: v{previous} -> v{new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
