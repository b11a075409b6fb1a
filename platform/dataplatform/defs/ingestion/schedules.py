"""Daily batch ingestion of yesterday's historical dump."""

import datetime as dt

import dagster as dg

from dataplatform.defs.ingestion.assets import daily_partitions, history_events

history_daily_job = dg.define_asset_job(
    "history_daily_job",
    selection=[history_events],
    partitions_def=daily_partitions,
    description="Ingest one day of historical dumps (backfill ranges from the asset's page).",
)


def yesterday(scheduled: dt.datetime) -> str:
    return (scheduled.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


@dg.schedule(
    cron_schedule="30 0 * * *",
    job=history_daily_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:30 UTC: ingest yesterday's dump. Turn off in the UI (Automation) or set it STOPPED in code.",
)
def history_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = yesterday(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"history-{day}", partition_key=day)
