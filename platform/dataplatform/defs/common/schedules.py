"""One way to schedule a daily-partitioned job: a day a fixed number of days back, once per day."""

import datetime as dt
from typing import Any

import dagster as dg


def day_before(scheduled: dt.datetime, days_back: int = 1) -> str:
    return (scheduled.astimezone(dt.UTC).date() - dt.timedelta(days=days_back)).isoformat()


def daily_partition_schedule(
    name: str, job: Any, cron: str, description: str, *, days_back: int = 1
) -> dg.ScheduleDefinition:
    """A RUNNING schedule that runs `job` for the day `days_back` days before the tick (run_key: job + day)."""

    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = day_before(context.scheduled_execution_time, days_back)
        return dg.RunRequest(run_key=f"{job.name}-{day}", partition_key=day)

    return _schedule
