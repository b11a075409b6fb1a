"""Benchmark feature building and model training on demo events.

Run: PYTHONPATH=platform .venv/bin/python benchmarks/bench_training.py [--events 1120000] [--train-rows 1000000]
     [--workdir DIR]

N demo events over 14 days (clean, 50,000 users, 5,000 products; generator time reported apart,
not part of any figure) are written as Parquet. Each measured path then runs in its own child
process (its peak RSS, VmHWM, is its own; it includes the input frame):
  features   `build_training_examples` over every day of the events (one example per view, 33
             point-in-time features and the label); events/s and examples/s. No baseline: a naive
             Polars rolling/asof rewrite of the same features is not attempted (the exactness tests
             in platform_tests/test_features.py are the reference, not a second implementation);
  train      `train_model(..., n_threads=1)` on the first --train-rows examples: encoding, fit on
             80 % with early stopping, Platt calibration and threshold on the other 20 %;
  bare       the baseline: scikit-learn's HistGradientBoostingClassifier alone with the same
             hyperparameters and 1 OpenMP thread, `fit` on the same rows (category and brand as
             integer codes, no calibration slice, no threshold). Rounds can differ (early
             stopping), so seconds per round are reported too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from _common import load_line, machine_line, peak_rss_mib
from dataplatform.lib.demo import DemoConfig, generate_events
from dataplatform.lib.features import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    REQUIRED_EVENT_COLUMNS,
    build_training_examples,
)
from dataplatform.lib.training import DEFAULT_PARAMS, train_model

PATHS = ("features", "train", "bare")
PLATFORM_DIR = Path(__file__).resolve().parents[1] / "platform"
DAYS = 14
GENERATION_HEADROOM = 1.1  # the generator's days differ in volume: generate more, keep the first N


def make_events(path: Path, events: int) -> dict[str, Any]:
    start = time.perf_counter()
    config = DemoConfig(
        start=dt.date(2026, 3, 1),
        days=DAYS,
        users=50_000,
        products=5_000,
        events_per_day=math.ceil(events * GENERATION_HEADROOM / DAYS),
        seed=13,
    )
    frame = generate_events(config).frame.sort("timestamp").head(events).select(REQUIRED_EVENT_COLUMNS)
    if frame.height < events:
        raise SystemExit(f"generator gave {frame.height} rows, fewer than --events {events}")
    frame.write_parquet(path)
    return {"events": frame.height, "generate_seconds": time.perf_counter() - start}


def run_features(workdir: Path) -> dict[str, Any]:
    events = pl.read_parquet(workdir / "events.parquet")
    days = sorted(events["timestamp"].dt.date().unique().to_list())
    start = time.perf_counter()
    examples = build_training_examples(events, days=days)
    seconds = time.perf_counter() - start
    examples.write_parquet(workdir / "examples.parquet")
    return {
        "events": events.height,
        "examples": examples.height,
        "days": len(days),
        "label_rate": float(examples["label"].mean() or 0.0),
        "seconds": seconds,
    }


def run_train(workdir: Path, rows: int) -> dict[str, Any]:
    frame = pl.read_parquet(workdir / "examples.parquet").head(rows)
    start = time.perf_counter()
    model = train_model(
        frame, feature_columns=FEATURE_COLUMNS, categorical_columns=CATEGORICAL_FEATURES, n_threads=1, seed=0
    )
    return {"rows": frame.height, "seconds": time.perf_counter() - start, "rounds": model.n_iter}


def run_bare(workdir: Path, rows: int) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    frame = pl.read_parquet(workdir / "examples.parquet").head(rows)
    X = frame.select(
        pl.col(c).cast(pl.Categorical).to_physical().cast(pl.Float64)
        if c in CATEGORICAL_FEATURES
        else pl.col(c).cast(pl.Float64)
        for c in FEATURE_COLUMNS
    ).to_numpy()
    y = frame["label"].to_numpy()
    start = time.perf_counter()
    booster = HistGradientBoostingClassifier(**DEFAULT_PARAMS, random_state=0)
    with threadpool_limits(limits=1, user_api="openmp"):
        booster.fit(X, y)
    return {"rows": frame.height, "seconds": time.perf_counter() - start, "rounds": int(booster.n_iter_)}


def run_child(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    if args.only == "features":
        result = run_features(workdir)
    elif args.only == "train":
        result = run_train(workdir, args.train_rows)
    else:
        result = run_bare(workdir, args.train_rows)
    result["peak_mib"] = peak_rss_mib()
    (workdir / f"result-{args.only}.json").write_text(json.dumps(result))


def measure(path: str, workdir: Path, train_rows: int) -> dict[str, Any]:
    """Run one path in a fresh child process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLATFORM_DIR), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, __file__, "--only", path, "--workdir", str(workdir), "--train-rows", str(train_rows)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{path} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads((workdir / f"result-{path}.json").read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_120_000, help="demo events (about 90 %% are views)")
    parser.add_argument("--train-rows", type=int, default=1_000_000, help="examples to train on (at most)")
    parser.add_argument("--workdir", help="kept when given; default: a temp dir removed afterwards")
    parser.add_argument("--only", choices=PATHS, help=argparse.SUPPRESS)
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate, measure the three paths, print the table, return the figures."""
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_training-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        generated = make_events(workdir / "events.parquet", args.events)
        results = {path: measure(path, workdir, args.train_rows) for path in PATHS}
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    feats, train, bare = results["features"], results["train"], results["bare"]
    print(
        f"{feats['events']:,} demo events over {feats['days']} days"
        f" (generated in {generated['generate_seconds']:.1f} s, not in any figure)"
        f" -> {feats['examples']:,} examples, label rate {feats['label_rate']:.3f}"
    )
    print(f"{'path':<10}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'rounds':>8}{'s/round':>9}{'peak MiB':>10}")
    print(
        f"{'features':<10}{feats['events']:>12,}{feats['seconds']:>10.2f}{feats['events'] / feats['seconds']:>12,.0f}"
        f"{'':>8}{'':>9}{feats['peak_mib']:>10,.0f}   (events in; no baseline)"
    )
    for name, r in (("train", train), ("bare", bare)):
        print(
            f"{name:<10}{r['rows']:>12,}{r['seconds']:>10.2f}{r['rows'] / r['seconds']:>12,.0f}{r['rounds']:>8}"
            f"{r['seconds'] / max(r['rounds'], 1):>9.3f}{r['peak_mib']:>10,.0f}"
        )
    print(f"train_model / bare booster: {train['seconds'] / bare['seconds']:.2f}x the time")
    return {"generated": generated, **results}


def main() -> None:
    args = build_parser().parse_args()
    if args.only:
        run_child(args)
        return
    print(machine_line())
    print(load_line())
    run(args)


if __name__ == "__main__":
    main()
