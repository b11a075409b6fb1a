"""Benchmark the blast-radius query (`dataplatform.lib.blast_radius`) on a large warehouse.

Run: PYTHONPATH=platform .venv/bin/python benchmarks/bench_blast_radius.py [--events 10000000] [--days 90]

A DuckDB warehouse of synthetic events (`--days` days, 24 batches a day, one producer folder per
batch), the lineage a platform that built them would hold (one example-inputs file per feature day
covering its 28-day lookback and next-day labels, a training set per week, a model per set, drift and
performance reports per day) and one small lake file per (day, batch). Two questions an incident
asks: one batch, and a predicate over every day (`price > ...`, about 0.5 % of the records). The
baseline is the selection alone (`select_records`, the same SQL): the ratio is what following the
lineage adds to finding the records.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from dataplatform.lib import featurestore, warehouse
from dataplatform.lib.blast_radius import Predicate, Selection, blast_radius, select_records
from dataplatform.lib.lake import Lake
from dataplatform.lib.registry import ModelCard

START = dt.date(2026, 1, 1)
BATCHES_PER_DAY = 24
LOOKBACK_DAYS = 28

EVENTS_SQL = """
INSERT INTO events
SELECT 'e' || i, 'u' || (i % 200000), ts,
       CASE WHEN i % 20 = 0 THEN 'purchase' WHEN i % 7 = 0 THEN 'cart' ELSE 'view' END,
       i % 50000, 'cat' || (i % 40), 'brand' || (i % 300), (i * 7919 % 100000) / 100.0, 's' || (i // 12), NULL,
       'producer-' || (b % ?) || '/file-' || b || '.jsonl', i + 1, CAST(ts AS DATE), 'b' || b, now()
FROM (
    SELECT i, i * ? // ? AS b, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i * ?) AS ts FROM range(?) t(i)
)
"""


def build(root: Path, events: int, days: int) -> tuple[Lake, list[ModelCard]]:
    lake = Lake.local(root / "lake")
    step_us = days * 86_400_000_000 // events
    batches = days * BATCHES_PER_DAY
    with warehouse.connect(root / "wh.duckdb") as con:
        con.execute(EVENTS_SQL, [BATCHES_PER_DAY, batches, events, step_us, events])
        pairs = con.sql("SELECT DISTINCT event_date, batch_id FROM events ORDER BY ALL").pl()
        day_list = [START + dt.timedelta(days=d) for d in range(days)]
        for day in day_list:  # the lake files the report lists (their content is not read)
            for batch in pairs.filter(pl.col("event_date") == day)["batch_id"]:
                lake.write_parquet(Lake.event_key(day, batch), pl.DataFrame({"event_id": ["x"]}))
        counts = pairs.with_columns(pl.lit(1000, dtype=pl.UInt32).alias("events"))
        for day in day_list:
            window = counts.filter(
                pl.col("event_date").is_between(day - dt.timedelta(days=LOOKBACK_DAYS), day + dt.timedelta(days=1))
            )
            inputs = window.select(pl.lit(day).alias("feature_day"), pl.col("event_date").alias("input_day"),
                                   "batch_id", "events")  # fmt: skip
            featurestore.write_example_inputs(lake, day, inputs)
        cards = []
        for week, end in enumerate(day_list[16::7]):
            train = [end - dt.timedelta(days=i) for i in range(16, 2, -1)]
            holdout = [end - dt.timedelta(days=i) for i in (2, 1)]
            fingerprint = f"set{week:04d}"
            con.execute(
                "INSERT INTO training_sets VALUES (?, ?, ?, [], 1, 1, NULL, now())", [fingerprint, train, holdout]
            )
            cards.append(_card(f"v{week:04d}", fingerprint, train))
        for table in ("drift_reports", "model_performance"):  # the columns the report reads; the rest stay null
            con.execute(
                f"INSERT INTO {table} (event_date, champion) SELECT unnest(?::DATE[]), ?", [day_list, cards[-1].version]
            )
    return lake, cards


def _card(version: str, fingerprint: str, train: list[dt.date]) -> ModelCard:
    window = {"start": str(train[0]), "end": str(train[-1])}
    return ModelCard(version, "", window, fingerprint, [], [], {}, {}, "", 0, None, "", {})


def _timed(call: Any, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best, result


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        lake, cards = build(root, args.events, args.days)
        build_seconds = time.perf_counter() - started
        middle = START + dt.timedelta(days=args.days // 2)
        selections = {
            "one batch": Selection(batch_ids=(f"b{args.days // 2 * BATCHES_PER_DAY + 5}",)),
            "predicate on every day": Selection(where=(Predicate.parse("price > 995"),)),
        }
        figures: dict[str, Any] = {"events": args.events, "days": args.days, "build_seconds": build_seconds}
        with warehouse.connect(root / "wh.duckdb") as con:
            for name, selection in selections.items():
                radius_s, radius = _timed(
                    lambda s=selection: blast_radius(con, lake, s, cards, cards[-1].version), args.repeats
                )
                select_s, _ = _timed(lambda s=selection: select_records(con, s), args.repeats)
                figures[name] = {
                    "radius_seconds": radius_s,
                    "select_seconds": select_s,
                    "records": radius.records,
                    "feature_days": len(radius.feature_days),
                    "training_sets": len(radius.training_sets),
                    "champion_affected": radius.champion_affected,
                }
                print(
                    f"{name:<24} records {radius.records:>9,}  feature days {len(radius.feature_days):>3}  "
                    f"sets {len(radius.training_sets):>2}  radius {radius_s:6.2f} s  selection alone {select_s:6.2f} s"
                )
        figures["middle_day"] = str(middle)
    return figures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    return parser


if __name__ == "__main__":
    run(build_parser().parse_args())
