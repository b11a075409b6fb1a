"""The day's health summary, once the day's quality and monitoring have run."""

import dagster as dg

from dataplatform.defs.common.conventions import daily_partitions
from dataplatform.defs.common.schedules import daily_partition_schedule
from dataplatform.defs.monitoring.health import daily_health

daily_health_job = dg.define_asset_job(
    "daily_health_job",
    selection=[daily_health],
    partitions_def=daily_partitions,
    description="Summarize every check that judged a day (monitoring/daily_health).",
)

daily_health_schedule = daily_partition_schedule(
    "daily_health_schedule",
    daily_health_job,
    "0 3 * * *",
    "03:00 UTC, after quality (01:00) and monitoring (02:00, 02:30): did yesterday pass?",
)
