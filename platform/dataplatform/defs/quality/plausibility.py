"""Plausibility of one day's records against what history taught (lib/plausibility.py)."""

import datetime as dt
import json

import dagster as dg
import polars as pl

from dataplatform.defs.common.keys import EVENT_PLAUSIBILITY
from dataplatform.defs.quality.assets import PROFILE_HISTORY_DAYS, day_and_history, tier2_asset
from dataplatform.defs.resources import LakehouseResource
from dataplatform.lib import plausibility, tables, warehouse
from dataplatform.lib.quality import markdown_table


def judge_against_history(
    lakehouse: LakehouseResource, current: pl.DataFrame, history: pl.DataFrame
) -> tuple[pl.DataFrame, plausibility.PlausibilityBands]:
    """The suspect records of `current` (event_id, reasons) against bands learned from `history`."""
    with lakehouse.connect(read_only=True) as con:
        batches = pl.concat([current["batch_id"], history["batch_id"]]).unique()
        arrivals = warehouse.stream_arrivals(con, batches.to_list())
    current, history = plausibility.with_arrival(current, arrivals), plausibility.with_arrival(history, arrivals)
    bands = plausibility.learn_bands(history)
    return plausibility.judge(current, history, bands), bands


@tier2_asset(
    EVENT_PLAUSIBILITY,
    description=(
        "Records that pass the contract but not what history says about their entity: a price far from the "
        "product's typical price (price:implausible), a user with more events in a day than history's ceiling "
        "(user_id:implausible_rate), a purchase with no earlier view or cart of the product "
        "(purchase:no_prior_interaction), a record repeating an earlier one a whole number of days later under "
        "another id (record:replayed), a streamed record whose timestamp is far from when its file landed "
        "(timestamp:far_from_arrival). Bands are learned from the previous "
        f"{PROFILE_HISTORY_DAYS} days, suspect days left out. Suspect records stay in `events` and are listed in "
        "table `suspect_events` (view `suspect_reasons` by day and reason); they count towards the day's "
        "corruption share that `ml/training_set` keeps out of training."
    ),
    kinds={"polars", "duckdb"},
    check_name="records_plausible",
    check_description="No record of the day is implausible (WARN, with counts per reason).",
)
def event_plausibility(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key)
    events = day_and_history(lakehouse, day)
    if skipped := events.insufficient("records_plausible"):
        return skipped
    judged, bands = judge_against_history(lakehouse, events.current, events.history)
    _record_suspects(lakehouse, day, events.current, judged, bands.version)
    return _plausibility_result(judged, judged.height / events.current.height, bands, events.left_out)


def _record_suspects(
    lakehouse: LakehouseResource, day: dt.date, current: pl.DataFrame, judged: pl.DataFrame, bands_version: str
) -> None:
    """The day's suspect records (table suspect_events, replacing the day's) and its share (daily_plausibility)."""
    now = dt.datetime.now(dt.UTC)
    rows = judged.join(current.select("event_id", "batch_id", "source_file"), on="event_id", how="left").select(
        "event_id", pl.lit(day).alias("event_date"), "reasons", "batch_id", "source_file",
        pl.lit(bands_version).alias("bands_version"), pl.lit(now).alias("judged_at"),
    )  # fmt: skip
    daily = pl.DataFrame([{"event_date": day, "events": current.height, "suspect": judged.height,
                           "suspect_share": judged.height / current.height, "bands_version": bands_version,
                           "judged_at": now}])  # fmt: skip
    with lakehouse.connect() as con:
        warehouse.replace_day(con, tables.SUSPECT_EVENTS, day, rows)
        warehouse.replace_rows(con, tables.DAILY_PLAUSIBILITY, daily)


def _plausibility_result(
    judged: pl.DataFrame, share: float, bands: plausibility.PlausibilityBands, left_out: dict[dt.date, str]
) -> dg.MaterializeResult:
    reasons = judged.explode("reasons").group_by("reasons").len().sort("len", descending=True)
    reasons = reasons.rename({"reasons": "reason", "len": "records"})
    metadata = {
        "suspect_records": judged.height,
        "suspect_percent": dg.MetadataValue.float(round(100 * share, 2)),
        "reasons": dg.MetadataValue.md(markdown_table(reasons)),
        "bands": dg.MetadataValue.json(json.loads(json.dumps(bands.describe()))),
        "history_left_out": ", ".join(str(d) for d in sorted(left_out)) or "none",
    }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="records_plausible",
                passed=judged.height == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={k: metadata[k] for k in ("suspect_records", "suspect_percent", "reasons")},
            )
        ],
    )
