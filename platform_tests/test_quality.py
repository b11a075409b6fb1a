"""Tier 1 and 2 data quality: bands, contract re-validation, quarantine replay, the daily checks."""

import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from dataplatform.defs.ingestion.assets import history_events
from dataplatform.defs.quality.assets import event_distributions, warehouse_events
from dataplatform.defs.quality.plausibility import event_plausibility
from dataplatform.lib import contract, lakeread, suspects, warehouse
from dataplatform.lib.contract import QuarantineRecord
from dataplatform.lib.demo import DemoConfig, generate_events, write_history
from dataplatform.lib.ingest import batch_id_for, ingest_batch
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LocalLanding
from dataplatform.lib.quality import (
    BandStatus,
    check_contract,
    learned_band,
    markdown_table,
    weekday_adjusted_band,
)
from dataplatform.lib.replay import plan_replay, select_quarantined, write_replay
from dataplatform.lib.suspects import transient_shift_days
from factories import event, jsonl_bytes, local_resources, write_landing


def test_band_learns_median_and_robust_spread_and_ignores_outlier_days() -> None:
    band = learned_band([10, 11, 9, 10, 10, 11, 9, 500])
    assert band is not None and band.center == 10
    assert band.status(10.5) is BandStatus.OK
    assert band.status(16) is BandStatus.HIGH and band.status(40) is BandStatus.FAR_HIGH
    assert band.status(2) is BandStatus.LOW


def test_band_needs_history_and_respects_a_minimum_width() -> None:
    assert learned_band([0.0] * 4) is None
    band = learned_band([0.0] * 10, min_width=0.005, floor=0.0)
    assert band is not None and band.low == 0.0 and math.isclose(band.high, 0.015)
    assert band.status(0.01) is BandStatus.OK and band.status(0.05) is BandStatus.FAR_HIGH


def test_contract_recheck_names_failures_with_examples() -> None:
    frame = pl.DataFrame(
        {
            "event_id": ["a", "b", "c"], "user_id": ["u", "", "u"],
            "timestamp": [dt.datetime(2026, 3, 1, tzinfo=dt.UTC)] * 3, "event_type": ["view", "view", "buy"],
            "product_id": [1, 2, 3], "category": [None] * 3, "brand": [None] * 3, "price": [1.0, -2.0, 3.0],
            "session_id": [None] * 3, "extras": [None] * 3,
        },
        schema_overrides={"category": pl.String, "brand": pl.String, "session_id": pl.String, "extras": pl.String},
    )  # fmt: skip
    report = check_contract(frame)
    assert not report.passed and report.failing_rows == 2
    assert dict(zip(report.reasons["reason"], report.reasons["examples"], strict=True)) == {
        "user_id:bad_length": "b", "price:below_minimum": "b", "event_type:not_allowed": "c"
    }  # fmt: skip
    assert "| reason |" in markdown_table(report.reasons)
    assert check_contract(frame.drop("price")).reasons["reason"].to_list() == ["price:column_missing"]


def test_quarantine_contract_requires_named_reasons() -> None:
    rows = pl.DataFrame(
        {"batch_id": ["b", "b"], "source_file": ["f", "f"], "source_row": [1, None], "reasons": [["price:finite"], []],
         "raw_record": ["{}", "x"], "event_date": [dt.date(2026, 3, 1)] * 2, "claimed_date": [None, None],
         "detail": [None, None]},
        schema_overrides={"claimed_date": pl.Date, "reasons": pl.List(pl.String), "detail": pl.String},
    )  # fmt: skip
    report = check_contract(rows, model=QuarantineRecord, id_column="source_file")
    assert report.failing_rows == 1 and report.reasons["reason"].to_list() == ["reasons:named_reasons"]


