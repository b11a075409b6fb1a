"""Fast tests of the demo event generator (dataplatform.lib.demo): realism, corruption, drift,
writers and CLI, all on a few thousand events."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dataplatform.defs.monitoring.assets import DRIFT_FEATURES
from dataplatform.lib import drift, features
from dataplatform.lib.contract import EVENT_TYPES, EventRecord
from dataplatform.lib.demo import (
    ALL_KINDS,
    EVENT_COLUMNS,
    CorruptionKind,
    DemoConfig,
    GeneratedEvents,
    LiveDays,
    day_volume,
    generate_events,
    resume_point,
    trickle,
    write_history,
)
from dataplatform.lib.demo.cli import _config as cli_config
from dataplatform.lib.demo.cli import build_parser, main
from dataplatform.lib.readers import ParsedFile, read_landing_file
from dataplatform.lib.transform import transform

K = CorruptionKind
START = dt.date(2026, 3, 2)  # a Monday
PLATFORM_DIR = Path(__file__).resolve().parents[1] / "platform"


def small(**overrides: object) -> DemoConfig:
    options: dict[str, object] = {"start": START, "days": 2, "users": 300, "products": 120, "events_per_day": 1500}
    options.update(overrides)
    return DemoConfig(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def corrupted() -> GeneratedEvents:
    """Three days, corruption on the last two only."""
    return generate_events(small(days=3, corruption_rate=0.06, corrupt_from=START + dt.timedelta(days=1)))


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties averaged."""
    ranks = pl.Series(score).rank("average").to_numpy()
    pos = int(label.sum())
    neg = len(label) - pos
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_same_frame_and_days_do_not_depend_on_range() -> None:
    config = small(corruption_rate=0.05, drift_start=START, drift_strength=0.5)
    first, second = generate_events(config), generate_events(config)
    assert first.frame.equals(second.frame)
    assert first.report == second.report
    assert not generate_events(small(seed=7)).frame.equals(generate_events(small()).frame)
    # Each day has its own random stream: generating more days leaves earlier ones unchanged.
    one_day = generate_events(small(days=1)).frame
    assert generate_events(small(days=2)).frame.filter(pl.col("event_date") == START).equals(one_day)


def test_schema_and_clean_records_satisfy_the_contract() -> None:
    frame = generate_events(small()).frame
    assert frame.columns[: len(EVENT_COLUMNS)] == list(EVENT_COLUMNS)
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert frame.schema["product_id"] == pl.Int64
    assert frame["event_id"].n_unique() == frame.height
    assert frame["price"].min() > 0
    assert set(frame["event_type"].unique()) == set(EVENT_TYPES)
    EventRecord.validate(frame.with_columns(extras=pl.lit(None, pl.String)), lazy=True)


# --- volume, seasonality, sessions ------------------------------------------------------------


def test_daily_counts_follow_events_per_day_with_weekly_and_daily_seasonality() -> None:
    config = small(days=7, events_per_day=2000)
    frame = generate_events(config).frame
    per_day = dict(frame.group_by("event_date").len().iter_rows())
    assert per_day == {day: day_volume(config, day) for day in config.dates}
    assert abs(np.mean(list(per_day.values())) / 2000 - 1) < 0.05
    weekday = np.mean([per_day[START + dt.timedelta(days=i)] for i in range(4)])  # Mon..Thu
    weekend = np.mean([per_day[START + dt.timedelta(days=i)] for i in (5, 6)])
    assert weekend > 1.1 * weekday
    hours = frame["timestamp"].dt.hour()
    assert hours.is_between(19, 21).sum() > 3 * hours.is_between(2, 4).sum()  # evening peak vs night


