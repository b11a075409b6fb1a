"""Nightly certification and statistics of yesterday's events."""

import dagster as dg

from dataplatform.defs.common.conventions import daily_partitions
from dataplatform.defs.common.schedules import daily_partition_schedule
from dataplatform.defs.quality.assets import event_distributions, warehouse_events
from dataplatform.defs.quality.plausibility import event_plausibility
from dataplatform.defs.quality.quarantine import quarantine

nightly_quality_job = dg.define_asset_job(
    "nightly_quality_job",
    selection=[warehouse_events, quarantine, event_distributions, event_plausibility],
    partitions_def=daily_partitions,
    description="Certify a day of events (tier-1 checks), count its quarantine by reason, judge its records' "
    "plausibility and compare its distributions (tier 2).",
)


nightly_quality_schedule = daily_partition_schedule(
    "nightly_quality_schedule",
    nightly_quality_job,
    "0 1 * * *",
    "01:00 UTC, after the history ingestion: quality of yesterday.",
)