def test_replay_after_a_contract_fix_reconciles_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing, lake, wh = tmp_path / "landing", Lake.local(tmp_path / "lake"), tmp_path / "wh.duckdb"
    records = [event(1), event(2, user_id=..., uid="u9"), event(3, user_id=..., uid="u8"), event(4, price=-1)]
    write_landing(landing, "a.jsonl", jsonl_bytes(records))

    def ingest(name_filter: str) -> object:
        store = LocalLanding(landing)
        files = [f for f in store.list_files(100) if f.key.startswith(name_filter)]
        return ingest_batch(
            store=store, files=files, lake=lake, warehouse_path=wh,
            batch_id=batch_id_for("stream", files), mode="stream",
        )  # fmt: skip

    first = ingest("a.jsonl")
    assert (first.rows_valid, first.rows_quarantined) == (1, 3)

    # The fix: producers call the user `uid`; the contract learns the alias.
    monkeypatch.setitem(contract.COLUMN_ALIASES, "uid", "user_id")
    plan = plan_replay(select_quarantined(lake, reasons=["user_id:missing"]))
    assert plan.replayable.height == 2
    write_replay(plan, landing, lake)
    replayed = ingest("replay-")
    assert (replayed.rows_in, replayed.rows_valid, replayed.rows_quarantined) == (2, 2, 0)
    assert replayed.reconciles

    again = plan_replay(select_quarantined(lake, reasons=["user_id:missing"]))
    assert again.file_name == plan.file_name  # same selection, same file: the ledger makes it a no-op
    assert ingest("replay-").rows_in == 2  # the same file re-run is idempotent
    # Rows, not distinct ids: a replay written twice would still have three distinct ids.
    ids = pl.read_parquet(str(lake.storage.root / "events" / "event_date=*" / "*.parquet"))["event_id"]
    assert sorted(ids) == ["e1", "e2", "e3"]


@pytest.fixture
def resources(tmp_path: Path) -> dict[str, dg.ConfigurableResource]:
    return local_resources(tmp_path)


def demo_history(path: Path, days: int, **options: object) -> list[str]:
    config = DemoConfig(start=dt.date(2026, 3, 1), days=days, users=300, events_per_day=1500, seed=3, **options)
    frame, _ = generate_events(config)
    write_history(frame, path, fmt="jsonl")
    return [str(config.start + dt.timedelta(days=i)) for i in range(days)]


def materialize_days(resources: dict, days: list[str], *assets: dg.AssetsDefinition) -> list[dg.ExecuteInProcessResult]:
    results = []
    with dg.instance_for_test() as instance:
        for day in days:
            for asset in assets:
                results.append(
                    dg.materialize(
                        [asset], partition_key=day, resources=resources, instance=instance, raise_on_error=False
                    )
                )
    return results


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_clean_days_pass_every_check(tmp_path: Path, resources: dict) -> None:
    days = demo_history(tmp_path / "history", 8)
    results = materialize_days(resources, days, history_events, warehouse_events)
    last = checks_of(results[-1])
    assert set(last) == {
        "schema_conforms", "event_id_unique", "day_reconciles", "quarantine_conforms",
        "quarantine_rate_in_band", "volume_in_band",
    }  # fmt: skip
    assert all(c.passed for c in last.values()), {k: c.metadata for k, c in last.items() if not c.passed}
    assert last["quarantine_rate_in_band"].metadata["history_days"].value == 7


def test_a_corrupted_day_fails_the_quarantine_band_with_error(tmp_path: Path, resources: dict) -> None:
    days = demo_history(
        tmp_path / "history", 8, corruption_rate=0.15, corrupt_from=dt.date(2026, 3, 8), corrupt_to=dt.date(2026, 3, 8)
    )
    results = materialize_days(resources, days, history_events, warehouse_events)
    last = checks_of(results[-1])
    assert not last["quarantine_rate_in_band"].passed
    assert last["quarantine_rate_in_band"].severity == dg.AssetCheckSeverity.ERROR
    assert last["quarantine_rate_in_band"].metadata["status"].value == "far_high"
    assert last["schema_conforms"].passed and last["day_reconciles"].passed  # what was stored is still sound
    assert last["quarantine_conforms"].passed and last["quarantine_conforms"].metadata["records"].value > 100


