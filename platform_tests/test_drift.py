"""Tests for dataplatform.lib.drift: statistics against scipy, verdicts, calibration, edge cases."""

from __future__ import annotations

import datetime as dt
import json
import math
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from dataplatform.lib import drift
from dataplatform.lib.drift import (
    ColumnDrift,
    Thresholds,
    calibrate_thresholds,
    compare,
    summarize_reference,
)

DAY = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def compare_one(reference: pl.DataFrame, current: pl.DataFrame, **kwargs: object) -> ColumnDrift:
    (result,) = compare(reference, current, **kwargs)  # type: ignore[arg-type]
    return result


def numeric_pair(a: np.ndarray, b: np.ndarray) -> ColumnDrift:
    """The kernel on every reference value (no subset), for comparison with scipy."""
    summary = summarize_reference(pl.DataFrame({"x": a}), max_numeric_values=None)
    return compare_one(summary, pl.DataFrame({"x": b}))


def zipf_labels(rng: np.random.Generator, levels: int, size: int) -> pl.Series:
    probs = 1.0 / np.arange(1, levels + 1) ** 0.9
    codes = rng.choice(levels, size=size, p=probs / probs.sum())
    return pl.Series([f"sku_{i:04d}" for i in range(levels)]).gather(codes)


def daily_history(rng: np.random.Generator, days: int, rows: int, jitter: np.ndarray | None = None) -> pl.DataFrame:
    """`days` windows of `rows` rows; `jitter` shifts each day's mean (natural day-to-day variation)."""
    shifts = np.zeros(days) if jitter is None else jitter
    return pl.DataFrame(
        {
            "ts": pl.Series([DAY + dt.timedelta(days=d, hours=1) for d in range(days)]).gather(
                np.repeat(np.arange(days), rows)
            ),
            "x": rng.normal(size=days * rows) + np.repeat(shifts, rows),
            "channel": rng.choice(["web", "ios", "android", "api"], size=days * rows, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


# --------------------------------------------------------------------------- statistics vs scipy


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_ks_and_wasserstein_match_scipy_on_small_inputs(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = rng.integers(1, 300, size=2)
    a, b = rng.normal(size=n1), rng.normal(0.2, 1.3, size=n2)
    if ties:
        a, b = np.round(a * 2), np.round(b * 2)
    result = numeric_pair(a, b)
    expected = stats.ks_2samp(a, b)
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)
    assert result.wasserstein == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-12)
    json.dumps(result.to_dict())


def test_ks_asymptotic_p_value_matches_scipy_beyond_exact_range() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=20_000), rng.normal(0.04, size=3_000)  # max n > 10,000: scipy goes asymptotic
    result = numeric_pair(a, b)
    expected = stats.ks_2samp(a, b)
    assert result.statistic == expected.statistic
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)


@pytest.mark.parametrize("shift", [0.0, 0.03, 0.05, 0.1])
def test_ks_limiting_p_value_stays_close_to_scipy_at_large_n(shift: float) -> None:
    # Effective n 6,667 > 5,000: the limiting distribution replaces scipy's O(n) kstwo.
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=20_000), rng.normal(shift, size=10_000)
    result = numeric_pair(a, b)
    expected = stats.ks_2samp(a, b)
    assert result.statistic == expected.statistic
    assert result.p_value == pytest.approx(expected.pvalue, rel=0.07)
    if expected.pvalue > 1e-3:
        assert result.p_value == pytest.approx(expected.pvalue, rel=3e-3)


def test_kernel_matches_scipy_across_blocks_with_ties() -> None:
    rng = np.random.default_rng(8)
    a = np.round(rng.normal(size=150_000), 2)  # > one 65,536-value block, many ties
    b = np.round(rng.normal(0.01, 1.1, size=140_000), 2)
    result = numeric_pair(a, b)
    assert result.statistic == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert result.wasserstein == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


samples = st.lists(
    st.one_of(st.integers(-4, 4).map(float), st.floats(-1e3, 1e3, allow_nan=False)), min_size=1, max_size=40
)


