"""Alert sensors: failed runs, and failed ERROR-severity checks in runs that otherwise succeeded."""

import dagster as dg

from dataplatform.defs.common.keys import DAILY_HEALTH
from dataplatform.defs.resources import AlertWebhookResource
from dataplatform.lib.alerts import Alert

HEALTH_PAGE = f"/assets/{DAILY_HEALTH.to_user_string()}?view=partitions&partition="


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, str]]:
    failed = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if not evaluation.passed:
            failed.append(
                {
                    "check": f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}",
                    "severity": evaluation.severity.value,
                    "blocking": str(evaluation.blocking),
                    "partition": evaluation.partition or "",
                    # The day's health page lists every check of that day, this one among them.
                    "day_health": f"{HEALTH_PAGE}{evaluation.partition}" if evaluation.partition else "",
                }
            )
    return failed


@dg.run_failure_sensor(
    name="run_failure_alert",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (log + webhook) on every failed run, with the checks that failed in it.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertWebhookResource) -> None:
    run = context.dagster_run
    alerts.send(
        Alert(
            kind="run_failure",
            title=f"run {run.run_id[:8]} of {run.job_name} failed",
            details={
                "run_id": run.run_id,
                "job": run.job_name,
                "error": (context.failure_event.message or "")[:1000],
                "failed_checks": _failed_checks(context.instance, run.run_id),
                "tags": {k: v for k, v in run.tags.items() if not k.startswith("dagster/")},
            },
        ),
        log=context.log,
    )


@dg.run_status_sensor(
    name="check_failure_alert",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts on checks of ERROR severity that failed in a run that otherwise succeeded.",
)
def check_failure_alert(context: dg.RunStatusSensorContext, alerts: AlertWebhookResource) -> None:
    failed = [c for c in _failed_checks(context.instance, context.dagster_run.run_id) if c["severity"] == "ERROR"]
    if failed:
        run = context.dagster_run
        alerts.send(
            Alert(
                kind="check_failure",
                title=f"{len(failed)} ERROR check(s) failed in run {run.run_id[:8]} of {run.job_name}",
                details={"run_id": run.run_id, "job": run.job_name, "failed_checks": failed},
            ),
            log=context.log,
        )
