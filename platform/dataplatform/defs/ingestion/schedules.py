"""Daily batch ingestion of yesterday's historical dump."""

import dagster as dg

from dataplatform.defs.common.conventions import daily_partitions
from dataplatform.defs.common.schedules import daily_partition_schedule
from dataplatform.defs.ingestion.assets import history_events

history_daily_job = dg.define_asset_job(
    "history_daily_job",
    selection=[history_events],
    partitions_def=daily_partitions,
    description="Ingest one day of historical dumps (backfill ranges from the asset's page).",
)


history_daily_schedule = daily_partition_schedule(
    "history_daily_schedule",
    history_daily_job,
    "30 0 * * *",
    "00:30 UTC: ingest yesterday's dump. Turn off in the UI (Automation) or set it STOPPED in code.",
)