@pytest.mark.filterwarnings("ignore:ks_2samp:RuntimeWarning")  # scipy's own exact->asymp notice
@settings(max_examples=150, deadline=None)
@given(a=samples, b=samples, block=st.sampled_from([1, 2, 3, 65_536]))
def test_property_ks_d_and_w1_equal_scipy(a: list[float], b: list[float], block: int) -> None:
    # Tiny blocks exercise the block seams of the kernel on arbitrary, tie-heavy inputs.
    with mock.patch.object(drift, "_BLOCK", block):
        result = numeric_pair(np.array(a), np.array(b))
    assert result.statistic is not None and 0.0 <= result.statistic <= 1.0
    assert result.statistic == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert result.wasserstein == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-9)
    assert result.p_value is not None and 0.0 <= result.p_value <= 1.0


def test_chi2_js_cramers_v_match_scipy() -> None:
    ref = ["a"] * 500 + ["b"] * 300 + ["c"] * 200
    cur = ["a"] * 200 + ["b"] * 350 + ["c"] * 50 + ["d"] * 100  # "d" unseen: its own cell, enough rows
    result = compare_one(pl.DataFrame({"c": ref}), pl.DataFrame({"c": cur}))
    table = np.array([[500, 300, 200, 0], [200, 350, 50, 100]])
    expected = stats.chi2_contingency(table, correction=False)
    assert result.method == "chi2_contingency"
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    # Two tests ran (the mix, and vanished categories, of which there are none): Bonferroni.
    assert result.p_value == pytest.approx(min(1.0, 2 * expected.pvalue), rel=1e-9)
    assert result.vanished_categories == 0.0
    p, q = table[0] / table[0].sum(), table[1] / table[1].sum()
    assert result.js_distance == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9)
    assert result.effect_size == result.js_distance
    assert result.cramers_v == pytest.approx(math.sqrt(expected.statistic / table.sum()), rel=1e-12)
    json.dumps(result.to_dict())  # storable as is


def test_cells_too_small_to_test_are_pooled_and_the_pool_is_kept_testable() -> None:
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    cur = ["a"] * 20 + ["b"] * 35 + ["c"] * 5 + ["d"] * 10
    result = compare_one(pl.DataFrame({"c": ref}), pl.DataFrame({"c": cur}))
    # "d" expects 10 * 100 / 170 = 5.9 reference rows but only 4.1 current ones: pooled. A pool of
    # 4.1 is itself too small, so it absorbs the smallest kept category, "c".
    expected = stats.chi2_contingency(np.array([[50, 30, 20], [20, 35, 15]]), correction=False)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert "2 categories pooled" in result.reason


def test_categories_absent_on_both_sides_are_dropped_from_the_table() -> None:
    # No rare categories in the reference and none unseen: the pooled bucket is empty on both sides.
    result = compare_one(pl.DataFrame({"c": ["a", "b"] * 50}), pl.DataFrame({"c": ["a"] * 70 + ["b"] * 30}))
    expected = stats.chi2_contingency(np.array([[50, 50], [70, 30]]), correction=False)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(2 * expected.pvalue)  # Bonferroni with the vanished test


def test_psi_is_near_zero_without_change_and_grows_with_shift() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=50_000)
    same, shifted = numeric_pair(ref, rng.normal(size=50_000)), numeric_pair(ref, rng.normal(0.5, size=50_000))
    assert same.psi is not None and shifted.psi is not None
    assert same.psi < 0.01 < 0.1 < shifted.psi


# --------------------------------------------------------------------------- verdicts at large n


