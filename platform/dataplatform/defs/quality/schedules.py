"""Nightly certification and statistics of yesterday's events."""

import dagster as dg

from dataplatform.defs.ingestion.assets import daily_partitions
from dataplatform.defs.ingestion.schedules import yesterday
from dataplatform.defs.quality.assets import event_distributions, warehouse_events

nightly_quality_job = dg.define_asset_job(
    "nightly_quality_job",
    selection=[warehouse_events, event_distributions],
    partitions_def=daily_partitions,
    description="Certify a day of events (tier-1 checks) and compare its distributions (tier 2).",
)


@dg.schedule(
    cron_schedule="0 1 * * *",
    job=nightly_quality_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="01:00 UTC, after the history ingestion: quality of yesterday.",
)
def nightly_quality_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = yesterday(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"quality-{day}", partition_key=day)
