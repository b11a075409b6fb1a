"""Alerts reach a real webhook (an HTTP server on 127.0.0.1) and the log; schedules pick yesterday."""

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from dataplatform.defs.ingestion.schedules import history_daily_schedule
from dataplatform.defs.ml.schedules import labelled_performance_schedule, nightly_ml_schedule
from dataplatform.defs.monitoring.alerts import check_failure_alert, run_failure_alert
from dataplatform.defs.quality.schedules import nightly_quality_schedule
from dataplatform.defs.resources import AlertWebhookResource
from dataplatform.lib.alerts import Alert, deliver


class Webhook:
    def __init__(self) -> None:
        self.received: list[dict] = []
        self.status = 200
        received, webhook = self.received, self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(webhook.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def test_alert_is_posted_and_logged_without_the_url(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dataplatform.alerts"):
        assert deliver(Alert("drift_decision", "drift on price", {"feature": "price"}), webhook.url)
    assert webhook.received[0]["kind"] == "drift_decision" and webhook.received[0]["details"] == {"feature": "price"}
    assert "drift on price" in caplog.text and "s3cret" not in caplog.text


def test_undeliverable_alerts_never_raise(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    webhook.status = 500
    assert not deliver(Alert("run_failure", "x"), webhook.url)
    assert not deliver(Alert("run_failure", "x"), "http://127.0.0.1:9/unreachable", timeout_seconds=1)
    assert not deliver(Alert("run_failure", "x"), "file:///etc/passwd")
    assert not deliver(Alert("run_failure", "x"), None)  # logged only


@dg.asset
def always_fails() -> None:
    raise RuntimeError("boom")


@dg.asset(check_specs=[dg.AssetCheckSpec("is_sane", asset="half_bad")])
def half_bad() -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name="is_sane", passed=False)])


def test_run_failure_sensor_posts_the_failed_run(webhook: Webhook) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize([always_fails], instance=instance, raise_on_error=False)
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert", dagster_event=failure, dagster_instance=instance,
            dagster_run=result.dagster_run, resources={"alerts": AlertWebhookResource(url=webhook.url)},
        ).for_run_failure()  # fmt: skip
        run_failure_alert(context)
    assert [a["kind"] for a in webhook.received] == ["run_failure"]
    assert webhook.received[0]["details"]["run_id"] == result.run_id


def test_failed_error_check_in_a_successful_run_is_alerted(webhook: Webhook) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize([half_bad], instance=instance)
        success = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
        context = dg.build_run_status_sensor_context(
            sensor_name="check_failure_alert", dagster_event=success, dagster_instance=instance,
            dagster_run=result.dagster_run, resources={"alerts": AlertWebhookResource(url=webhook.url)},
        )  # fmt: skip
        check_failure_alert(context)
    assert webhook.received[0]["details"]["failed_checks"][0]["check"] == "half_bad:is_sane"


@pytest.mark.parametrize(
    ("schedule", "day"),
    [
        (history_daily_schedule, "2026-03-09"),
        (nightly_quality_schedule, "2026-03-09"),
        (nightly_ml_schedule, "2026-03-09"),
        (labelled_performance_schedule, "2026-03-08"),  # labels of the day before yesterday are mature
    ],
)
def test_daily_schedules_request_their_day_once(schedule: dg.ScheduleDefinition, day: str) -> None:
    at = dt.datetime(2026, 3, 10, 1, 0, tzinfo=dt.UTC)
    request = schedule(dg.build_schedule_context(scheduled_execution_time=at))
    assert request.partition_key == day and request.run_key == f"{schedule.job_name}-{day}"
