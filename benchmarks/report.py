"""Run every benchmark and write one Markdown report: benchmarks/REPORT.md.

Run: PYTHONPATH=platform .venv/bin/python benchmarks/report.py [--quick] [--only ingest,drift,...] [--out FILE]
(`./dp bench` runs this.) --quick uses small sizes for a CI smoke run (under 2 minutes on a quiet
2-core machine) and writes benchmarks/REPORT.quick.md instead (git-ignored).

Each benchmark script stays runnable on its own; here each one's `run(args)` is called with the
sizes below and returns its figures. Every baseline is measured in the same run, except where the
table says otherwise (the latency floor in --quick mode is the earlier recorded one, and feature
building has no baseline).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import bench_blast_radius
import bench_definitions
import bench_drift
import bench_ingest
import bench_latency
import bench_training
from _common import percentile

HERE = Path(__file__).resolve().parent
PACKAGES = ("dagster", "polars", "duckdb", "pyarrow", "pandera", "scikit-learn", "scipy", "numpy")

# argv for each benchmark's own parser: the full report and the CI smoke run.
SIZES: dict[str, dict[str, list[str]]] = {
    "full": {
        "ingest": ["--events", "2000000", "--files", "40", "--validator-rows", "200000"],
        "drift": ["--rows", "500000", "--columns", "15", "--repeats", "3"],
        "training": ["--events", "1120000", "--train-rows", "1000000"],
        "latency": ["--files", "20", "--interval", "4"],
        "blast_radius": ["--events", "10000000", "--days", "90"],
        "definitions": ["--repeats", "5"],
    },
    "quick": {
        "ingest": ["--events", "20000", "--files", "8", "--validator-rows", "5000"],
        "drift": ["--rows", "20000", "--columns", "15", "--repeats", "1"],
        "training": ["--events", "40000", "--train-rows", "30000"],
        "latency": ["--files", "3", "--interval", "2", "--skip-floor", "--timeout-extra", "60"],
        "blast_radius": ["--events", "200000", "--days", "30", "--repeats", "1"],
        "definitions": ["--repeats", "1"],
    },
}
MODULES: dict[str, Any] = {
    "ingest": bench_ingest,
    "drift": bench_drift,
    "training": bench_training,
    "latency": bench_latency,
    "blast_radius": bench_blast_radius,
    "definitions": bench_definitions,
}


def load_1min() -> float:
    return os.getloadavg()[0]


def machine_line() -> str:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return f"{os.cpu_count()} cpus ({platform.machine()}), python {sys.version.split()[0]}, {', '.join(versions)}"


# ---------------------------------------------------------------------------------------------
# Rows of the table: (figure, value, baseline, ratio, machine)
# ---------------------------------------------------------------------------------------------

Row = tuple[str, str, str, str, str]


def _ratio(value: float, baseline: float | None) -> str:
    return f"{value / baseline:.2f}" if baseline else "—"


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _versus(figure: str, value: float, baseline: float, digits: int, machine: str) -> Row:
    """A row of a value against its baseline, both with `digits` decimals."""
    return (figure, _num(value, digits), _num(baseline, digits), _ratio(value, baseline), machine)


def ingest_rows(result: dict[str, Any], machine: str) -> list[Row]:
    rows: list[Row] = []
    for fmt, measured in result.items():
        r = measured["results"]
        ours, plain, validator, subset = r["ours"], r["baseline"], r["validator"], r["subset"]
        rate = {name: x["rows"] / x["seconds"] for name, x in r.items()}
        size = f"{ours['rows']:,} events, {fmt}, {ours['batches']} batch(es)"
        rows += [
            (
                f"ingest rows/s ({size}) vs plain Polars, no validation",
                _num(rate["ours"]),
                _num(rate["baseline"]),
                _ratio(rate["ours"], rate["baseline"]),
                machine,
            ),
            _versus(
                f"validation s ({fmt}: read + contract + in-batch dedup; the validator's {validator['rows']:,} rows)"
                " vs per-record Python validator, same rows",
                subset["phases"]["read"] + subset["phases"]["transform"],
                validator["seconds"],
                2,
                machine,
            ),
            _versus(
                f"whole ingest s ({fmt}: validation + lake write + warehouse merge + audit; same rows)"
                " vs per-record Python validator",
                subset["seconds"],
                validator["seconds"],
                2,
                machine,
            ),
            (
                f"ingest peak RSS MiB ({fmt}) vs plain Polars",
                _num(ours["peak_mib"]),
                _num(plain["peak_mib"]),
                _ratio(ours["peak_mib"], plain["peak_mib"]),
                machine,
            ),
        ]
    return rows


def drift_rows(result: dict[str, Any], machine: str) -> list[Row]:
    size = f"{result['rows']:,} rows x {result['columns']} columns"
    return [
        _versus(
            f"drift: summarize + compare, s ({size}) vs scipy ks_2samp / chi2_contingency",
            result["full_ours_s"],
            result["full_scipy_s"],
            3,
            machine,
        ),
        _versus(
            "drift: 10k batch vs cached reference summary, s, vs scipy",
            result["batch_ours_s"],
            result["batch_scipy_s"],
            4,
            machine,
        ),
        (
            "drift: columns flagged (3 truly drifted: num_00, num_01, cat_00) vs plain p < 0.01",
            ", ".join(result["flagged_full"]) or "none",
            ", ".join(result["flagged_by_p_values"]) or "none",
            "—",
            machine,
        ),
    ]


def training_rows(result: dict[str, Any], machine: str) -> list[Row]:
    feats, train, bare = result["features"], result["train"], result["bare"]
    size = f"{feats['events']:,} events -> {feats['examples']:,} examples"
    return [
        (
            f"features: build_training_examples events/s ({size})",
            _num(feats["events"] / feats["seconds"]),
            "none (no baseline)",
            "—",
            machine,
        ),
        ("features: peak RSS MiB", _num(feats["peak_mib"]), "none (no baseline)", "—", machine),
        (
            f"train_model s ({train['rows']:,} examples, 33 features, n_threads=1) vs bare HistGradientBoosting fit",
            _num(train["seconds"], 1),
            _num(bare["seconds"], 1),
            _ratio(train["seconds"], bare["seconds"]),
            machine,
        ),
        (
            f"train_model s per boosting round ({train['rounds']} vs {bare['rounds']} rounds, early stopping)",
            _num(train["seconds"] / max(train["rounds"], 1), 3),
            _num(bare["seconds"] / max(bare["rounds"], 1), 3),
            _ratio(train["seconds"] / max(train["rounds"], 1), bare["seconds"] / max(bare["rounds"], 1)),
            machine,
        ),
        (
            "train_model peak RSS MiB vs bare fit",
            _num(train["peak_mib"]),
            _num(bare["peak_mib"]),
            _ratio(train["peak_mib"], bare["peak_mib"]),
            machine,
        ),
    ]


def latency_rows(result: dict[str, Any], machine: str) -> list[Row]:
    queryable, floor = result["queryable"], result["floor"]
    seen = f"{len(queryable)}/{result['files']} files"
    if floor:
        floor_p50, floor_p95 = percentile(floor, 50), percentile(floor, 95)
        label = "Dagster floor this run (one-op sensor job)"
    else:
        floor_p50, floor_p95 = result["recorded_floor"]["p50"], result["recorded_floor"]["p95"]
        label = "Dagster floor recorded earlier, not this run"
    if not queryable:
        return [(f"latency: file landed -> rows queryable ({seen})", "nothing seen", label, "—", machine)]
    p50, p95 = percentile(queryable, 50), percentile(queryable, 95)
    return [
        (
            f"latency {name} s, file landed -> rows queryable ({seen}) vs {label}",
            _num(v, 1),
            _num(f, 1),
            _ratio(v, f),
            machine,
        )
        for name, v, f in (("p50", p50, floor_p50), ("p95", p95, floor_p95))
    ]


def blast_radius_rows(result: dict[str, Any], machine: str) -> list[Row]:
    size = f"{result['events']:,} events, {result['days']} days"
    return [
        (
            f"blast radius s, {name} ({size}; {r['records']:,} records, {r['feature_days']} feature days, "
            f"{r['training_sets']} sets) vs the selection query alone",
            _num(r["radius_seconds"], 2),
            _num(r["select_seconds"], 2),
            _ratio(r["radius_seconds"], r["select_seconds"]),
            machine,
        )
        for name, r in result.items()
        if isinstance(r, dict)
    ]


def definitions_rows(result: dict[str, Any], machine: str) -> list[Row]:
    figure = f"code location load s, fresh process (median of {result['repeats']}) vs import dagster + dagster_aws.s3"
    return [_versus(figure, result["ours_s"], result["baseline_s"], 2, machine)]


ROWS: dict[str, Callable[[dict[str, Any], str], list[Row]]] = {
    "ingest": ingest_rows,
    "drift": drift_rows,
    "training": training_rows,
    "latency": latency_rows,
    "blast_radius": blast_radius_rows,
    "definitions": definitions_rows,
}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def run_all(mode: str, only: list[str]) -> tuple[list[Row], dict[str, Any], dict[str, float]]:
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name in only:
        module, argv = MODULES[name], SIZES[mode][name]
        load = load_1min()
        machine = f"{os.cpu_count()} cpus, load {load:.2f}"
        print(f"\n=== {name}: {module.__name__}.py {' '.join(argv)} ({machine}) ===", flush=True)
        started = time.perf_counter()
        result = module.run(module.build_parser().parse_args(argv))
        seconds[name] = time.perf_counter() - started
        raw[name] = result
        rows += ROWS[name](result, machine)
    return rows, raw, seconds


def markdown(
    mode: str, rows: list[Row], raw: dict[str, Any], seconds: dict[str, float], started_at: str, load: tuple
) -> str:
    lines = [
        f"# Benchmark report{' (quick)' if mode == 'quick' else ''}",
        "",
        f"Date: {started_at}. Command: `PYTHONPATH=platform python benchmarks/report.py"
        f"{' --quick' if mode == 'quick' else ''}` (`./dp bench`).",
        "",
        f"Machine: {machine_line()}; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        " (1/5/15 min). The machine column gives the 1-minute load when each benchmark started:"
        " a load above the core count means other work shared the cores and slowed every path alike.",
        "",
        "ratio = value ÷ baseline (for seconds and MiB lower is better for us, for rows/s higher).",
        "",
        "| figure | value | baseline | ratio | machine |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += [
        "",
        "## What each figure measures",
        "",
        "- **ingest** (`bench_ingest.py`): demo events with 1 % corruption written as landing files; `ingest_batch`"
        " over the sensor's default batches (<= 200 files, <= 256 MiB) into a fresh lake and DuckDB file, against"
        " plain Polars reading the same batches and writing date-partitioned Parquet with no validation, and a"
        " per-record Python validator of the same rules in the seed's style (first failed rule as the reason,"
        " valid and quarantined records written), run on the first files; ours runs again on exactly those files,"
        " and its read + transform phases (the validation) and its whole ingest are compared with the validator on"
        " the same rows. Each path in its own process (peak RSS is its own).",
        "- **drift** (`bench_drift.py`): `summarize_reference` + `compare` against scipy's `ks_2samp` and"
        " `chi2_contingency` on raw values, best of the repeats; and which columns each flags.",
        "- **features / training** (`bench_training.py`): `build_training_examples` over every day of clean demo"
        " events (no baseline: a second, naive implementation of 33 point-in-time features is not written; the"
        " exactness tests are the reference); `train_model(n_threads=1)` against scikit-learn's"
        " `HistGradientBoostingClassifier.fit` alone with the same hyperparameters and one thread on the same rows"
        " (category and brand as integer codes). `train_model` fits the booster on 80 % of the rows (the other 20 %"
        " calibrate it and set the threshold), the bare fit on all of them: a ratio below 1 means encoding,"
        " calibration and threshold cost less than the 20 % of rows saved.",
        "- **latency** (`bench_latency.py`): the real `dagster-daemon` with the platform's workspace, one JSONL file"
        " landing every few seconds, time until its rows are queryable in DuckDB; the floor is a one-op in-process"
        " job started by a sensor under the same daemon settings.",
        "- **blast radius** (`bench_blast_radius.py`): `blast_radius` on a synthetic DuckDB warehouse with the"
        " lineage a platform that built it holds (example inputs per feature day, weekly training sets and"
        " models, daily reports, one lake file per day and batch), for one batch and for a predicate over every"
        " day; the baseline is the selection query alone, so the ratio is what following the lineage adds.",
        "- **definitions** (`bench_definitions.py`): a fresh interpreter importing the code location and building"
        " its definitions, as every run process does, against importing `dagster` and `dagster_aws.s3` alone.",
        "",
        "Wall time per benchmark (s): " + ", ".join(f"{name} {s:.0f}" for name, s in seconds.items()) + ".",
        "",
        "<details><summary>Raw figures (JSON)</summary>",
        "",
        "```json",
        json.dumps(raw, indent=1, default=str),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; writes REPORT.quick.md")
    parser.add_argument("--only", default=",".join(MODULES), help=f"comma-separated subset of {','.join(MODULES)}")
    parser.add_argument("--out", help="report file (default: benchmarks/REPORT.md, or REPORT.quick.md with --quick)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := sorted(set(only) - set(MODULES)):
        parser.error(f"unknown benchmarks {unknown}")
    out = Path(args.out) if args.out else HERE / ("REPORT.quick.md" if args.quick else "REPORT.md")

    load = os.getloadavg()
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"machine: {machine_line()}\nload average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    started = time.perf_counter()
    rows, raw, seconds = run_all(mode, only)
    out.write_text(markdown(mode, rows, raw, seconds, started_at, load))
    print(f"\nwrote {out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