def test_negligible_shift_is_significant_but_not_drifted_with_calibrated_thresholds() -> None:
    rng = np.random.default_rng(11)
    # Eight days of 25k rows whose means wander a little (sum zero), as real days do.
    history = daily_history(rng, 8, 25_000, jitter=np.array([-0.07, 0.05, -0.02, 0.08, -0.05, 0.02, -0.08, 0.07]))
    thresholds = calibrate_thresholds(history, time_column="ts", columns=["x"], current_size=200_000)
    assert thresholds.calibrated and thresholds.n_windows == 8
    summary = summarize_reference(history, ["x"])

    small = compare_one(summary, pl.DataFrame({"x": rng.normal(0.02, size=200_000)}), thresholds=thresholds)
    assert small.significant and small.p_value is not None and small.p_value < 0.01
    assert not small.drifted
    assert small.threshold_source.startswith("calibrated")
    assert "significant" in small.reason

    large = compare_one(summary, pl.DataFrame({"x": rng.normal(0.5, size=200_000)}), thresholds=thresholds)
    assert large.drifted
    assert large.effect_size == pytest.approx(0.5, abs=0.05)  # normalized W1 reads in sd units


def test_categorical_mix_change_drifts_and_high_cardinality_column_does_not() -> None:
    rng = np.random.default_rng(12)
    size = 50_000

    def frame(channel_probs: list[float]) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "channel": rng.choice(["web", "ios", "android", "api"], size=size, p=channel_probs),
                "sku": zipf_labels(rng, 2_000, size),
            }
        )

    reference, current = frame([0.4, 0.3, 0.2, 0.1]), frame([0.2, 0.3, 0.4, 0.1])
    results = {r.column: r for r in compare(reference, current)}
    assert results["channel"].drifted
    assert not results["sku"].drifted
    assert results["sku"].js_distance is not None and results["sku"].js_distance < 0.05
    assert "categories pooled into '__other__'" in results["sku"].reason


def test_unseen_categories_are_reported() -> None:
    reference = pl.DataFrame({"c": ["a", "b"] * 500})
    current = pl.DataFrame({"c": ["a", "b"] * 450 + ["new_1", "new_2"] * 50})
    result = compare_one(reference, current)
    assert result.unseen_categories == pytest.approx(0.1)
    assert "unseen categories" in result.reason


def test_unseen_is_not_confused_with_pooled_rare_categories() -> None:
    reference = pl.DataFrame({"c": ["a"] * 900 + [f"rare_{i}" for i in range(100)]})
    result = compare_one(reference, pl.DataFrame({"c": ["a"] * 90 + ["rare_1"] * 5 + ["never"] * 5}))
    # rare_1 and never are both too small for their own cell, but only "never" is unseen.
    assert result.unseen_categories == pytest.approx(0.05)


# --------------------------------------------------------------------------- calibration


def test_thresholds_are_higher_for_smaller_current_sizes() -> None:
    history = daily_history(np.random.default_rng(13), 10, 4_000)
    small = calibrate_thresholds(history, time_column="ts", columns=["x", "channel"], current_size=200)
    large = calibrate_thresholds(history, time_column="ts", columns=["x", "channel"], current_size=4_000)
    for column in ("x", "channel"):
        assert small.values[column] > 2 * large.values[column]
    assert small.metrics == {"x": "wasserstein_norm", "channel": "jensen_shannon"}
    assert small.sample_size == 200 and large.sample_size == 4_000
    assert small.version != large.version


def test_thresholds_round_trip_and_version_detects_tampering() -> None:
    history = daily_history(np.random.default_rng(14), 6, 1_000)
    thresholds = calibrate_thresholds(history, time_column="ts", columns=["x"], current_size=500)
    stored = json.loads(json.dumps(thresholds.to_dict()))
    assert Thresholds.from_dict(stored) == thresholds
    stored["values"]["x"] = 99.0
    with pytest.raises(ValueError, match="does not match"):
        Thresholds.from_dict(stored)


def test_too_few_windows_fall_back_to_defaults_and_say_so() -> None:
    history = daily_history(np.random.default_rng(15), 3, 1_000)
    thresholds = calibrate_thresholds(history, time_column="ts", columns=["x"], min_windows=5)
    assert not thresholds.calibrated and thresholds.values == {}
    assert "default thresholds used" in thresholds.notes[0]
    result = compare_one(history.select("x"), history.select("x"), thresholds=thresholds)
    assert result.threshold == drift.DEFAULT_THRESHOLDS["wasserstein_norm"]
    assert result.threshold_source.startswith("default")


