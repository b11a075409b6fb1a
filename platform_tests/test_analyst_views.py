"""The analyst's pages: today so far, the quarantine by day and reason, and a day's health."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from dataplatform.defs.ingestion.assets import history_events, landing_events
from dataplatform.defs.monitoring.health import daily_health
from dataplatform.defs.quality.assets import warehouse_events
from dataplatform.defs.quality.plausibility import event_plausibility
from dataplatform.defs.quality.quarantine import quarantine
from dataplatform.defs.quality.today import today
from dataplatform.lib import health, warehouse
from dataplatform.lib.demo import DemoConfig, encode_events, generate_events, write_history
from dataplatform.lib.quality import BandStatus
from dataplatform.lib.today import counts_until, reason_counts, today_so_far
from factories import local_resources, write_landing

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DAYS = 9


def _events(days: list[dt.date], per_day: int, hours: float = 24.0) -> pl.DataFrame:
    """`per_day` view events a day, evenly spread over its first `hours` hours (UTC)."""
    stamps = [
        dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(hours=hours * i / per_day)
        for day in days
        for i in range(per_day)
    ]
    frame = pl.DataFrame({"timestamp": stamps, "event_type": ["view"] * len(stamps)})
    return frame.with_columns(pl.col("timestamp").dt.date().alias("event_date"))


def test_past_days_are_cut_at_the_time_of_day_and_days_that_were_never_loaded_are_left_out() -> None:
    days = [dt.date(2026, 5, d) for d in range(1, 5)]
    late = _events(days[2:3], per_day=2).with_columns(pl.col("timestamp") + dt.timedelta(hours=20))
    events = pl.concat([_events(days[:2], per_day=24), late])  # one event an hour; day 3 only after 20:00
    counts = counts_until(events, days, dt.time(6, 0))
    assert counts["event_date"].to_list() == days[:3]  # day 4 holds no event at all: not loaded, not a zero
    assert counts["events"].to_list() == [6, 6, 0]
    assert counts["events_view"].to_list() == [6, 6, 0]
    assert counts["events_purchase"].to_list() == [0, 0, 0]


def test_days_before_the_history_began_do_not_widen_todays_band() -> None:
    loaded = [dt.date(2026, 5, 15) + dt.timedelta(days=i) for i in range(14)]
    searched = [dt.date(2026, 5, 1) + dt.timedelta(days=i) for i in range(28)]  # 14 of them before the history
    now = dt.datetime(2026, 5, 29, 12, 0, tzinfo=dt.UTC)
    empty = pl.Series("reasons", [], dtype=pl.List(pl.String))
    view = today_so_far(
        now=now, events=_events([now.date()], per_day=30, hours=3), quarantine_reasons=empty,
        suspect_reasons=empty, history=_events(loaded, per_day=240), history_days=searched,
    )  # fmt: skip
    events = view.volumes.filter(pl.col("measure") == "events").row(0, named=True)
    assert events["status"] == BandStatus.LOW.value and events["low"] > 0


def test_a_partial_day_is_judged_against_the_same_hours_not_against_whole_days() -> None:
    history_days = [dt.date(2026, 5, 1) + dt.timedelta(days=i) for i in range(14)]
    history = _events(history_days, per_day=240)
    now = dt.datetime(2026, 5, 15, 12, 0, tzinfo=dt.UTC)
    as_usual = _events([now.date()], per_day=120, hours=12)  # half a day: half the events
    stalled = _events([now.date()], per_day=30, hours=3)  # the stream stopped at 03:00
    empty = pl.Series("reasons", [], dtype=pl.List(pl.String))
    common: dict[str, Any] = {"quarantine_reasons": empty, "suspect_reasons": empty, "history": history}
    usual = today_so_far(now=now, events=as_usual, history_days=history_days, **common)
    low = today_so_far(now=now, events=stalled, history_days=history_days, **common)
    assert usual.volumes.filter(pl.col("measure") == "events")["status"].item() == BandStatus.OK.value
    assert low.volumes.filter(pl.col("measure") == "events")["status"].item() == BandStatus.LOW.value
    assert "events" in low.volumes_outside and "volume as usual" in usual.summary


def test_reasons_are_counted_per_code_most_frequent_first() -> None:
    reasons = pl.Series([["price:negative"], ["price:negative", "user_id:missing"], ["user_id:missing"], ["a:b"]])
    table = reason_counts(reasons)
    assert table.rows() == [("price:negative", 2), ("user_id:missing", 2), ("a:b", 1)]


def test_a_days_health_ranks_errors_then_warnings_then_silence_then_passes() -> None:
    outcomes = [
        health.CheckOutcome("warehouse/events", "schema_conforms", health.Outcome.PASSED, ""),
        health.CheckOutcome("monitoring/drift_report", "no_material_drift", health.Outcome.WARN, "drift"),
        health.CheckOutcome("quality/event_plausibility", "records_plausible", health.Outcome.NOT_RUN, ""),
        health.CheckOutcome("warehouse/events", "day_reconciles", health.Outcome.ERROR, "lake and warehouse differ"),
    ]
    table = health.health_table(outcomes)
    assert table["outcome"].to_list() == ["error", "warn", "not run", "passed"]
    assert health.verdict(outcomes).startswith("1 error, 1 warn, 1 not run of 4 checks; worst: warehouse/events")
    assert health.verdict(outcomes[:1]) == "passed: all 1 checks"
    assert health.verdict([]) == "no checks ran for this day"


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    [materialization] = [m for m in result.asset_materializations_for_node(key)]
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.fixture(scope="module")
def analyst_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Eight days of history with 2% corrupt records, and today's events so far streamed in."""
    root = tmp_path_factory.mktemp("analyst")
    now = dt.datetime.now(dt.UTC)
    start = now.date() - dt.timedelta(days=DAYS - 1)
    config = DemoConfig(start=start, days=DAYS, users=300, events_per_day=2000, seed=5, corruption_rate=0.02)
    frame = generate_events(config).frame
    past = frame.filter(pl.col("event_date") < now.date())
    streamed = frame.filter((pl.col("event_date") == now.date()) & (pl.col("timestamp") <= now))
    write_history(past, root / "history", fmt="jsonl")
    write_landing(root / "landing", "today-0001.jsonl", encode_events(streamed, "jsonl"))
    yesterday = str(now.date() - dt.timedelta(days=1))
    with dg.instance_for_test() as instance:
        resources = local_resources(root)
        tags = {"dagster/asset_partition_range_start": str(start), "dagster/asset_partition_range_end": yesterday}
        assert dg.materialize([history_events], resources=resources, instance=instance, tags=tags).success
        assert dg.materialize([landing_events], resources=resources, instance=instance).success
        for day in past["event_date"].unique().sort():
            daily = [warehouse_events, quarantine, event_plausibility]
            assert dg.materialize(daily, partition_key=str(day), resources=resources, instance=instance).success
        yield {
            "root": Path(root),
            "past": past,
            "streamed": streamed,
            "yesterday": yesterday,
            "today": dg.materialize([today], resources=resources, instance=instance),
            "quarantine": dg.materialize([quarantine], partition_key=yesterday, resources=resources, instance=instance),
            "health": dg.materialize(
                [daily_health], partition_key=yesterday, resources=resources, instance=instance, raise_on_error=False
            ),
        }