def test_records_quarantined_for_their_timestamp_count_on_the_day_they_came_in(tmp_path: Path, resources: dict) -> None:
    days = demo_history(tmp_path / "history", 8)
    last_day = tmp_path / "history" / f"event_date={days[-1]}"
    bad = [event(i, timestamp="2027-06-21T10:00:00+00:00") for i in range(40)]  # a year ahead
    bad += [event(100 + i, timestamp="not a time") for i in range(30)]
    data = jsonl_bytes(bad) + b'{"event_id": "broken", "user_id"\n' * 30
    write_landing(last_day, "late-producer.jsonl", data)
    results = materialize_days(resources, days, history_events, warehouse_events)
    ingest, quality = results[-2], results[-1]
    batch_quarantined = ingest.get_asset_materialization_events()[0].materialization.metadata["rows_quarantined"]
    metadata = quality.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["quarantined"].value == batch_quarantined.value >= 100  # the day's figure = its batch's
    assert metadata["quarantined_claiming_another_day"].value == 100  # none claims the day it counts on
    checks = checks_of(quality)
    assert not checks["quarantine_rate_in_band"].passed and checks["quarantine_conforms"].passed
    held = lakeread.quarantine_for_days(resources["lakehouse"].lake(), [days[-1]])
    claimed = held.filter(pl.col("source_file").str.ends_with("late-producer.jsonl"))["claimed_date"]
    assert claimed.value_counts().sort("claimed_date", nulls_last=True)["count"].to_list() == [40, 60]
    assert set(claimed.drop_nulls().to_list()) == {dt.date(2027, 6, 21)}


def test_rows_missing_from_the_warehouse_fail_reconciliation_and_block(tmp_path: Path, resources: dict) -> None:
    days = demo_history(tmp_path / "history", 1)
    materialize_days(resources, days, history_events)
    with resources["lakehouse"].connect() as con:
        con.sql("DELETE FROM events WHERE event_id IN (SELECT event_id FROM events LIMIT 5)")
    result = materialize_days(resources, days, warehouse_events)[0]
    check = checks_of(result)["day_reconciles"]
    assert not check.passed and check.metadata["rows_in_lake_not_in_warehouse"].value == 5
    assert check.blocking


def test_a_bad_row_written_behind_the_platforms_back_fails_schema_conformance(tmp_path: Path, resources: dict) -> None:
    days = demo_history(tmp_path / "history", 1)
    materialize_days(resources, days, history_events)
    lake = resources["lakehouse"].lake()
    path = next((lake.storage.root / "events").glob(f"event_date={days[0]}/*.parquet"))
    frame = pl.read_parquet(path)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(-5.0).otherwise(pl.col("price")).alias("price")
    ).write_parquet(path)
    check = checks_of(materialize_days(resources, days, warehouse_events)[0])["schema_conforms"]
    assert not check.passed and check.metadata["failing_rows"].value == 1
    assert "price:below_minimum" in check.metadata["failures"].value


def test_distribution_check_flags_real_drift_and_not_stable_days(tmp_path: Path, resources: dict) -> None:
    days = demo_history(
        tmp_path / "history", 16, drift_start=dt.date(2026, 3, 16), drift_strength=1.0, drift_ramp_days=1
    )
    materialize_days(resources, days, history_events)
    stable, drifted = materialize_days(resources, [days[-2], days[-1]], event_distributions)
    assert checks_of(stable)["distributions_stable"].passed
    drift_check = checks_of(drifted)["distributions_stable"]
    assert not drift_check.passed and drift_check.severity == dg.AssetCheckSeverity.WARN
    assert "price" in drift_check.metadata["drifted_columns"].value
    with resources["lakehouse"].connect(read_only=True) as con:
        stored = con.sql("SELECT count(*), count(DISTINCT event_date) FROM distribution_drift").fetchall()
    assert stored == [(10, 2)]


def _prices_in_cents(bad: pl.Expr) -> pl.Expr:
    return pl.when(bad).then(pl.col("price") * 100).otherwise(pl.col("price")).alias("price")


def _views_relabelled_as_purchases(bad: pl.Expr) -> pl.Expr:
    relabel = bad & (pl.col("event_type") == "view")
    return pl.when(relabel).then(pl.lit("purchase")).otherwise(pl.col("event_type")).alias("event_type")