def test_calibration_excludes_the_window_being_scored() -> None:
    # Windows alternate between two levels a full sd apart. Scored against a reference that
    # contains it, a window looks less different than it is, and the threshold comes out low.
    history = daily_history(np.random.default_rng(16), 6, 2_000, jitter=np.array([0.0, 1.0] * 3))
    thresholds = calibrate_thresholds(history, time_column="ts", columns=["x"])
    whole = summarize_reference(history, ["x"])
    windows = history.with_columns(day=pl.col("ts").dt.truncate("1d")).partition_by("day")
    contained = [compare_one(whole, window.select("x")).effect_size for window in windows]
    assert thresholds.values["x"] > 1.1 * float(np.quantile(contained, 0.95))


# --------------------------------------------------------------------------- edge cases


def edge_frame(rows: int) -> pl.DataFrame:
    rng = np.random.default_rng(rows)
    return pl.DataFrame(
        {"num": rng.normal(size=rows), "cat": rng.choice(["a", "b", "c"], size=rows)},
        schema={"num": pl.Float64, "cat": pl.String},
    )


@pytest.mark.parametrize(("ref_rows", "cur_rows"), [(100, 0), (0, 100), (0, 0)])
def test_empty_frames_give_insufficient_data(ref_rows: int, cur_rows: int) -> None:
    for result in compare(edge_frame(ref_rows), edge_frame(cur_rows)):
        assert not result.drifted and not result.significant
        assert result.reason.startswith("insufficient data")
        assert result.p_value is None and result.effect_size is None
        json.dumps(result.to_dict())


def test_all_null_columns() -> None:
    nulls = pl.DataFrame(
        {"num": [None] * 5, "cat": [None] * 5, "untyped": [None] * 5},
        schema={"num": pl.Float64, "cat": pl.String, "untyped": pl.Null},
    )
    values = pl.DataFrame({"num": [1.0, 2.0, 3.0], "cat": ["a", "b", "a"], "untyped": [None] * 3})
    for reference, current in ((nulls, values), (values, nulls), (nulls, nulls)):
        for result in compare(reference, current):
            assert not result.drifted and result.reason.startswith("insufficient data")
    num = next(r for r in compare(values, nulls) if r.column == "num")
    assert num.null_share_reference == 0.0 and num.null_share_current == 1.0 and num.null_share_shift == 1.0
    assert "null share 0.0% -> 100.0%" in num.reason


def test_constant_columns() -> None:
    same = compare_one(pl.DataFrame({"x": [5.0] * 50}), pl.DataFrame({"x": [5.0] * 40}))
    assert same.statistic == 0.0 and same.p_value == 1.0 and same.effect_size == 0.0 and not same.drifted

    moved = compare_one(pl.DataFrame({"x": [5.0] * 50}), pl.DataFrame({"x": [6.0] * 40}))
    assert moved.statistic == 1.0 and moved.wasserstein == pytest.approx(1.0)
    assert moved.effect_size == pytest.approx(0.2)  # zero IQR and sd: W1 / |reference value|
    assert moved.drifted
    assert summarize_reference(pl.DataFrame({"x": [5.0] * 50})).columns["x"].scale_basis == "abs_value"  # type: ignore[union-attr]

    mostly_zero = summarize_reference(pl.DataFrame({"x": [0.0] * 90 + [1.0] * 10}))
    assert mostly_zero.columns["x"].scale_basis == "std"  # type: ignore[union-attr]

    one_category = compare_one(pl.DataFrame({"c": ["a"] * 10}), pl.DataFrame({"c": ["a"] * 3}))
    assert one_category.p_value == 1.0 and one_category.effect_size == 0.0 and not one_category.drifted


