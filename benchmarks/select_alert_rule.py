"""Chooses the alert rule's RUL share of the horizon on a **validation** feed.

Usage (after ``make demo``)::

    python benchmarks/select_alert_rule.py --seed 7

Replays a feed of another seed than the one ``make bench-live`` judges (its default is 42)
through the champion exactly as ``bench_live`` does, then judges the alerts that each RUL share
of the horizon would raise (:class:`pdm_core.alerts.RiskAlertRule`) on that feed. The share
kept is the one with the largest warned share among those whose precision is >= 0.8 and
median lead >= half the horizon (the bench's goals); ties go to the larger share, which warns
earlier. The benchmark's feed is never scored here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_live import champion, judge_alerts, raised_alerts, replay  # noqa: E402

SHARES = (1.0, 5 / 6, 2 / 3, 1 / 2, 1 / 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="validation feed's seed (not 42)")
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    if args.seed == 42:
        raise SystemExit("seed 42 is the feed make bench-live judges; choose on another seed")
    from pdm_core.alerts import RiskAlertRule
    from pdm_core.feed import FeedConfig

    feed = FeedConfig(seed=args.seed)
    model, version, _ = champion()
    done = replay(model, version, args.batches, feed)
    horizon = feed.horizon
    print(f"champion v{version}; validation feed seed {args.seed}, {len(done.rows)} readings")
    print("| RUL share of horizon | max RUL | warned | median lead | precision | false/1000 |")
    print("|---|---|---|---|---|---|")
    rules = [(None, RiskAlertRule())] + [(s, RiskAlertRule.for_horizon(horizon, s)) for s in SHARES]
    best: tuple[float, float] | None = None
    for share, rule in rules:
        q = judge_alerts(done, raised_alerts(done.rows, rule)[0], horizon)
        print(f"| {'none' if share is None else f'{share:.3g}'} | {rule.max_rul} | "
              f"{q.warned_share:.3f} | {q.median_lead} | {q.precision:.3f} | "
              f"{q.false_per_1000:.2f} |")  # fmt: skip
        meets = (q.precision or 0) >= 0.8 and (q.median_lead or 0) >= horizon / 2
        if share is not None and meets and (best is None or (q.warned_share or 0) > best[1]):
            best = (share, q.warned_share or 0)
    print(f"chosen share: {'none meets both goals' if best is None else f'{best[0]:.3g}'}")


if __name__ == "__main__":
    main()
