"""Multivariate drift (a domain classifier) and the charts analysts see in the UI."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from dataplatform.lib import drift, tables, warehouse
from dataplatform.lib.quality import BandStatus

# scikit-learn and matplotlib are imported where they are used: together they take over a second to
# import, and every run process of the code location (an ingestion micro-batch too) imports this module.
if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class MultivariateDrift:
    """Can a classifier tell current rows from reference rows? AUC 0.5 means no."""

    auc: float
    permutation_aucs: list[float]
    threshold: float
    drifted: bool
    top_features: list[tuple[str, float]]  # numeric features by |univariate AUC - 0.5|
    rows_per_side: int


def _matrix(frame: pl.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> np.ndarray:
    encoded = [pl.col(c).cast(pl.String).fill_null("").hash(seed=0).mod(1024).cast(pl.Float64) for c in categorical]
    return frame.select(*(pl.col(c).cast(pl.Float64) for c in numeric), *encoded).to_numpy()


def domain_classifier_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    rows_per_side: int = 4000,
    permutations: int = 3,
    seed: int = 0,
    normal_auc: float | None = None,
) -> MultivariateDrift:
    """Cross-validated AUC of reference-vs-current, against the same classifier on shuffled labels.

    The threshold is the largest permutation AUC plus CHANCE_AUC_MARGIN (what chance alone reaches at this
    sample size, with a margin for fold noise), or `normal_auc` when that is higher: the AUC
    that normal days of the reference already reach against the rest of it (weekdays against
    weekends, say; see :func:`normal_domain_auc`), so ordinary day-to-day variety is not drift.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n = min(rows_per_side, reference.height, current.height)
    if n < 50:
        return MultivariateDrift(0.5, [], 1.0, False, [], n)
    ref = reference.sample(n=n, seed=seed)
    cur = current.sample(n=n, seed=seed + 1)
    x = np.vstack([_matrix(ref, numeric, categorical), _matrix(cur, numeric, categorical)])
    y = np.r_[np.zeros(n), np.ones(n)]
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)

    def cv_auc(labels: np.ndarray) -> float:
        model = HistGradientBoostingClassifier(max_iter=60, learning_rate=0.1, random_state=seed)
        # One thread: OpenMP workers spin while waiting, and with other work on the cores the
        # default threading runs several times slower (the same effect as in training).
        with threadpool_limits(limits=1, user_api="openmp"):
            scores = cross_val_predict(model, x, labels, cv=folds, method="predict_proba")[:, 1]
        return float(roc_auc_score(labels, scores))

    auc = cv_auc(y)
    rng = np.random.default_rng(seed)
    baseline = [cv_auc(rng.permutation(y)) for _ in range(permutations)]
    threshold = min(max(max(baseline, default=0.5) + CHANCE_AUC_MARGIN, normal_auc or 0.0), MAX_DOMAIN_THRESHOLD)
    univariate = []
    for i, name in enumerate(numeric):
        column = x[:, i]
        finite = np.isfinite(column)
        if finite.sum() > 10 and len(np.unique(y[finite])) == 2:
            univariate.append((name, abs(float(roc_auc_score(y[finite], column[finite])) - 0.5)))
    top = sorted(univariate, key=lambda item: -item[1])[:5]
    return MultivariateDrift(auc, baseline, threshold, auc > threshold, top, n)


CHANCE_AUC_MARGIN = 0.02  # above the largest shuffled-label AUC: a margin for fold noise (not measured)
NORMAL_AUC_QUANTILE = 0.75
NORMAL_AUC_MARGIN = 0.02
MAX_DOMAIN_THRESHOLD = 0.95  # an AUC this high separates days almost perfectly: always reportable


def normal_domain_auc(
    reference: pl.DataFrame,
    *,
    time_column: str,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    days: int = 7,
    rows_per_side: int = 2000,
    seed: int = 0,
) -> float | None:
    """How well a domain classifier tells one normal day of the reference from the other days.

    For the last `days` days of the reference, each day against the rest (never itself); the
    multivariate threshold that history itself sets is a high quantile of those AUCs (not the
    maximum: one odd normal day must not blind the detector) plus a margin, capped below 1 so that
    the detector can always fire. None with fewer than 3 days: a short history is not a baseline
    (its 28-day features are still filling, so days differ by that alone), and the caller falls
    back to the permutation baseline.
    """
    keys = reference[time_column].unique().sort().to_list()[-days:]
    if len(keys) < 3:
        return None
    aucs = []
    for i, key in enumerate(keys):
        inside = reference[time_column] == key
        result = domain_classifier_drift(
            reference.filter(~inside), reference.filter(inside), numeric=numeric, categorical=categorical,
            rows_per_side=rows_per_side, permutations=0, seed=seed + i,
        )  # fmt: skip
        aucs.append(result.auc)
    return min(float(np.quantile(aucs, NORMAL_AUC_QUANTILE)) + NORMAL_AUC_MARGIN, MAX_DOMAIN_THRESHOLD)