def test_single_row_frames() -> None:
    for result in compare(edge_frame(1), edge_frame(1)):
        assert result.n_reference == 1 and result.n_current == 1
        assert result.p_value is not None and 0.0 <= result.p_value <= 1.0
        assert not result.drifted  # one value can never be significant at alpha = 0.01


def test_nan_and_inf_are_ignored_for_the_distribution_and_counted() -> None:
    rng = np.random.default_rng(17)
    ref, cur = rng.normal(size=500), rng.normal(size=400)
    dirty = np.concatenate([cur, [np.nan, np.inf, -np.inf, np.nan]])
    clean_result = numeric_pair(ref, cur)
    dirty_result = compare_one(
        pl.DataFrame({"x": ref}),
        pl.DataFrame({"x": dirty}).vstack(pl.DataFrame({"x": [None]}, schema={"x": pl.Float64})),
    )
    assert dirty_result.statistic == clean_result.statistic
    assert dirty_result.wasserstein == clean_result.wasserstein
    assert dirty_result.n_current == 400
    assert dirty_result.nonfinite_share_current == pytest.approx(4 / 405)
    assert dirty_result.null_share_current == pytest.approx(1 / 405)
    assert "4 non-finite current values ignored" in dirty_result.reason


def test_categories_only_on_one_side() -> None:
    result = compare_one(pl.DataFrame({"c": ["a"] * 50 + ["b"] * 50}), pl.DataFrame({"c": ["c"] * 100}))
    assert result.drifted and result.unseen_categories == 1.0
    assert result.js_distance == pytest.approx(1.0)
    reverse = compare_one(pl.DataFrame({"c": ["a"] * 50 + ["b"] * 50}), pl.DataFrame({"c": ["a"] * 100}))
    assert reverse.unseen_categories == 0.0 and reverse.drifted


def test_column_missing_from_current_and_type_mismatch() -> None:
    reference = pl.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "b", "c"]})
    results = compare(reference, pl.DataFrame({"y": ["a", "b"]}))
    missing = next(r for r in results if r.column == "x")
    assert not missing.drifted and "missing from current" in missing.reason
    mismatch = compare_one(reference.select("x"), pl.DataFrame({"x": ["not", "numbers"]}))
    assert mismatch.reason.startswith("insufficient data") and mismatch.null_share_current == 1.0


def test_column_kinds_dtypes_and_skips() -> None:
    frame = pl.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [1.0, 2.0, 3.0],
            "b": [True, False, True],
            "cat": pl.Series(["a", "b", "a"], dtype=pl.Categorical),
            "when": [DAY, DAY, DAY],
            "nested": [[1], [2], [3]],
        }
    )
    summary = summarize_reference(frame)
    assert {name: ref.method for name, ref in summary.columns.items()} == {
        "i": "ks",
        "f": "ks",
        "b": "chi2_contingency",
        "cat": "chi2_contingency",
    }
    assert "nested" in summary.skipped and "when" not in summary.columns  # temporal only when named
    assert summarize_reference(frame, ["when"]).columns["when"].method == "ks"
    assert all(r.method_reason for r in compare(summary, frame))


def test_reference_subset_keeps_results_close() -> None:
    rng = np.random.default_rng(18)
    reference = pl.DataFrame({"x": rng.normal(size=100_000)})
    current = pl.DataFrame({"x": rng.normal(0.3, size=5_000)})
    full = compare_one(summarize_reference(reference, max_numeric_values=None), current)
    subset = compare_one(summarize_reference(reference, max_numeric_values=20_000), current)
    assert subset.n_reference == full.n_reference == 100_000  # the subset stands for the whole sample
    assert subset.statistic == pytest.approx(full.statistic, abs=1 / 20_000)
    assert subset.effect_size == pytest.approx(full.effect_size, abs=0.01)