def test_funnel_order_and_session_shape() -> None:
    frame = generate_events(small()).frame
    first_view = (
        frame.filter(pl.col("event_type") == "view")
        .group_by("session_id", "product_id")
        .agg(first_view=pl.col("timestamp").min())
    )
    first_cart = (
        frame.filter(pl.col("event_type") == "cart")
        .group_by("session_id", "product_id")
        .agg(first_cart=pl.col("timestamp").min())
    )
    later = frame.filter(pl.col("event_type") != "view").join(first_view, on=["session_id", "product_id"], how="left")
    assert (later["timestamp"] > later["first_view"]).all()  # null first_view would fail too
    after_cart = later.filter(pl.col("event_type") != "cart").join(
        first_cart, on=["session_id", "product_id"], how="left"
    )
    assert after_cart.height > 0
    assert (after_cart["timestamp"] > after_cart["first_cart"]).all()

    sessions = frame.group_by("session_id").agg(
        users=pl.col("user_id").n_unique(),
        span=pl.col("timestamp").max() - pl.col("timestamp").min(),
        carted=(pl.col("event_type") == "cart").any(),
        bought=(pl.col("event_type") == "purchase").any(),
    )
    assert (sessions["users"] == 1).all()
    assert sessions["span"].max() < dt.timedelta(hours=3)
    only_views = 1 - sessions["carted"].mean()
    assert only_views > 0.6
    assert 0 < sessions["bought"].sum() < sessions["carted"].sum()
    # Heavy-tailed activity: the busiest tenth of users produce far more than a tenth of sessions.
    per_user = frame.group_by("user_id").agg(n=pl.col("session_id").n_unique())["n"].sort(descending=True)
    assert per_user.head(len(per_user) // 10).sum() > 0.25 * per_user.sum()


# --- corruption -------------------------------------------------------------------------------


def test_corruption_counts_match_report_and_frame(corrupted: GeneratedEvents) -> None:
    frame, report = corrupted
    in_frame = dict(frame["corruption"].drop_nulls().value_counts().iter_rows())
    assert {K(k): n for k, n in in_frame.items()} == {k: n for k, n in report.counts.items() if n}
    assert set(in_frame) == {str(k) for k in ALL_KINDS}
    assert frame.filter(pl.col("event_date") == START)["corruption"].null_count() == report.rows_by_day[START]
    assert report.total_rows == frame.height
    for day in (START + dt.timedelta(days=1), START + dt.timedelta(days=2)):
        injected = report.injected_by_day[day]
        clean_rows = report.rows_by_day[day] - injected[K.DUPLICATE]
        assert abs(sum(injected.values()) - 0.06 * clean_rows) <= 1
        assert max(injected.values()) - min(injected.values()) <= 1  # spread evenly over kinds


def test_corrupted_values_are_really_bad(corrupted: GeneratedEvents) -> None:
    frame = corrupted.frame

    def rows(kind: CorruptionKind) -> pl.DataFrame:
        return frame.filter(pl.col("corruption") == kind)

    assert rows(K.MISSING_USER_ID)["user_id"].null_count() == rows(K.MISSING_USER_ID).height
    assert (rows(K.EMPTY_USER_ID)["user_id"] == "").all()
    bad_ts = rows(K.BAD_TIMESTAMP)
    assert bad_ts["timestamp"].null_count() == bad_ts.height
    assert bad_ts["raw_value"].str.to_datetime(strict=False, time_zone="UTC").null_count() == bad_ts.height
    for text in bad_ts["raw_value"]:
        with pytest.raises(ValueError):
            dt.datetime.fromisoformat(text)
    assert (rows(K.FUTURE_TIMESTAMP)["timestamp"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=365)).all()
    assert (rows(K.NEGATIVE_PRICE)["price"] < 0).all()
    assert rows(K.NAN_PRICE)["price"].is_nan().all()
    assert not rows(K.UNKNOWN_EVENT_TYPE)["event_type"].is_in(list(EVENT_TYPES)).any()
    bad_pid = rows(K.BAD_PRODUCT_ID)
    assert bad_pid["product_id"].null_count() == bad_pid.height
    assert bad_pid["raw_value"].cast(pl.Int64, strict=False).null_count() == bad_pid.height
    # A duplicate is an exact, later re-emission of a clean record.
    dups = rows(K.DUPLICATE)
    indexed = frame.with_row_index()
    originals = indexed.filter(pl.col("corruption").is_null() & pl.col("event_id").is_in(dups["event_id"].implode()))
    copies = indexed.filter(pl.col("corruption") == K.DUPLICATE)
    assert originals.height == copies.height == dups.height
    pairs = originals.join(copies, on="event_id", suffix="_copy")
    assert (pairs["index_copy"] > pairs["index"]).all()
    for column in EVENT_COLUMNS[1:]:  # event_id is the join key
        assert pairs[column].equals(pairs[f"{column}_copy"], check_names=False)


def test_jsonl_files_carry_the_corruptions(corrupted: GeneratedEvents, tmp_path: Path) -> None:
    paths = write_history(corrupted.frame, tmp_path, fmt="jsonl.gz")
    lines = [line for path in paths for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    assert len(lines) == corrupted.frame.height
    parsed: list[dict[str, object]] = []
    broken = 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            broken += 1
    counts = corrupted.report.counts
    assert broken == counts[K.MALFORMED_JSON]
    assert sum("user_id" not in r for r in parsed) == counts[K.MISSING_USER_ID]
    assert sum(r.get("user_id") == "" for r in parsed) == counts[K.EMPTY_USER_ID]
    assert sum(r["price"] == "NaN" for r in parsed) == counts[K.NAN_PRICE]
    assert sum(isinstance(r["product_id"], str) for r in parsed) == counts[K.BAD_PRODUCT_ID]
    ids = pl.Series([r["event_id"] for r in parsed])
    assert ids.is_duplicated().sum() == 2 * counts[K.DUPLICATE]


def test_csv_and_parquet_round_trip(tmp_path: Path) -> None:
    kinds = (K.MISSING_USER_ID, K.EMPTY_USER_ID, K.NAN_PRICE, K.BAD_TIMESTAMP, K.BAD_PRODUCT_ID)
    frame = generate_events(small(days=1, corruption_rate=0.05, corrupt_kinds=kinds)).frame
    (csv_path,) = write_history(frame, tmp_path / "csv", fmt="csv")
    text = pl.read_csv(csv_path, infer_schema=False)
    assert text.columns == list(EVENT_COLUMNS)
    expected_ts = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S%.3f+00:00").fill_null(frame["raw_value"])
    assert text["timestamp"].equals(expected_ts, check_names=False)
    assert text["user_id"].null_count() == (frame["corruption"] == K.MISSING_USER_ID).sum()
    assert (text["user_id"] == "").sum() == (frame["corruption"] == K.EMPTY_USER_ID).sum()
    assert (text["price"] == "NaN").sum() == (frame["corruption"] == K.NAN_PRICE).sum()

    typed_kinds = (K.MISSING_USER_ID, K.NAN_PRICE, K.FUTURE_TIMESTAMP, K.DUPLICATE)
    typed = generate_events(small(days=1, corruption_rate=0.05, corrupt_kinds=typed_kinds)).frame
    (parquet_path,) = write_history(typed, tmp_path / "parquet", fmt="parquet")
    assert pl.read_parquet(parquet_path).equals(typed.select(EVENT_COLUMNS))
    with pytest.raises(ValueError, match="bad_timestamp"):
        write_history(frame, tmp_path / "nope", fmt="parquet")


# --- drift and learnability --------------------------------------------------------------------


def _halves(frame: pl.DataFrame, split: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    return frame.filter(pl.col("event_date") < split), frame.filter(pl.col("event_date") >= split)


def _category_tvd(a: pl.DataFrame, b: pl.DataFrame) -> float:
    shares = [
        f["category"].value_counts(normalize=True).rename({"proportion": name}) for f, name in ((a, "a"), (b, "b"))
    ]
    joined = shares[0].join(shares[1], on="category", how="full", coalesce=True).fill_null(0)
    return float((joined["a"] - joined["b"]).abs().sum() / 2)


def _session_length(frame: pl.DataFrame) -> float:
    return frame.height / frame["session_id"].n_unique()


def test_drift_shifts_distributions_while_undrifted_days_stay_alike() -> None:
    # Sessions stay within one category, so category and price statistics are noisy on small
    # samples: this test uses ~24k events per run (still well under a second).
    split = START + dt.timedelta(days=3)
    size: dict[str, object] = {"days": 6, "users": 1000, "products": 200, "events_per_day": 4000}
    stable = generate_events(small(**size)).frame
    drifted = generate_events(small(**size, drift_start=split, drift_strength=1.0, drift_ramp_days=0)).frame

    d_before, d_after = _halves(drifted, split)
    s_before, s_after = _halves(stable, split)
    assert d_before.equals(s_before)  # nothing changes before drift_start
    log_price = pl.col("price").log().mean()
    assert d_after.select(log_price).item() - d_before.select(log_price).item() > 0.3
    assert abs(s_after.select(log_price).item() - s_before.select(log_price).item()) < 0.08
    assert _category_tvd(d_before, d_after) > 2 * _category_tvd(s_before, s_after)
    assert _session_length(d_after) > 1.3 * _session_length(d_before)
    assert abs(_session_length(s_after) / _session_length(s_before) - 1) < 0.1
    # Without drift, each pair of consecutive days looks alike.
    days = stable.partition_by("event_date", maintain_order=True)
    for a, b in itertools.pairwise(days):
        assert abs(a.select(log_price).item() - b.select(log_price).item()) < 0.25
        assert _category_tvd(a, b) < 0.2
        assert abs((a["event_type"] == "view").mean() - (b["event_type"] == "view").mean()) < 0.03
        assert abs(_session_length(a) / _session_length(b) - 1) < 0.15


def test_ramp_grows_drift_gradually() -> None:
    config = small(drift_start=START, drift_strength=0.8, drift_ramp_days=4)
    levels = [config.drift_level(START + dt.timedelta(days=i)) for i in range(-1, 6)]
    assert levels == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8])


def _purchase_features(frame: pl.DataFrame) -> pl.DataFrame:
    """Per viewed (session, product): purchased? plus features a model could compute."""
    views = frame.filter(pl.col("event_type") == "view")
    median = frame.group_by("category").agg(median=pl.col("price").median())
    taste = views.group_by("user_id", "category").agg(n=pl.len())
    taste = taste.with_columns(share=pl.col("n") / pl.col("n").sum().over("user_id"))
    return (
        frame.group_by("session_id", "product_id")
        .agg(pl.col("user_id", "category", "price").first(), bought=(pl.col("event_type") == "purchase").any())
        .join(median, on="category")
        .join(taste, on=["user_id", "category"])
        .with_columns(cheapness=-(pl.col("price") / pl.col("median")).log())
    )


def test_purchase_label_is_learnable_and_drift_changes_it() -> None:
    split = START + dt.timedelta(days=3)
    config = small(days=6, users=500, events_per_day=4000, drift_start=split, drift_strength=1.0, drift_ramp_days=0)
    before, after = (_purchase_features(f) for f in _halves(generate_events(config).frame, split))
    label = before["bought"].to_numpy()
    assert 0.01 < label.mean() < 0.15
    assert _auc(before["cheapness"].to_numpy(), label) > 0.65  # cheaper for its category → bought
    assert _auc(before["share"].to_numpy(), label) > 0.55  # a category the user likes → bought
    # After drift the price effect reverses (users trade up: a model trained before ranks wrongly by price),
    # and category taste matters less.
    after_label = after["bought"].to_numpy()
    assert _auc(after["cheapness"].to_numpy(), after_label) < 0.45
    assert _auc(after["share"].to_numpy(), after_label) < _auc(before["share"].to_numpy(), label) - 0.03


# --- writers ----------------------------------------------------------------------------------


def _dot_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


def test_history_layout_and_rewrite(tmp_path: Path) -> None:
    frame = generate_events(small()).frame
    paths = write_history(frame, tmp_path, fmt="jsonl.gz", files_per_day=2)
    expected = {
        tmp_path / f"event_date={day}" / f"events-{i:04d}.jsonl.gz"
        for day in ("2026-03-02", "2026-03-03")
        for i in (0, 1)
    }
    assert set(paths) == expected
    rows = sum(len(gzip.decompress(p.read_bytes()).splitlines()) for p in paths)
    assert rows == frame.height
    # A re-run with fewer files leaves exactly what it wrote.
    again = write_history(frame, tmp_path, fmt="jsonl", files_per_day=1)
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == set(again)
    assert not _dot_files(tmp_path)


def test_trickle_writes_n_files_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        src, dst = Path(src), Path(dst)
        assert src.name.startswith(".") and src.parent == dst.parent and not dst.exists()
        renames.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    now = [dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)]

    def clock() -> dt.datetime:
        now[0] += dt.timedelta(seconds=5)
        return now[0]

    result = trickle(small(), tmp_path, events_per_file=40, interval=0, files=3, clock=clock)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [p.name for p in result.files] and len(names) == 3
    assert [dst for _, dst in renames] == result.files
    assert not _dot_files(tmp_path)
    for path in result.files:
        frame = pl.read_ndjson(path)
        assert frame.height == 40
        stamps = frame["timestamp"].str.to_datetime(time_zone="UTC")
        assert stamps.max() <= now[0] and stamps.min() > now[0] - dt.timedelta(hours=1)
    assert result.report.total_rows == 120