# The second kind is not what the reference rule was written for (it was measured on prices in cents).
@pytest.mark.parametrize("corrupt", [_prices_in_cents, _views_relabelled_as_purchases])
def test_a_week_of_silent_corruption_is_flagged_every_day_and_clean_days_after_it_are_not(
    tmp_path: Path, resources: dict, corrupt: Callable[[pl.Expr], pl.Expr]
) -> None:
    """Before: a week of prices in cents was flagged on its first 2 days; its days then served as
    reference and threshold history, and the check stayed blind for about 18 days."""
    config = DemoConfig(start=dt.date(2026, 3, 1), days=28, users=300, events_per_day=1500, seed=3)
    frame, _ = generate_events(config)
    corrupted = [config.start + dt.timedelta(days=i) for i in range(14, 21)]
    bad = pl.col("timestamp").dt.date().is_in(corrupted) & (pl.int_range(pl.len()) % 100 < 15)  # 15%
    frame = frame.with_columns(corrupt(bad))
    write_history(frame, tmp_path / "history", fmt="jsonl")
    days = [str(d) for d in config.dates]
    materialize_days(resources, days, history_events)
    results = materialize_days(resources, days[14:], event_distributions)
    flagged = {day: not checks_of(r)["distributions_stable"].passed for day, r in zip(days[14:], results, strict=True)}
    assert all(flagged[str(d)] for d in corrupted), flagged
    assert not any(flagged[day] for day in days[21:]), flagged
    after = checks_of(results[-1])["distributions_stable"].metadata
    assert after["left_out_days"].value == ", ".join(str(d) for d in corrupted)


def test_an_abrupt_short_shift_is_suspect_and_a_lasting_or_gradual_one_is_not() -> None:
    start = dt.date(2026, 3, 1)

    def run(first: int, length: int, score: float) -> dict[dt.date, float]:
        return {start + dt.timedelta(days=first + i): score for i in range(length)}

    week, single = run(3, 7, 200.0), run(12, 1, 12.0)  # corruption: a week, then one day
    fortnight = run(20, 14, 200.0)  # an abrupt change that lasted: the new normal
    ramp = {**run(40, 1, 1.4), **run(41, 5, 6.0)}  # drift building up: crosses its threshold gently
    noise = run(0, 30, 1.2)  # another column flagged every day by a default threshold
    suspect = transient_shift_days({"price": {**week, **single, **fortnight, **ramp}, "brand": noise})
    assert sorted(suspect) == sorted([*week, *single])
    assert suspect[start + dt.timedelta(days=3)].startswith("price: abrupt shift (200x its threshold")
    assert "7 < 14 days" in suspect[start + dt.timedelta(days=3)]


def test_an_abrupt_volume_flood_makes_its_day_suspect_and_the_days_around_it_stay_clean(
    tmp_path: Path, resources: dict
) -> None:
    # Bot traffic: every view of the day sent three more times under new ids (each copy passes the contract).
    config = DemoConfig(start=dt.date(2026, 3, 1), days=11, users=300, events_per_day=1500, seed=3)
    frame, _ = generate_events(config)
    flood_day = config.dates[8]
    views = frame.filter((pl.col("timestamp").dt.date() == flood_day) & (pl.col("event_type") == "view"))
    copies = [views.with_columns((f"bot{n}-" + pl.col("event_id")).alias("event_id")) for n in range(3)]
    write_history(pl.concat([frame, *copies]), tmp_path / "history", fmt="jsonl")
    days = [str(d) for d in config.dates]
    materialize_days(resources, days, history_events, warehouse_events)
    with resources["lakehouse"].connect(read_only=True) as con:
        suspect = suspects.suspect_days(con, config.start, config.dates[-1] + dt.timedelta(days=1))
        scores = dict(
            con.sql("SELECT measure, score FROM daily_volume WHERE event_date = ?", params=[flood_day]).fetchall()
        )
    assert list(suspect) == [flood_day], suspect
    assert "volume:events_view: abrupt shift" in suspect[flood_day]
    assert scores["events_view"] >= suspects.ABRUPT_SCORE and scores["events_purchase"] < 1


