"""Benchmark `dataplatform.lib.drift` against plain scipy tests on a synthetic frame.

Run: PYTHONPATH=platform .venv/bin/python benchmarks/bench_drift.py [--rows 500000] [--columns 15]

The synthetic reference and current frames share every column's distribution except three
truly drifted ones (num_00: 0.25 sd mean shift, num_01: 1.5x spread, cat_00: mix change)
and one negligible change (num_04: 0.02 sd shift), which plain p-values flag at this size. Timings are the best
of ``--repeats`` runs. The baseline is what one writes without a cached reference: scipy's
ks_2samp per numeric column and chi2_contingency over raw value counts per categorical one.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from dataplatform.lib.drift import compare, summarize_reference

BATCH_ROWS = 10_000
BATCH_REPEAT_FACTOR = 10
ALPHA = 0.01


def numeric_column(rng: np.random.Generator, index: int, rows: int, drift: bool) -> np.ndarray:
    """A numeric column; its shape varies with the index (normal, skewed, ties, NaN/inf)."""
    shape = index % 4
    if shape == 0:
        values = rng.normal(10.0, 2.0, rows)
    elif shape == 1:
        values = rng.lognormal(3.0, 0.8, rows)
    elif shape == 2:
        values = rng.poisson(4.0, rows).astype(np.float64)
    else:
        values = rng.standard_t(5, rows)
        values[rng.random(rows) < 0.001] = np.nan
    if drift and index == 0:
        values = values + 0.25 * 2.0  # 0.25 sd mean shift
    if drift and index == 4:
        values = values + 0.02 * 2.0  # negligible 0.02 sd shift: significant at 500k rows, not drift
    if drift and index == 1:
        values = np.median(values) + 1.5 * (values - np.median(values))  # 1.5x spread
    return values


def categorical_column(rng: np.random.Generator, index: int, rows: int, drift: bool) -> pl.Series:
    """A string column: a 6-level mix, a 2,000-level Zipf-like column, or a boolean-like flag."""
    shape = index % 3
    if shape == 0:
        labels = np.array(["web", "ios", "android", "api", "partner", "batch"])
        probs = np.array([0.35, 0.25, 0.2, 0.1, 0.06, 0.04])
        if drift and index == 0:
            probs = np.array([0.2, 0.25, 0.35, 0.1, 0.06, 0.04])
    elif shape == 1:
        labels = np.array([f"sku_{i:04d}" for i in range(2_000)])
        probs = 1.0 / np.arange(1, 2_001) ** 0.9
    else:
        labels = np.array(["true", "false"])
        probs = np.array([0.7, 0.3])
    codes = rng.choice(labels.size, size=rows, p=probs / probs.sum())
    return pl.Series(labels).gather(codes)


def make_frame(rows: int, columns: int, seed: int, drift: bool) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n_numeric = math.ceil(columns * 0.6)
    data: dict[str, np.ndarray | pl.Series] = {}
    for i in range(n_numeric):
        data[f"num_{i:02d}"] = numeric_column(rng, i, rows, drift)
    for i in range(columns - n_numeric):
        data[f"cat_{i:02d}"] = categorical_column(rng, i, rows, drift)
    return pl.DataFrame(data)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def baseline(reference: pl.DataFrame, current: pl.DataFrame) -> dict[str, float]:
    """Plain scipy: ks_2samp on raw values; chi2_contingency on raw value counts."""
    p_values = {}
    for name, dtype in reference.schema.items():
        if dtype.is_numeric():
            ref = reference[name].to_numpy()
            cur = current[name].to_numpy()
            p_values[name] = stats.ks_2samp(ref[np.isfinite(ref)], cur[np.isfinite(cur)]).pvalue
        else:
            counts = (
                reference[name]
                .value_counts(name="ref")
                .join(current[name].value_counts(name="cur"), on=name, how="full", coalesce=True)
                .fill_null(0)
            )
            table = counts.select("ref", "cur").to_numpy().T
            p_values[name] = stats.chi2_contingency(table, correction=False).pvalue
    return p_values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--columns", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time both paths, print the tables, return the figures."""
    reference = make_frame(args.rows, args.columns, seed=1, drift=False)
    current = make_frame(args.rows, args.columns, seed=2, drift=True)
    batch = current.head(BATCH_ROWS)
    summary = summarize_reference(reference)

    full_ours = best_time(lambda: compare(summarize_reference(reference), current), args.repeats)
    full_base = best_time(lambda: baseline(reference, current), args.repeats)
    # A 10 ms figure moves by a millisecond with anything else the machine does: both sides of the batch
    # case get ten times the repeats.
    batch_repeats = BATCH_REPEAT_FACTOR * args.repeats
    batch_ours = best_time(lambda: compare(summary, batch), batch_repeats)
    batch_base = best_time(lambda: baseline(reference, batch), batch_repeats)

    print(
        f"rows={args.rows:,} columns={args.columns} batch={BATCH_ROWS:,} best of {args.repeats}"
        f" (the batch: best of {batch_repeats})"
    )
    print(f"{'case':<44}{'ours s':>9}{'scipy s':>9}{'scipy/ours':>12}")
    print(
        f"{'full: summarize_reference + compare':<44}{full_ours:>9.3f}{full_base:>9.3f}{full_base / full_ours:>12.1f}"
    )
    print(f"{'10k batch vs cached summary':<44}{batch_ours:>9.4f}{batch_base:>9.4f}{batch_base / batch_ours:>12.1f}")

    base_p = baseline(reference, current)
    print(f"\nfull comparison (default thresholds, alpha={ALPHA}); 'p<alpha' is what plain p-values flag")
    print(
        f"{'column':<8}{'method':<18}{'statistic':>11}{'p':>10}{'effect':>9}{'thresh':>8}{'p<alpha':>9}{'drifted':>9}"
    )
    full = compare(summary, current, alpha=ALPHA)
    for result in full:
        print(
            f"{result.column:<8}{result.method:<18}{result.statistic:>11.4g}{result.p_value:>10.2g}"
            f"{result.effect_size:>9.4f}{result.threshold:>8.3f}{base_p[result.column] < ALPHA!s:>9}"
            f"{result.drifted!s:>9}"
        )
    flagged = [r.column for r in compare(summary, batch, alpha=ALPHA) if r.drifted]
    print(f"\nflagged in the 10k batch: {', '.join(flagged) or 'none'}")
    return {
        "rows": args.rows,
        "columns": args.columns,
        "full_ours_s": full_ours,
        "full_scipy_s": full_base,
        "batch_ours_s": batch_ours,
        "batch_scipy_s": batch_base,
        "flagged_full": [r.column for r in full if r.drifted],
        "flagged_by_p_values": sorted(name for name, p in base_p.items() if p < ALPHA),
        "flagged_batch": flagged,
    }


def main() -> None:
    run(build_parser().parse_args())


if __name__ == "__main__":
    main()
