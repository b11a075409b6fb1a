"""Alerts: always logged, and posted as JSON to a webhook when one is configured.

Delivery never raises: an alert that cannot be delivered is logged as such, so a broken
webhook cannot fail the run or the sensor that raised it. The webhook URL can carry a
token, so it is never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

LOG = logging.getLogger("dataplatform.alerts")


@dataclass(frozen=True)
class Alert:
    kind: str  # run_failure | check_failure | drift_decision
    title: str
    details: dict[str, Any] = field(default_factory=dict)
    severity: str = "error"
    at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def payload(self) -> bytes:
        # Slack-compatible `text` plus the structured fields for anything else.
        return json.dumps({"text": f"[{self.severity}] {self.title}", **asdict(self)}, default=str).encode()


def deliver(alert: Alert, url: str | None, *, timeout_seconds: float = 5.0, log: Any = LOG) -> bool:
    """Log the alert; POST it when `url` is set. Returns whether it was delivered to the webhook."""
    log.warning(f"ALERT {alert.kind}: {alert.title} {json.dumps(alert.details, default=str)[:2000]}")
    if not url:
        return False
    if not url.startswith(("https://", "http://")):
        log.error("alert webhook URL must be http(s); alert not posted")
        return False
    request = urllib.request.Request(
        url, data=alert.payload(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            ok: bool = 200 <= response.status < 300
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        log.error(f"alert webhook delivery failed: {type(exc).__name__}")
        return False
    if not ok:
        log.error("alert webhook answered with a non-2xx status")
    return ok
