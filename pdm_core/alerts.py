"""Alerts: one value type for everything the platform warns people about.

An :class:`Alert` is raised for model drift, a failed asset check, a failed Dagster run or a
machine whose predicted failure risk is high. Each alert names the event it comes from in its
``dedup_key``, so that the same event never alerts twice however often it is seen (a sensor
that re-reads an event, a retried run). Recording and delivering alerts is the job of
``pdm_resources.alerts.AlertSink``; this module is pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

AlertKind = Literal["drift", "check_failed", "run_failed", "high_risk", "anomaly", "silent_machine"]
AlertSeverity = Literal["info", "warning", "critical"]

ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)
ALERT_SEVERITIES: tuple[str, ...] = get_args(AlertSeverity)
ALERT_SOURCE = "pdm-platform"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """Formats an aware datetime as ISO-8601 in UTC with a ``Z`` suffix.

    Args:
        moment: A timezone-aware datetime.

    Returns:
        For example ``"2026-01-31T02:00:00.123456Z"``.
    """
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    """One alert, identified by the event it comes from.

    Attributes:
        kind: What happened: ``drift``, ``check_failed``, ``run_failed`` or ``high_risk``.
        severity: ``info``, ``warning`` or ``critical``.
        title: One line for people (a chat message's first line, an e-mail subject).
        details: JSON-serialisable facts about the event (ids, values, thresholds).
        dedup_key: Names the event, so that it alerts once: a run id, an asset check
            evaluation's storage id, a drift report's data version, or machine, risk level and
            day of a high-risk prediction (see the ``*_dedup_key`` helpers).
        created_at: When the alert was raised (timezone-aware, normalised to UTC).
    """

    kind: AlertKind
    severity: AlertSeverity
    title: str
    details: dict[str, Any] = field(hash=False)
    dedup_key: str
    created_at: datetime = field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        """Validates the fields and normalises ``created_at`` to UTC.

        Raises:
            ValueError: On an unknown kind or severity, an empty title or dedup key, a naive
                ``created_at``, or details that are not JSON-serialisable.
        """
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}; expected one of {ALERT_KINDS}")
        if self.severity not in ALERT_SEVERITIES:
            raise ValueError(
                f"unknown alert severity {self.severity!r}; expected one of {ALERT_SEVERITIES}"
            )
        if not self.title.strip():
            raise ValueError("an alert needs a title")
        if not self.dedup_key.strip():
            raise ValueError("an alert needs a dedup_key")
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("created_at must be timezone-aware")
        try:
            json.dumps(self.details)
        except Exception as error:  # TypeError, ValueError, or a refusing object's own error
            raise ValueError(f"alert details are not JSON-serialisable: {error}") from error
        object.__setattr__(self, "details", dict(self.details))
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))

    def to_json(self) -> dict[str, Any]:
        """Returns the webhook payload.

        Returns:
            ``{"kind", "severity", "title", "details", "dedup_key", "created_at", "source"}``
            with ``created_at`` as ISO-8601 UTC (``...Z``) and ``source`` ``"pdm-platform"``.
        """
        return {
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "details": self.details,
            "dedup_key": self.dedup_key,
            "created_at": iso_utc(self.created_at),
            "source": ALERT_SOURCE,
        }


def drift_dedup_key(report_data_version: str) -> str:
    """Dedup key of a drift alert: one alert per drift report (its data version)."""
    return f"drift-{report_data_version}"


def high_risk_dedup_key(machine_id: str | int, level: str, day: str, imminent: bool = False) -> str:
    """Dedup key of a high-risk alert: one per machine, risk level, urgency and day.

    A machine that stays HIGH all day raises one alert; a rise to CRITICAL raises another,
    so does a predicted failure turning imminent (:class:`RiskAlertRule`), and so does the
    next day at the same level (someone should look again).
    """
    return f"high-risk-{machine_id}-{level}-{day}" + ("-imminent" if imminent else "")


def check_failed_dedup_key(storage_id: int, run_id: str | None = None) -> str:
    """Dedup key of a failed asset check evaluation.

    Args:
        storage_id: The evaluation event's storage id in the Dagster event log.
        run_id: Needed only where storage ids are not unique across runs (Dagster's default
            run-sharded SQLite event log keeps one id sequence per run).

    Returns:
        ``check-<storage_id>``, or ``check-<run_id>-<storage_id>`` when ``run_id`` is given.
    """
    return f"check-{run_id}-{storage_id}" if run_id else f"check-{storage_id}"


RISK_ALERT_LEVELS: tuple[str, ...] = ("HIGH", "CRITICAL")
ALERT_RUL_SHARE = 5 / 6
"""Share of the label horizon within which the predicted remaining life must fall for a
HIGH/CRITICAL reading to raise an alert (:class:`RiskAlertRule`).

Chosen on a validation feed (another seed than the benchmark's, ``python
benchmarks/select_alert_rule.py``): the largest warned share whose precision stays >= 0.8 and
median lead >= half the horizon. Without the gate a machine that turns HIGH well before the
horizon raises its alert too early: one alert, judged false, and none inside the horizon."""

IMMINENT_RUL_SHARE = 1 / 2
"""Share of the label horizon below which a predicted failure counts as imminent: an alert
already raised for the machine's level that day is raised again, once, as imminent
(:meth:`RiskAlertRule.imminent`). Chosen with :data:`ALERT_RUL_SHARE` on the same validation
feed. A machine whose risk turned HIGH early would otherwise stay silent for the rest of the
day, however close its predicted failure comes."""


@dataclass(frozen=True)
class RiskAlertRule:
    """When a scored reading raises a high-risk alert (live scoring and fleet state share it).

    A reading raises one when its risk level is HIGH or CRITICAL and its predicted remaining
    life is at most ``max_rul`` readings. The probability says *whether* a failure is likely
    within the horizon; the RUL gate says it is near enough to act on now. A reading without a
    RUL (a model with no regressor) is judged on its level alone, as is every reading when
    ``max_rul`` is None.

    An alerting reading whose RUL is at most ``imminent_rul`` is *imminent*: it escalates,
    raising one more alert for its machine, level and day (:func:`high_risk_dedup_key`).
    """

    max_rul: float | None = None
    imminent_rul: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_rul", "imminent_rul"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")

    @classmethod
    def for_horizon(
        cls,
        horizon: float | None,
        share: float = ALERT_RUL_SHARE,
        imminent_share: float | None = IMMINENT_RUL_SHARE,
    ) -> RiskAlertRule:
        """The rule for a model whose label horizon is ``horizon`` readings.

        ``horizon`` None: no gate and no escalation; ``imminent_share`` None: no escalation.
        """
        for name, value in (("RUL", share), ("imminent RUL", imminent_share)):
            if value is not None and not 0 < value <= 1:
                raise ValueError(
                    f"the {name} share of the horizon must be in (0, 1], got {value!r}"
                )
        if not horizon:
            return cls()
        imminent = None if imminent_share is None else imminent_share * float(horizon)
        return cls(share * float(horizon), imminent)

    def imminent(self, rul: float | None) -> bool:
        """Whether an alerting reading's predicted RUL makes its failure imminent."""
        return self.imminent_rul is not None and rul is not None and rul <= self.imminent_rul

    def mask(self, levels: Any, rul: Any) -> Any:
        """Vectorised :meth:`raises` over arrays of levels and RULs (numpy boolean array)."""
        import numpy as np

        high = np.isin(np.asarray(levels, dtype=object), RISK_ALERT_LEVELS)
        if self.max_rul is None:
            return high
        rul = np.asarray(rul, dtype=np.float64)
        return high & ~(rul > self.max_rul)  # NaN RUL: no gate

    def raises(self, level: str, rul: float | None) -> bool:
        """Whether one reading with this risk level and predicted RUL raises an alert."""
        if level not in RISK_ALERT_LEVELS:
            return False
        return self.max_rul is None or rul is None or not rul > self.max_rul  # NaN: no gate


def _day(row: dict[str, Any], fallback: str) -> str:
    stamp = row.get("timestamp")
    if stamp is None or stamp != stamp:  # None or NaT/NaN
        return fallback
    return str(stamp)[:10]


def _stamp(value: Any) -> str | None:
    return None if value is None or value != value else str(value)


def _number(value: Any, digits: int) -> float | None:
    return None if value is None or value != value else round(float(value), digits)


def risk_alerts(
    rows: list[dict[str, Any]], today: str, rule: RiskAlertRule | None = None
) -> list[Alert]:
    """High-risk and anomaly alerts for scored readings, the first reading of each event.

    A reading that ``rule`` says raises a high-risk alert (HIGH or CRITICAL risk, RUL within
    the rule's gate) raises one per machine, level and day (the reading's day; ``today`` where
    a reading has no timestamp) and one more when its failure turns imminent; an anomaly one
    per machine and day. Each alert names the
    reading that triggered it: machine, cycle, timestamp, probability, RUL and model version.

    Args:
        rows: Scored readings (``machine_id``, ``cycle``, ``timestamp``, ``risk_level``,
            ``failure_probability``, ``rul``, ``anomaly_score``, ``anomaly_alert``,
            ``model_version``), oldest first.
        today: ISO date for readings without a timestamp.
        rule: When a reading raises a high-risk alert (default: its level alone).
    """
    rule = rule or RiskAlertRule()
    found: dict[str, Alert] = {}
    for row in rows:
        machine, level, day = str(row["machine_id"]), str(row["risk_level"]), _day(row, today)
        details = {
            "machine_id": machine,
            "risk_level": level,
            "failure_probability": _number(row["failure_probability"], 4),
            "rul": _number(row.get("rul"), 1),
            "rul_interval": [_number(row.get("rul_lower"), 1), _number(row.get("rul_upper"), 1)],
            "anomaly_score": _number(row.get("anomaly_score"), 4),
            "cycle": int(row["cycle"]),
            "timestamp": None
            if day == today and not row.get("timestamp")
            else str(row["timestamp"]),
            "model_version": str(row["model_version"]),
        }
        rul = _number(row.get("rul"), 9)
        if rule.raises(level, rul):
            imminent = rule.imminent(rul)
            key = high_risk_dedup_key(machine, level, day, imminent)
            soon = f", failure expected within {rul:.0f} readings" if imminent else ""
            found.setdefault(key, Alert(
                kind="high_risk",
                severity="critical" if level == "CRITICAL" else "warning",
                title=f"Machine {machine}: {level} failure risk "
                f"({float(row['failure_probability']):.0%}){soon}",
                details={**details, "imminent": imminent}, dedup_key=key,
            ))  # fmt: skip
        if bool(row.get("anomaly_alert")):
            key = f"anomaly-{machine}-{day}"
            found.setdefault(key, Alert(
                kind="anomaly", severity="warning",
                title=f"Machine {machine}: anomalous readings (score {details['anomaly_score']})",
                details=details, dedup_key=key,
            ))  # fmt: skip
    return list(found.values())


def silent_machine_alert(machine_id: str, last_reading: str, age: str) -> Alert:
    """One alert per silence: the key names the machine's last reading before it went quiet."""
    return Alert(
        kind="silent_machine",
        severity="warning",
        title=f"Machine {machine_id}: no readings for {age}",
        details={"machine_id": machine_id, "last_reading": last_reading, "silent_for": age},
        dedup_key=f"silent-{machine_id}-{last_reading}",
    )