def test_today_counts_what_landed_today_and_why_records_were_refused(analyst_day: dict[str, Any]) -> None:
    streamed = analyst_day["streamed"]
    metadata = _metadata(analyst_day["today"], "warehouse__today")
    refused = streamed.filter(pl.col("corruption").is_not_null() & (pl.col("corruption") != "duplicate")).height
    duplicates = streamed.filter(pl.col("corruption") == "duplicate").height
    # Records whose corrupted timestamp names another day count on the day they arrived: today.
    assert metadata["quarantined_so_far"] == refused
    assert metadata["events_so_far"] == streamed.height - refused - duplicates
    assert metadata["summary"].startswith(f"{metadata['events_so_far']:,} events so far")
    if refused:
        assert "| reason | records |" in metadata["quarantine_reasons"]
    assert "events_view" in metadata["volume_against_band_for_this_time_of_day"]


def test_the_quarantine_page_counts_a_day_by_reason_and_shows_the_replay(analyst_day: dict[str, Any]) -> None:
    day = dt.date.fromisoformat(analyst_day["yesterday"])
    with warehouse.connect(analyst_day["root"] / "wh.duckdb", read_only=True) as con:
        table = con.sql("SELECT unnest(reasons) AS reason FROM quarantine WHERE event_date = ?", params=[day]).pl()
        refused = warehouse.scalar(con, "SELECT count(*) FROM quarantine WHERE event_date = ?", [day])
    metadata = _metadata(analyst_day["quarantine"], "warehouse__quarantine")
    assert metadata["quarantined"] == refused > 0  # the page and the warehouse table agree
    per_reason = {k.removeprefix("reason "): v for k, v in metadata.items() if k.startswith("reason ")}
    assert per_reason == dict(table["reason"].value_counts().iter_rows())
    top = max(per_reason, key=lambda r: per_reason[r])
    assert f"--reason {top} --since {analyst_day['yesterday']}" in metadata["replay"]
    assert ".jsonl#" in metadata["top_reasons"]  # examples point at the source file and row


def test_the_days_health_lists_every_check_that_judged_it_worst_first(analyst_day: dict[str, Any]) -> None:
    result = analyst_day["health"]
    metadata = _metadata(result, "monitoring__daily_health")
    table = metadata["checks"]
    for check in ("schema_conforms", "day_reconciles", "quarantine_rate_in_band", "records_plausible"):
        assert f"| warehouse/events | {check} |" in table or f"| {check} |" in table
    # Built only for days, not monitored here: drift and performance never ran for the day.
    assert "| not run | monitoring/drift_report | no_material_drift |" in table
    assert metadata["checks not run"] >= 2 and metadata["checks passed"] >= 5
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("|")]
    ranks = [list(health.Outcome).index(health.Outcome(r)) for r in rows]
    assert ranks == sorted(ranks)
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and metadata["verdict"].split(";")[0] in evaluation.metadata["verdict"].value
