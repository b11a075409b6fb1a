"""The quarantine, one day at a time: what was refused, why, where to find it and how to replay it."""

import datetime as dt

import dagster as dg
import polars as pl

from dataplatform.defs.common.conventions import OWNERS, daily_partitions
from dataplatform.defs.common.keys import HISTORY_EVENTS, LANDING_EVENTS, QUARANTINE
from dataplatform.defs.resources import LakehouseResource
from dataplatform.lib import lakeread, tables
from dataplatform.lib.quality import failure_table, markdown_table, percent_shares, quarantine_failures
from dataplatform.lib.replay import replay_command


@dg.asset(
    key=QUARANTINE,
    deps=[HISTORY_EVENTS, LANDING_EVENTS],
    partitions_def=daily_partitions,
    group_name="warehouse",
    description=(
        "One day of the table `quarantine`: the records the contract refused (or an operator retracted), "
        "counted on their partition (history) or arrival day (stream). Per reason code a count, plotted "
        "across days on the Plots tab; the top reasons with example records (source file # row) and the "
        "command that replays them after a contract fix (lib/replay.py). Read from the lake, never "
        "waiting for the warehouse writer."
    ),
    kinds={"polars", "parquet"},
    owners=OWNERS,
    metadata={"dagster/table_name": tables.QUARANTINE.qualified_name},
)
def quarantine(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key)
    lake = lakehouse.lake()
    refused = lakeread.quarantine_for_days(lake, [day])
    keys = lake.event_keys(day)
    valid = int(lake.scan(keys).select(pl.len()).collect().item()) if keys else 0
    reasons = failure_table(quarantine_failures(refused), rows=refused.height + valid)
    top = reasons["reason"][0] if reasons.height else None
    rate = refused.height / (refused.height + valid) if refused.height + valid else 0.0
    summary = f"{refused.height:,} records quarantined on {day} ({rate:.2%} of {refused.height + valid:,})" + (
        f"; top reason {top} ({reasons['records'][0]:,})" if top else ""
    )
    replay = f"```\n{replay_command(day, top)}\n```\n\nDrop `--dry-run` to land them again." if top else "_nothing_"
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.text(summary),
            "quarantined": dg.MetadataValue.int(refused.height),
            "quarantine_rate_percent": dg.MetadataValue.float(round(100 * rate, 2)),
            **{
                f"reason {r}": dg.MetadataValue.int(n)
                for r, n in zip(reasons["reason"], reasons["records"], strict=True)
            },
            "top_reasons": dg.MetadataValue.md(markdown_table(percent_shares(reasons))),
            "replay": dg.MetadataValue.md(replay),
            "dagster/row_count": dg.MetadataValue.int(refused.height),
        }
    )
