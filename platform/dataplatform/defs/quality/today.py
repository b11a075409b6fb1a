"""Today, live: the day that is still filling, refreshed after the micro-batches that land (lib/today.py)."""

import datetime as dt

import dagster as dg
import polars as pl

from dataplatform.defs.common.conventions import EVENTS_TABLE, OWNERS
from dataplatform.defs.common.keys import LANDING_EVENTS, TODAY
from dataplatform.defs.quality.assets import clean_history_days
from dataplatform.defs.quality.plausibility import judge_against_history
from dataplatform.defs.resources import LakehouseResource
from dataplatform.lib import lakeread
from dataplatform.lib.quality import markdown_table
from dataplatform.lib.today import TodaySoFar, today_so_far


def today_metadata(view: TodaySoFar) -> dict[str, dg.MetadataValue]:
    """The summary first, then the figures (numbers are plotted across refreshes), then the tables."""
    volumes = view.volumes.select(
        "measure", pl.col("value").alias("so_far"), pl.col("low").round(0), pl.col("high").round(0), "status"
    )
    return {
        "summary": dg.MetadataValue.text(view.summary),
        "as_of": dg.MetadataValue.text(f"{view.as_of:%Y-%m-%d %H:%M} UTC"),
        "events_so_far": dg.MetadataValue.int(view.events),
        "quarantined_so_far": dg.MetadataValue.int(view.quarantined),
        "quarantine_rate_percent": dg.MetadataValue.float(round(100 * view.quarantine_rate, 2)),
        "suspect_so_far": dg.MetadataValue.int(view.suspect),
        "quarantine_reasons": dg.MetadataValue.md(markdown_table(view.quarantine_reasons)),
        "suspect_reasons": dg.MetadataValue.md(markdown_table(view.suspect_reasons)),
        "volume_against_band_for_this_time_of_day": dg.MetadataValue.md(markdown_table(volumes)),
        "dagster/row_count": dg.MetadataValue.int(view.events),
        "dagster/table_name": dg.MetadataValue.text(EVENTS_TABLE),
    }


# Eager without its wait for in-progress dependencies: micro-batches land every few seconds, so
# ingestion is nearly always running, and eager() left today's page stale for 12 minutes while a
# newcomer watched (the landed data is committed; a batch still running is the next refresh's).
AFTER_EACH_LANDING = (
    (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.in_progress()
).with_label("after micro-batches land, even while the next one runs")


@dg.asset(
    key=TODAY,
    deps=[LANDING_EVENTS],
    group_name="warehouse",
    description=(
        "Today so far, refreshed after micro-batches land (within the automation sensor's minute): events, "
        "records quarantined and records suspect so far with their reasons, and each event type's volume "
        "against a band learned from the previous days cut at the same time of day. Suspect records are "
        "judged here against the same bands as quality/event_plausibility, which records them once the day "
        "is over. It only reads (the lake, and the warehouse read-only): it never waits for the writer slot."
    ),
    kinds={"polars"},
    owners=OWNERS,
    automation_condition=AFTER_EACH_LANDING,
)
def today(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    now = dt.datetime.now(dt.UTC)
    lake = lakehouse.lake()
    history_days, _ = clean_history_days(lakehouse, now.date())
    current, history = lakeread.events_for_days(lake, [now.date()]), lakeread.events_for_days(lake, history_days)
    suspect = pl.Series("reasons", [], dtype=pl.List(pl.String))
    if current.height and history.height:
        suspect = judge_against_history(lakehouse, current, history)[0]["reasons"]
    view = today_so_far(
        now=now,
        events=current,
        quarantine_reasons=lakeread.quarantine_for_days(lake, [now.date()])["reasons"],
        suspect_reasons=suspect,
        history=history,
        history_days=history_days,
    )
    return dg.MaterializeResult(metadata=today_metadata(view))
