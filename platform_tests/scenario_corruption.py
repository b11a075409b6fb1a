"""Silent corruption inside the first training window, through the platform's real Dagster assets.

Streams from the same generated world: one without corruption, and for each author of corruption
one with about 15 % of the records of several days inside the first training window silently
corrupted (one kind a day; every record still passes the event contract). The first author is the
platform's own `lib/demo/silent.py`; the second, `platform_tests/silent_second_author.py`, was
written by someone who had not seen the detectors. Each day is certified, judged for
plausibility, compared with its reference (tier 2) and turned into examples, as the schedules do;
then the first model trains. The figures: which days the platform marks suspect and why, which
days the training gate leaves out, whether any training set holds a corrupted day, the share of
corrupted records each kind had marked, the false-positive share on clean days, and the first
model's holdout AUC (with its bootstrap interval) on both streams.

Run standalone at full scale (14 weeks of history before and after, as the retraining scenario):
    PYTHONPATH=platform python platform_tests/scenario_corruption.py --out test-artifacts/corruption
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

import silent_second_author
from dataplatform.defs.features.assets import training_examples
from dataplatform.defs.ingestion.assets import history_events
from dataplatform.defs.ml.assets import challenger_model, champion_model, training_set
from dataplatform.defs.quality.assets import event_distributions, warehouse_events
from dataplatform.defs.quality.plausibility import event_plausibility
from dataplatform.lib import suspects
from dataplatform.lib.demo import DemoConfig, generate_events, write_history
from dataplatform.lib.demo.silent import SilentKind, inject_silent
from factories import local_resources
from scenario_loop import materialize_or_fail

# Who wrote the corruption: the platform's own kinds (lib/demo/silent.py), or a second author who never
# saw the detectors (platform_tests/silent_second_author.py).
AUTHORS: dict[str, tuple[Callable[..., pl.DataFrame], tuple[str, ...]]] = {
    "first": (inject_silent, tuple(SilentKind)),
    "second": (silent_second_author.inject, silent_second_author.KINDS),
}

START = dt.date(2026, 1, 5)
RETRAIN = [training_set, challenger_model, champion_model]
DAILY = [warehouse_events, event_plausibility, event_distributions, training_examples]


def scales() -> dict[str, dict[str, Any]]:
    """The suite's small run and the standalone full one (first training after the 28-day windows fill)."""
    return {
        "small": {"days": 31, "events_per_day": 1200, "users": 400, "corrupted": [16, 18, 20, 22, 24]},
        "full": {"days": 47, "events_per_day": 1500, "users": 500, "corrupted": [30, 32, 34, 36, 38, 40]},
    }


