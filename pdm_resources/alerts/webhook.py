"""Delivering an alert to a webhook: one JSON POST, retried by urllib3's retry policy.

Connection errors, timeouts and 5xx answers are retried (with exponential backoff); a 4xx
answer is the receiver refusing the alert and is not. Delivery never raises: the outcome is
recorded with the alert.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pdm_core.alerts import Alert

logger = logging.getLogger(__name__)

USER_AGENT = "pdm-platform-alerts"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one delivery.

    Attributes:
        error: None when a 2xx answer came back, else the last error as text.
        transient: The error is one that was retried (the receiver may be down): further
            alerts in the same call are not sent, so one call's time stays bounded.
    """

    error: str | None = None
    transient: bool = False


class Webhook:
    """POSTs alerts to one ``http(s)://`` URL."""

    def __init__(self, url: str, timeout_seconds: float, retries: int, backoff_seconds: float):
        self.url = url
        self.timeout_seconds = timeout_seconds
        policy = Retry(
            total=max(retries, 0),
            backoff_factor=backoff_seconds,
            status_forcelist=tuple(range(500, 600)),
            allowed_methods=frozenset({"POST"}),
            raise_on_status=False,  # the last 5xx answer comes back as a response
            respect_retry_after_header=False,
        )
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=policy)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def post(self, alert: Alert) -> Delivery:
        """Delivers one alert; never raises."""
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in ("http", "https"):
            return Delivery(f"unsupported webhook URL scheme {scheme!r} (expected http or https)")
        try:
            body = json.dumps(alert.to_json(), default=str).encode("utf-8")
            answer = self.session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
                timeout=self.timeout_seconds,
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            outcome = Delivery(f"{type(error).__name__}: {error}", transient=True)
        except Exception as error:  # a malformed URL, an unexpected answer: not retried
            outcome = Delivery(f"{type(error).__name__}: {error}")
        else:
            if answer.ok:
                return Delivery()
            text = f"HTTP {answer.status_code} {answer.reason}"
            outcome = Delivery(text, transient=answer.status_code >= 500)
        logger.warning("webhook delivery of alert %s failed: %s", alert.dedup_key, outcome.error)
        return outcome