@pytest.mark.parametrize("shift", [0.0, 0.03])
def test_default_reference_subset_keeps_scipy_figures(shift: float) -> None:
    # Above 65,536 values the cached reference is a subset; D, W1 and p stay scipy's, the
    # p-value at the reference's full count (the subset taken as the sample would lose power).
    rng = np.random.default_rng(19)
    a, b = rng.lognormal(size=300_000), rng.lognormal(shift, size=10_000)
    result = compare_one(pl.DataFrame({"x": a}), pl.DataFrame({"x": b}))
    expected = stats.ks_2samp(a, b)
    assert "65536 evenly spaced order statistics of 300000" in result.method_reason
    assert result.n_reference == 300_000
    assert result.statistic == pytest.approx(expected.statistic, abs=2 / drift.MAX_NUMERIC_VALUES)
    assert result.p_value == pytest.approx(expected.pvalue, rel=0.02)
    # W1 integrates the ECDF's error over the reference's range.
    assert result.wasserstein == pytest.approx(
        stats.wasserstein_distance(a, b), abs=2 * (a.max() - a.min()) / drift.MAX_NUMERIC_VALUES
    )


def _days(n_days: int, rows: int, column: dict[str, np.ndarray]) -> pl.DataFrame:
    start = dt.date(2026, 3, 1)
    days = [start + dt.timedelta(days=i // rows) for i in range(n_days * rows)]
    return pl.DataFrame({"event_date": days, **column})


def test_a_near_constant_feature_gets_a_readable_floor_and_no_negative_or_absurd_score() -> None:
    """Demo finding: threshold 1e-12, effect -0.134, score -1.3e11 for a near-constant feature."""
    rng = np.random.default_rng(4)
    history = _days(14, 500, {"ratio": np.ones(14 * 500)})  # every normal day the same: effects of 0
    thresholds = drift.calibrate_thresholds(
        history, time_column="event_date", columns=["ratio"], current_size=500, rule="lognormal_tail"
    )
    assert thresholds.values["ratio"] >= drift.NEGLIGIBLE_EFFECT[drift.NUMERIC_METRIC]
    assert any("negligible effect" in note for note in thresholds.notes)  # the user can read why
    current = pl.DataFrame({"ratio": np.where(rng.random(500) < 0.01, 1.0 + 1e-6, 1.0)})
    for result in drift.compare(history.select("ratio"), current, thresholds=thresholds):
        score = result.effect_size / result.threshold
        assert result.effect_size >= 0.0 and 0.0 <= score <= 1e6 and not result.drifted


def test_the_floor_can_be_changed_by_the_user() -> None:
    rng = np.random.default_rng(5)
    history = _days(10, 2000, {"x": rng.normal(size=20_000)})
    strict = drift.calibrate_thresholds(history, time_column="event_date", columns=["x"], negligible_effect=0.5)
    assert strict.values["x"] == 0.5


def test_the_domain_threshold_is_a_robust_quantile_capped_below_one() -> None:
    """Before: the best normal day's AUC + 0.02 reached 1.019, and the detector could never fire."""
    from dataplatform.lib.monitoring import MAX_DOMAIN_THRESHOLD, normal_domain_auc

    rng = np.random.default_rng(6)
    n_days, rows = 7, 300
    day_index = np.repeat(np.arange(n_days), rows).astype(float)
    separable = _days(n_days, rows, {"day_feature": day_index + rng.normal(0, 0.01, n_days * rows)})
    auc = normal_domain_auc(separable, time_column="event_date", numeric=["day_feature"], rows_per_side=300)
    assert auc is not None and auc <= MAX_DOMAIN_THRESHOLD < 1.0
    stationary = _days(n_days, rows, {"x": rng.normal(size=n_days * rows)})
    quiet = normal_domain_auc(stationary, time_column="event_date", numeric=["x"], rows_per_side=300)
    assert quiet is not None and quiet < 0.7
    assert normal_domain_auc(_days(2, rows, {"x": rng.normal(size=2 * rows)}), time_column="event_date",
                             numeric=["x"]) is None  # fmt: skip


def _ids(rng: np.random.Generator, levels: int, size: int) -> pl.DataFrame:
    return pl.DataFrame({"c": np.char.add("id_", rng.choice(levels, size=size).astype(str))})


@pytest.mark.parametrize("levels", [10, 1_000, 10_000])
def test_chi_square_p_values_are_calibrated_at_any_cardinality(levels: int) -> None:
    # Two samples of one distribution: p < 0.01 about 1% of the time (Bonferroni makes it at most).
    # Choosing cells from the reference's own counts gave p of 1e-18 at 10,000 ids.
    rng, size = np.random.default_rng(levels), max(4_000, 5 * levels)  # enough rows for most ids to be testable
    p_values = np.array([compare_one(_ids(rng, levels, size), _ids(rng, levels, size)).p_value for _ in range(200)])
    assert (p_values < 0.01).mean() <= 0.015
    assert (p_values < 0.2).mean() >= 0.05  # not a test that never rejects


@pytest.mark.parametrize("size", [1, 3, 10, 30, 100, 1_000])
def test_small_batches_from_the_reference_distribution_raise_at_most_one_percent_false_alarms(size: int) -> None:
    shares = np.array([0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03, 0.015, 0.005])
    labels = np.array([f"k{i}" for i in range(shares.size)])
    rng = np.random.default_rng(size)
    reference = summarize_reference(pl.DataFrame({"c": rng.choice(labels, 50_000, p=shares)}))
    batches = [pl.DataFrame({"c": rng.choice(labels, size, p=shares)}) for _ in range(200)]
    alarms = sum(compare_one(reference, batch).drifted for batch in batches)
    assert alarms <= 2  # 1% of 200
    one_row = compare_one(reference, pl.DataFrame({"c": ["k3"]}))  # a 10% category: once gave p = 0.003
    assert one_row.p_value == 1.0 and not one_row.drifted
    assert "not tested" in one_row.reason


@pytest.mark.parametrize("levels", [200, 2_000])
def test_half_of_the_categories_vanishing_is_a_large_effect_and_drifts(levels: int) -> None:
    rng = np.random.default_rng(7)
    labels = np.array([f"v{i}" for i in range(levels)])
    reference = pl.DataFrame({"c": rng.choice(labels, 40 * levels)})
    result = compare_one(reference, pl.DataFrame({"c": rng.choice(labels[: levels // 2], 10 * levels)}))
    # Pooling merges the vanished half with the survivors (cell JS 0.07 at 2,000 levels); the effect
    # is the JS distance the vanished share implies: about 0.56 for half.
    assert result.vanished_categories == pytest.approx(0.5, abs=0.02)
    assert result.effect_size == pytest.approx(0.56, abs=0.02)
    assert result.drifted and "absent" in result.reason
    same = compare_one(reference, pl.DataFrame({"c": rng.choice(labels, 10 * levels)}))
    assert not same.drifted and same.effect_size is not None and same.effect_size < 0.1


def test_a_learned_threshold_reports_its_uncertainty_and_it_narrows_with_more_windows() -> None:
    rng = np.random.default_rng(21)
    widths = {}
    for days in (6, 40):
        thresholds = calibrate_thresholds(
            daily_history(rng, days, 2_000), time_column="ts", columns=["x", "channel"], rule="lognormal_tail"
        )
        for column in ("x", "channel"):
            low, high = thresholds.intervals[column]
            assert low <= thresholds.values[column] <= high
        low, high = thresholds.intervals["x"]
        widths[days] = high / low
        stored = json.loads(json.dumps(thresholds.to_dict()))
        assert Thresholds.from_dict(stored) == thresholds
    assert widths[40] < widths[6]
    # Thresholds stored before intervals existed still load under their version.
    legacy = Thresholds({"x": 0.1}, {"x": drift.NUMERIC_METRIC}, "m", 0.95, 5, 100, "1d", True)
    stored = legacy.to_dict()
    del stored["intervals"]
    assert Thresholds.from_dict(stored).version == legacy.version


def _identical_columns(rng: np.random.Generator, days: int, rows: int, shift_sd: float = 0.0) -> pl.DataFrame:
    """Three numeric and three categorical columns of one distribution each, plus `varied`, whose
    mean moves by N(0, shift_sd) from day to day."""
    day = np.repeat(np.arange(days), rows)
    n = days * rows
    labels, shares = ["web", "ios", "android", "api"], [0.4, 0.3, 0.2, 0.1]
    return pl.DataFrame(
        {
            "ts": pl.Series([DAY + dt.timedelta(days=d) for d in range(days)]).gather(day),
            **{f"x{k}": rng.normal(size=n) for k in range(3)},
            **{f"c{k}": rng.choice(labels, size=n, p=shares) for k in range(3)},
            "varied": rng.normal(size=n) + rng.normal(0, shift_sd, days)[day],
        }
    )


@pytest.mark.parametrize("seed", range(4))
def test_identical_columns_get_thresholds_within_one_and_a_half_times_of_each_other(seed: int) -> None:
    # Before pooling, 14 windows of 5,000 rows gave columns of one distribution thresholds up to 2.4x apart.
    history = _identical_columns(np.random.default_rng(seed), days=14, rows=5_000)
    columns = ["x0", "x1", "x2", "c0", "c1", "c2"]
    thresholds = calibrate_thresholds(
        history, time_column="ts", columns=columns, rule="lognormal_tail", negligible_effect=0.0
    )
    for group in (columns[:3], columns[3:]):
        values = [thresholds.values[column] for column in group]
        assert max(values) / min(values) <= 1.5, dict(zip(group, values, strict=True))
    assert any("pooled" in note for note in thresholds.notes)


def test_a_column_whose_days_really_vary_keeps_a_threshold_above_its_normal_days() -> None:
    """Pooling must not lend a varying column the quiet columns' threshold (false alarms every day)."""
    shift_sd = 0.15
    history = _identical_columns(np.random.default_rng(8), days=14, rows=5_000, shift_sd=shift_sd)
    alone = calibrate_thresholds(history, time_column="ts", columns=["x0"], rule="lognormal_tail").values["x0"]
    columns = ["x0", "x1", "x2", "varied"]
    pooled = calibrate_thresholds(history, time_column="ts", columns=columns, rule="lognormal_tail")
    # A day's normalized Wasserstein effect is about |its shift|: above 2.24 sd of shifts on 2.5% of days.
    assert pooled.values["varied"] >= 2.24 * shift_sd
    assert pooled.values["varied"] > 3 * pooled.values["x0"]
    assert pooled.values["x0"] <= 1.5 * alone


def _joined_counts_by_join(ref: pl.Series, current: pl.Series) -> pl.DataFrame:
    """The categorical counts as a plain Polars join: the oracle for drift's cast-and-bincount."""
    counts = [
        s.cast(pl.String).drop_nulls().alias("value").value_counts(name=n) for s, n in ((ref, "r"), (current, "c"))
    ]
    joined = counts[0].join(counts[1], on="value", how="full", coalesce=True).fill_null(0)
    return joined.with_columns(pooled=pl.col("r") + pl.col("c")).sort(["pooled", "value"], descending=[True, False])


labels = st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "B", "é", "", "a b", "zz", "10", "9"])), max_size=60)


@settings(max_examples=200, deadline=None)
@given(reference=labels, current=labels)
def test_property_categorical_counts_equal_a_join(reference: list[str | None], current: list[str | None]) -> None:
    ref, cur = pl.Series("c", reference, dtype=pl.String), pl.Series("c", current, dtype=pl.String)
    summary = summarize_reference(ref.to_frame())
    ref_counts, cur_counts = drift._joined_counts(summary.columns["c"], cur)  # type: ignore[arg-type]
    expected = _joined_counts_by_join(ref, cur)
    assert ref_counts.tolist() == expected["r"].to_list()
    assert cur_counts.tolist() == expected["c"].to_list()