def test_implausible_records_of_a_day_are_listed_with_reasons_and_judging_again_replaces_them(
    tmp_path: Path, resources: dict
) -> None:
    config = DemoConfig(start=dt.date(2026, 3, 1), days=10, users=300, events_per_day=1500, seed=3)
    frame, _ = generate_events(config)
    last = config.dates[-1]
    bad = (pl.col("timestamp").dt.date() == last) & (pl.int_range(pl.len()) % 100 < 15)
    frame = frame.with_columns(_prices_in_cents(bad))
    write_history(frame, tmp_path / "history", fmt="jsonl")
    days = [str(d) for d in config.dates]
    materialize_days(resources, days, history_events)
    clean, corrupted, again = materialize_days(resources, [days[-2], days[-1], days[-1]], event_plausibility)
    assert checks_of(clean)["records_plausible"].passed
    check = checks_of(corrupted)["records_plausible"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    seen = frame.filter(pl.col("timestamp").dt.date() < last)["product_id"].implode()
    # Products history has not seen are not judged on price (3 of the 210 corrupted records here).
    expected = frame.filter(bad & pl.col("corruption").is_null() & pl.col("product_id").is_in(seen)).height
    assert check.metadata["suspect_records"].value == expected
    assert "price:implausible" in check.metadata["reasons"].value
    assert checks_of(again)["records_plausible"].metadata["suspect_records"].value == expected
    with resources["lakehouse"].connect(read_only=True) as con:
        assert con.sql("SELECT count(*) FROM suspect_events").fetchall() == [(expected,)]  # not doubled
        by_reason = con.sql("SELECT event_date, reason, records FROM suspect_reasons").fetchall()
        assert by_reason == [(last, "price:implausible", expected)]
        assert con.sql("SELECT suspect FROM daily_plausibility WHERE event_date = ?", params=[last]).fetchall() == [
            (expected,)
        ]


def test_the_suspects_cli_lists_suspect_days_and_records_an_acceptance_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DP_DATA_DIR", str(tmp_path))
    day = dt.date(2026, 3, 15)
    with warehouse.connect(tmp_path / "warehouse" / "warehouse.duckdb") as con:
        con.execute(
            "INSERT INTO distribution_drift (event_date, dataset, column_name, effect_size, threshold, drifted, "
            "computed_at) VALUES (?, 'events', 'price', 5.0, 0.1, true, now()), "
            "(?, 'events', 'price', 5.0, 0.1, true, now())",
            [day, day + dt.timedelta(days=1)],
        )
    assert suspects.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert f"{day}  suspect   price: abrupt shift (50x its threshold" in listed and "2026-03-16  suspect" in listed
    assert suspects.main(["accept", str(day), "--by", "analyst", "--note", "a new price list"]) == 0
    assert suspects.main(["accept", str(day), "--by", "intruder", "--note", "again"]) == 0
    capsys.readouterr()
    suspects.main(["list"])
    listed = capsys.readouterr().out
    assert f"{day}  accepted  accepted by analyst" in listed and "intruder" not in listed
    assert f"{day}  suspect" not in listed and "2026-03-16  suspect" in listed


def test_volume_band_follows_the_weekly_cycle() -> None:
    """Before: on streams with 15% more traffic at weekends, `volume_in_band` warned on 13-14 of 98 days."""
    rng = np.random.default_rng(13)
    start = dt.date(2026, 1, 5)  # a Monday
    days = [start + dt.timedelta(days=i) for i in range(98)]
    volume = [20_000 * (1.2 if d.isoweekday() >= 6 else 1.0) * rng.normal(1.0, 0.01) for d in days]

    def warnings(adjust: bool) -> int:
        flagged = 0
        for i in range(28, len(days)):
            past_days, past = days[i - 28 : i], volume[i - 28 : i]
            if adjust:
                band, factor = weekday_adjusted_band(past_days, past, days[i], min_relative_width=0.05)
            else:
                band, factor = learned_band(past, min_width=0.05 * float(np.median(past)), floor=0.0), 1.0
            assert band is not None
            flagged += band.status(volume[i] / factor) is not BandStatus.OK
        return flagged

    assert warnings(adjust=False) >= 10  # the finding, reproduced with a plain band (weekends 20% busier)
    assert warnings(adjust=True) == 0
    # A real drop on a weekend still leaves the band.
    past_days, past = days[:28], volume[:28]
    band, factor = weekday_adjusted_band(past_days, past, days[33], min_relative_width=0.05)
    assert days[33].isoweekday() == 6 and band is not None
    assert band.status(0.8 * 20_000 * 1.2 / factor) is BandStatus.LOW