def test_trickle_runs_until_stopped(tmp_path: Path) -> None:
    stop = threading.Event()
    calls = [0]

    def clock() -> dt.datetime:
        calls[0] += 1
        if calls[0] == 4:
            stop.set()  # as the CLI's SIGTERM handler would, mid-file
        return dt.datetime(2026, 11, 25, 12, 0, calls[0], tzinfo=dt.UTC)

    result = trickle(small(), tmp_path, events_per_file=10, interval=0.01, stop=stop, clock=clock)
    assert len(result.files) == 4  # the file in progress is finished, then the loop ends
    assert not _dot_files(tmp_path)


# --- CLI --------------------------------------------------------------------------------------


def test_cli_history_and_trickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "history"
    argv = ["history", "--out", str(history), "--days", "2", "--start", "2026-03-02", "--users", "100"]
    argv += ["--events-per-day", "500", "--seed", "5", "--format", "csv", "--corruption-rate", "0.1"]
    argv += ["--corrupt-kinds", "nan_price,duplicate", "--corrupt-from", "2026-03-03", "--quiet"]
    assert main(argv) == 0
    report = json.loads((history / "_demo_report.json").read_text())
    assert set(report["injected_by_day"]) == {"2026-03-03"}
    assert set(report["counts"]) == {str(k) for k in ALL_KINDS}
    files = sorted(history.glob("event_date=*/events-0000.csv"))
    assert len(files) == 2
    assert sum(pl.read_csv(f).height for f in files) == report["total_rows"]

    landing = tmp_path / "landing"
    assert main(["trickle", "--out", str(landing), "--events-per-file", "20", "--interval", "0", "--files", "2"]) == 0
    assert len(list(landing.glob("events-*.jsonl"))) == 2
    assert "trickle: wrote 40 events in 2 file(s)" in capsys.readouterr().out

    with pytest.raises(SystemExit) as usage:
        main(["history", "--out", str(tmp_path / "x"), "--format", "parquet", "--corrupt-kinds", "malformed_json"])
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as shown:
        main(["trickle", "--help"])
    assert shown.value.code == 0
    assert "--events-per-file" in capsys.readouterr().out


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PLATFORM_DIR)}
    argv = [sys.executable, "-m", "dataplatform.lib.demo", "history", "--out", str(tmp_path), "--days", "1"]
    argv += ["--users", "50", "--events-per-day", "200"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "history: wrote" in done.stdout
    assert len(list(tmp_path.glob("event_date=2026-03-01/events-0000.jsonl.gz"))) == 1


# --- the live stream is the history's world ---------------------------------------------------

DP_SCRIPT = PLATFORM_DIR.parent / "dp"


def test_live_days_send_each_history_day_once_and_whole(tmp_path: Path) -> None:
    config = small(corruption_rate=0.05)
    live = LiveDays(config)
    midnight = dt.datetime.combine(START, dt.time(), dt.UTC)
    cuts = [
        midnight - dt.timedelta(hours=1),
        midnight + dt.timedelta(hours=9, seconds=0.5),
        midnight + dt.timedelta(days=1),
    ]
    sent = pl.concat([live.between(a, b).frame for a, b in itertools.pairwise(cuts)])
    day = generate_events(small(days=1, corruption_rate=0.05)).frame
    assert (
        sent.filter(pl.col("event_date") == START)
        .sort("event_id", "corruption")
        .equals(day.sort("event_id", "corruption"))
    )
    # Records are due at their own timestamp (a corrupted one at its neighbour's): none from the future.
    late = live.between(midnight + dt.timedelta(hours=20), midnight + dt.timedelta(hours=21)).frame
    clean = late.filter(pl.col("corruption").is_null())
    assert clean["timestamp"].dt.hour().unique().to_list() == [20]

    # The first file catches up from midnight; a restart goes on after the newest file, repeating nothing.
    now = [midnight + dt.timedelta(hours=20)]

    def clock() -> dt.datetime:
        now[0] += dt.timedelta(seconds=30)
        return now[0]

    first = trickle(config, tmp_path, interval=0, files=3, clock=clock)
    assert resume_point(tmp_path, now[0]) == now[0]
    again = trickle(config, tmp_path, interval=0, files=3, clock=clock)
    lines = [len(p.read_bytes().splitlines()) for p in first.files + again.files]
    assert sum(lines) == first.report.total_rows + again.report.total_rows
    assert lines[0] > 100 * max(lines[1:3])  # the day so far, then about half a minute each
    first_ids = _through_the_contract(first.files)["event_id"]
    assert not _through_the_contract(again.files)["event_id"].is_in(first_ids.implode()).any()


def _dp_demo_world() -> list[str]:
    """The DEMO_WORLD options `./dp` gives both the demo history and the live trickle."""
    found = re.search(r"^DEMO_WORLD=\((.*?)\)\s*$", DP_SCRIPT.read_text(), re.MULTILINE | re.DOTALL)
    assert found, "dp defines no DEMO_WORLD=(...) array"
    script = f'DEMO_WORLD=({found.group(1)}); printf "%s\\n" "${{DEMO_WORLD[@]}}"'
    env = {k: v for k, v in os.environ.items() if not k.startswith("DP_DEMO_")}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.splitlines()


def _through_the_contract(paths: list[Path]) -> pl.DataFrame:
    """The valid records of `paths`, as ingestion reads and validates them."""
    parsed = [read_landing_file(p.name, p.read_bytes()) for p in paths]
    assert all(isinstance(p, ParsedFile) for p in parsed)
    named = [(p.records, p.malformed, pl.lit(p.source_file).alias("source_file")) for p in parsed]  # type: ignore[union-attr]
    records = pl.concat([r.with_columns(name) for r, _, name in named], how="diagonal_relaxed")
    malformed = pl.concat([m.with_columns(name) for _, m, name in named])
    return transform(records, malformed).valid


def test_a_trickle_batch_is_not_drifted_against_the_history(tmp_path: Path) -> None:
    """dp's history and stream options; the stream's day judged as `monitoring/batch_drift` judges a landing
    batch: features from the events before each view, thresholds learned on the training window at the
    batch's size bucket (as champion_thresholds buckets sizes), `drift.compare`."""
    world = _dp_demo_world()
    history_dir, landing = tmp_path / "history", tmp_path / "landing"
    argv = ["history", "--out", str(history_dir), "--days", "9", "--start", START.isoformat(), *world, "--quiet"]
    assert main(argv) == 0
    parser = build_parser()
    config = cli_config(parser.parse_args(["trickle", "--out", str(landing), *world]), parser)
    history = _through_the_contract(sorted(history_dir.rglob("events-*.jsonl.gz")))
    day = START + dt.timedelta(days=8)  # the stream's day: the history stops the day before
    before = history.filter(pl.col("event_date") < day)
    peak = dt.datetime.combine(day, dt.time(19), dt.UTC)
    now = [peak]
    stop = threading.Event()

    def clock() -> dt.datetime:  # dp's interval, from 19:00 to 20:00
        now[0] += dt.timedelta(seconds=5)
        if now[0] >= peak + dt.timedelta(hours=1):
            stop.set()
        return now[0]

    files = trickle(config, landing, interval=0, stop=stop, clock=clock).files
    stream = _through_the_contract(files)
    columns = list(DRIFT_FEATURES)
    reference = features.build_training_examples(before, days=sorted(set(before["event_date"]))[1:])

    def examples(events: pl.DataFrame, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
        frame = features.build_training_examples(events.unique("event_id", keep="first"), days=[day])
        return frame.filter(pl.col("example_time").is_between(start, end, closed="left"))

    def drifted(reference: pl.DataFrame, current: pl.DataFrame) -> list[str]:
        size_bucket = round(4 * math.log2(current.height)) / 4
        thresholds = drift.calibrate_thresholds(
            reference, time_column="event_date", columns=columns, current_size=round(2**size_bucket),
            rule="lognormal_tail",
        )  # fmt: skip
        results = drift.compare(reference.select(columns), current.select(columns), thresholds=thresholds)
        return [r.column for r in results if r.drifted]

    # The day so far, against the training window's same hours: nothing drifts.
    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    so_far = examples(pl.concat([before, stream]), midnight, now[0])
    assert so_far.height > 10_000
    assert drifted(reference.filter(pl.col("hour_of_day") < 20), so_far) == []
    # The live hour gets the verdict the history's own events of that hour get (the history holds the day
    # too): batch_drift's verdict on a slice of the day (one hour of day, whole sessions) is the history's.
    live_hour = examples(pl.concat([before, stream]), peak, now[0])
    history_hour = examples(history, peak, now[0])
    assert live_hour.height > 1_000
    assert drifted(reference, live_hour) == drifted(reference, history_hour)