def _pyplot() -> ModuleType:
    """matplotlib's pyplot, rendering to PNG only (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def png_markdown(figure: Figure, title: str) -> str:
    """A figure as a Markdown image with an inline PNG (the Dagster UI renders it in metadata)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    _pyplot().close(figure)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def drift_history_chart(history: pl.DataFrame, columns: Sequence[str]) -> Figure:
    """Per feature: effect size over time against its threshold (red dots: drifted days)."""
    shown = list(columns)
    cols = 3
    rows = max(1, -(-len(shown) // cols))
    figure: Figure
    figure, axes = _pyplot().subplots(rows, cols, figsize=(4 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for ax, column in zip(axes.flat, shown, strict=False):
        rows_of = history.filter(pl.col("column_name") == column).sort("event_date")
        days = rows_of["event_date"].to_list()
        ax.plot(days, rows_of["effect_size"].to_list(), marker=".", linewidth=1, label="effect size")
        ax.plot(days, rows_of["threshold"].to_list(), linestyle="--", color="grey", linewidth=1, label="threshold")
        flagged = rows_of.filter(pl.col("drifted"))
        ax.scatter(
            flagged["event_date"].to_list(), flagged["effect_size"].to_list(), color="red", zorder=3, label="drifted"
        )
        metric = rows_of["effect_metric"][0] if "effect_metric" in rows_of.columns and rows_of.height else "effect"
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("day", fontsize=7)
        ax.set_ylabel(str(metric), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", rotation=45)
    if shown:
        axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def distribution_chart(reference: pl.DataFrame, current: pl.DataFrame, columns: Sequence[str]) -> Figure:
    """Reference (grey) vs current (blue) distributions of the given numeric features."""
    shown = list(columns)[:6] or ["(none)"]
    figure: Figure
    figure, axes = _pyplot().subplots(1, len(shown), figsize=(3.5 * len(shown), 2.6), squeeze=False)
    for ax, column in zip(axes.flat, shown, strict=False):
        if column not in reference.columns:
            ax.axis("off")
            continue
        ref = reference[column].cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
        cur = current[column].cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
        both = np.concatenate([ref, cur])
        if both.size == 0:
            ax.axis("off")
            continue
        low, high = np.quantile(both, [0.01, 0.99])
        bins = np.linspace(low, high if high > low else low + 1, 40)
        # Each side's share of its own rows per bin, tails counted in the edge bins: a side whose
        # values all lie outside the common range still shows, and an empty side draws nothing
        # (a density would divide by its zero total).
        for values, colour, label in ((ref, "grey", "reference"), (cur, "tab:blue", "current")):
            if values.size:
                shares = np.full(values.size, 1 / values.size)
                ax.hist(
                    np.clip(values, bins[0], bins[-1]), bins=bins, weights=shares, alpha=0.5, color=colour, label=label
                )
        ax.set_title(column, fontsize=9)
        ax.set_xlabel(column, fontsize=7)
        ax.set_ylabel("share of rows", fontsize=7)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def performance_chart(history: pl.DataFrame) -> Figure:
    """The champion's realized AUC (labelled days) and expected AUC (every day) over time, and the
    lower edge of its band: one chart, so that a realized AUC below the band reads at a glance."""
    figure: Figure
    figure, ax = _pyplot().subplots(figsize=(8, 3))
    frame = history.sort("event_date")
    days = frame["event_date"].to_list()
    ax.plot(days, frame["auc"].to_list(), marker="o", linewidth=1.5, label="realized AUC (labels matured)")
    ax.plot(days, frame["expected_auc"].to_list(), marker=".", linestyle=":", linewidth=1, label="expected AUC")
    ax.plot(days, frame["band_low"].to_list(), linestyle="--", color="grey", linewidth=1, label="band (lower edge)")
    below = frame.filter(pl.col("status").is_in([BandStatus.HIGH.value, BandStatus.FAR_HIGH.value]))
    ax.scatter(below["event_date"].to_list(), below["auc"].to_list(), color="red", zorder=3, label="below band")
    ax.set_xlabel("day", fontsize=8)
    ax.set_ylabel("AUC", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def champion_story(
    version: str,
    since: str,
    reason: str,
    trigger: str | None,
    realized: tuple[str, float] | None,
    expected: tuple[str, float | None],
) -> str:
    """One line: which model serves, since when and why, and how good it is: its latest realized AUC
    (day, AUC) and the expected AUC of the day judged (day, AUC or None)."""
    how_good = f"realized AUC {realized[1]:.3f} on {realized[0]}" if realized else "no realized AUC yet"
    return (
        f"champion {version}, promoted {since[:10]} (trigger: {trigger or 'unknown'}); decision: {reason}; "
        f"{how_good}" + (f", expected AUC {expected[1]:.3f} on {expected[0]}" if expected[1] is not None else "")
    )


def champion_thresholds(
    con: Any, champion: str, reference: pl.DataFrame, size: int, columns: Sequence[str]
) -> drift.Thresholds:
    """Per-feature drift thresholds learned on the champion's training window at a sample size of `size`.

    Thresholds depend on the window and on the sample size; sizes within a factor of 2**0.25 share
    them, learned at the bucket's centre size (so they do not depend on which size came first), and a
    day (or a batch) usually reads them from the warehouse's `drift_thresholds` cache."""
    size_bucket = round(4 * math.log2(max(size, 1))) / 4
    cached = warehouse.scalar(
        con,
        "SELECT thresholds FROM drift_thresholds WHERE champion = ? AND size_bucket = ?",
        [champion, size_bucket],
    )
    if cached is not None:
        return drift.Thresholds.from_dict(json.loads(cached))
    thresholds = drift.calibrate_thresholds(
        reference,
        time_column="event_date",
        columns=list(columns),
        current_size=round(2**size_bucket),
        rule="lognormal_tail",
    )
    row = {"champion": champion, "size_bucket": size_bucket, "version": thresholds.version,
           "thresholds": json.dumps(thresholds.to_dict(), default=str)}  # fmt: skip
    warehouse.replace_rows(con, tables.DRIFT_THRESHOLDS, pl.DataFrame([row]))
    return thresholds
