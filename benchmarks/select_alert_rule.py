"""Chooses the alert rule's RUL shares of the horizon on a **validation** feed.

Usage (after ``make demo``)::

    python benchmarks/select_alert_rule.py --seed 7

Replays a feed of another seed than the one ``make bench-live`` judges (its default is 42)
through the champion exactly as ``bench_live`` does, then judges the alerts that each pair of
RUL shares of the horizon would raise (:class:`pdm_core.alerts.RiskAlertRule`: the gate below
which a HIGH/CRITICAL reading alerts, and the share below which it escalates as imminent) on
that feed. The pair kept has the largest warned share among those whose precision is >= 0.8
and median lead >= half the horizon (the bench's goals); ties go to the first in the table's
order (the larger gate, which warns earlier, then no or a later escalation, fewer alerts). The
benchmark's feed is never scored here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_live import champion, judge_alerts, raised_alerts, replay  # noqa: E402

SHARES = (1.0, 5 / 6, 2 / 3, 1 / 2, 1 / 3)
IMMINENT_SHARES = (None, 1 / 2, 1 / 3, 1 / 6)


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
    print("| RUL share | imminent share | max RUL | imminent RUL | warned | median lead "
          "| alerts | precision | false/1000 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    rules = [((None, None), RiskAlertRule())] + [
        ((s, i), RiskAlertRule.for_horizon(horizon, s, i)) for s in SHARES for i in IMMINENT_SHARES
    ]
    best: tuple[tuple[float | None, float | None], float] | None = None
    for (share, imminent), rule in rules:
        q = judge_alerts(done, raised_alerts(done.rows, rule)[0], horizon)
        print(f"| {_share(share)} | {_share(imminent)} | {rule.max_rul} | {rule.imminent_rul} | "
              f"{q.warned_share:.3f} | {q.median_lead} | {q.alerts} | {q.precision:.3f} | "
              f"{q.false_per_1000:.2f} |")  # fmt: skip
        meets = (q.precision or 0) >= 0.8 and (q.median_lead or 0) >= horizon / 2
        if share is not None and meets and (best is None or (q.warned_share or 0) > best[1]):
            best = ((share, imminent), q.warned_share or 0)
    chosen = "none meets both goals" if best is None else (
        f"RUL share {_share(best[0][0])}, imminent share {_share(best[0][1])}"
    )  # fmt: skip
    print(f"chosen: {chosen}")


def _share(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


if __name__ == "__main__":
    main()
