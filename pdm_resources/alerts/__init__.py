"""Alert sinks: record each alert once per dedup key, and POST new ones to a webhook.

:class:`AlertSink` is the interface assets and sensors use; :class:`LocalAlertSink` (a DuckDB
table with a spool, ``PDM_ENV=local``) and :class:`S3AlertSink` (one object per alert,
``PDM_ENV=prod``) implement it. What an alert is lives in :mod:`pdm_core.alerts`.
"""

from pdm_resources.alerts.base import AlertOutcome, AlertSink
from pdm_resources.alerts.local import WEBHOOK_ENV_VAR, LocalAlertSink
from pdm_resources.alerts.rows import ALERT_COLUMNS
from pdm_resources.alerts.s3 import S3AlertSink
from pdm_resources.alerts.spool import SPOOL_FILE_NAME

__all__ = [
    "ALERT_COLUMNS",
    "SPOOL_FILE_NAME",
    "WEBHOOK_ENV_VAR",
    "AlertOutcome",
    "AlertSink",
    "LocalAlertSink",
    "S3AlertSink",
]