def run_stream(
    root: Path, *, corrupted: list[int], days: int, events_per_day: int, users: int, author: str, kinds: list[str]
) -> dict[str, Any]:
    """One stream up to its first training; `corrupted` day indexes get silent corruption."""
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    frame, _ = generate_events(DemoConfig(start=START, days=days, users=users, events_per_day=events_per_day, seed=21))
    frame = frame.filter(pl.col("corruption").is_null())  # the contract's corruption is another test's business
    bad_days = [START + dt.timedelta(days=i) for i in corrupted]
    inject = AUTHORS[author][0]
    frame = inject(frame, bad_days, kinds=kinds, seed=3) if bad_days else frame.with_columns(silent=None)
    write_history(frame.drop("silent"), root / "history", fmt="parquet")
    resources = local_resources(root)
    with dg.instance_for_test() as instance:
        last = str(START + dt.timedelta(days=days - 1))
        materialize_or_fail([history_events], resources, instance, tags={
            "dagster/asset_partition_range_start": str(START), "dagster/asset_partition_range_end": last,
        })  # fmt: skip
        for i in range(days):
            materialize_or_fail(DAILY, resources, instance, partition_key=str(START + dt.timedelta(days=i)))
        run = materialize_or_fail(RETRAIN, resources, instance)
    gate = next(c for c in run.get_asset_check_evaluations() if c.check_name == "training_data_gate")
    card = resources["models"].registry().champion()
    with resources["lakehouse"].connect() as con:
        suspect = suspects.suspect_days(con, START, START + dt.timedelta(days=days))
        marked = con.sql("SELECT event_id, event_date, reasons FROM suspect_events").pl()
        sets = con.sql("SELECT fingerprint, train_days, holdout_days FROM training_sets").pl()
        events_per_day_held = dict(con.sql("SELECT event_date, count(*) FROM events GROUP BY ALL").fetchall())
    truth = frame.select("event_id", "event_date", "silent")
    return {
        "bad_days": [str(d) for d in bad_days],
        "suspect_days": {str(d): why for d, why in sorted(suspect.items())},
        "excluded_days": gate.metadata["excluded_days"].value if gate else {},
        "gate_passed": gate.passed,
        "training_sets": [
            {"train": [str(d) for d in r["train_days"]], "holdout": [str(d) for d in r["holdout_days"]]}
            for r in sets.iter_rows(named=True)
        ],
        "champion": card.version if card else None,
        "auc": card.metrics["holdout"]["auc"] if card else None,
        "auc_ci": card.metrics["holdout"]["auc_ci"] if card else None,
        "detection": detection(truth, marked, bad_days, events_per_day_held),
        "kind_of_day": {str(d): kinds[i % len(kinds)] for i, d in enumerate(sorted(bad_days))},
        "seconds": round(time.perf_counter() - started),
    }


def detection(
    truth: pl.DataFrame, marked: pl.DataFrame, bad_days: list[dt.date], held: dict[dt.date, int]
) -> dict[str, Any]:
    """Per kind, the share of its corrupted records marked implausible; and on clean days the share marked."""
    hits = truth.join(marked.select("event_id"), on="event_id", how="semi")
    per_kind = {}
    for kind in truth["silent"].drop_nulls().unique().sort().to_list():
        corrupted = truth.filter(pl.col("silent") == kind)
        per_kind[kind] = {
            "corrupted": corrupted.height,
            "marked_share": round(hits.filter(pl.col("silent") == kind).height / max(corrupted.height, 1), 4),
        }
    clean_days = [d for d in held if d not in bad_days]
    clean_marked = marked.filter(pl.col("event_date").is_in(clean_days)).height
    clean_on_bad_days = hits.filter(pl.col("silent").is_null() & pl.col("event_date").is_in(bad_days)).height
    return {
        "per_kind": per_kind,
        "false_positive_share_clean_days": round(clean_marked / max(sum(held[d] for d in clean_days), 1), 6),
        "clean_records_marked_on_corrupted_days": clean_on_bad_days,
    }


def run_streams(root: Path, scale: str, authors: list[str], kinds: list[str] | None = None) -> dict[str, Any]:
    """The clean stream and one corrupted twin per author, two processes at a time (spawned: see
    scenario_loop.run_both). `kinds` defaults to all of each author's."""
    options = dict(scales()[scale])
    corrupted = options.pop("corrupted")
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        clean = pool.submit(run_stream, root / "clean", corrupted=[], author=authors[0], kinds=[], **options)
        dirty = {
            author: pool.submit(
                run_stream, root / author, corrupted=corrupted, author=author,
                kinds=list(kinds or AUTHORS[author][1]), **options,
            )
            for author in authors
        }  # fmt: skip
        return {
            "scale": scale,
            "clean": clean.result(timeout=3600),
            **{author: {"kinds": list(kinds or AUTHORS[author][1]), **run.result(timeout=3600)}
               for author, run in dirty.items()},
        }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("test-artifacts/corruption"))
    parser.add_argument("--scale", choices=sorted(scales()), default="full")
    parser.add_argument("--authors", default=",".join(AUTHORS), help="who wrote the corruption (comma-separated)")
    parser.add_argument("--kinds", help="comma-separated silent kinds, one per day (default: all of each author's)")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",") if args.kinds else None
    figures = run_streams(args.out / "work", args.scale, args.authors.split(","), kinds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
    print(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
