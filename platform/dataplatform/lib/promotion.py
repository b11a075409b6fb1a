"""Whether a challenger replaces the champion: judged on what the model is for, with its uncertainty.

The model ranks products for a user (the recommender shows the top few), so the comparison is on
ranking quality: AUC and recall@k per user, both models scored on the same holdout rows. Their
difference is uncertain (a holdout of a day or two holds a few hundred positives), so it comes with
a **paired bootstrap**: each resample draws rows (for recall@k: users) once and scores both models on
that draw, which cancels the noise the two models share and leaves the noise of their difference.

Precision and recall depend on a decision threshold that each model picked on its own calibration
slice, from its own training period; after a drift the champion's is stale. Both thresholds are
**re-tuned on the holdout** (the F1-best cut) before precision, recall and F1 are compared and
reported, so a model is not judged by a threshold that one line of code would move. They do not
veto a better ranker: on a holdout of two days the F1-best cut's F1 moves by several points from
one draw to the next (measured on the 14-week scenario: a challenger with +0.012 AUC showed F1
0.300 against 0.367), more than the differences it would decide on.

The rule (:func:`judge`): promote when the challenger is

* not worse within the uncertainty: the 90% interval of its AUC gain and that of its recall@k gain
  reach above zero (the data cannot say it is worse); and
* better on the regime the data is in now: its AUC on the holdout days from the drift's onset on
  (all holdout days when no onset is known) is higher than the champion's, or it trained on a week
  or more of the current regime than the champion did (`more_of_the_regime`; a follow-up retrain).
  Two days of holdout cannot tell the gain a week more of the new regime buys (measured on the
  concept-drift scenario: such a challenger at -0.017 AUC, 90% CI -0.042..+0.007, was kept, and the
  champion with half its regime days lost 3 AUC points to retraining every day).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import polars as pl

from dataplatform.lib.training import (
    BOOTSTRAP_CELLS,
    Interval,
    TrainedModel,
    max_f1_threshold,
    percentile_interval,
    recall_at_k,
    weighted_auc,
)

FIRST_MODEL_MARGIN: Final = 0.02  # a first model must beat chance (AUC 0.5) by this much
BOOTSTRAP_RESAMPLES: Final = 300


@dataclass(frozen=True)
class Side:
    """One model on the holdout: ranking quality, and precision / recall at its re-tuned threshold."""

    auc: float | None
    auc_now: float | None  # on the holdout days of the current regime
    recall_at_k: float | None
    threshold: float  # re-tuned on the holdout (F1-best)
    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True)
class Comparison:
    """Both models on the same holdout rows, with the paired bootstrap of their differences."""

    rows: int
    positives: int
    now_rows: int
    k: int
    champion: Side
    challenger: Side
    auc_gain: float | None
    auc_gain_ci: Interval | None  # 90%
    recall_at_k_gain: float | None
    recall_at_k_gain_ci: Interval | None  # 90%
    auc_gain_now: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    comparison: Comparison | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "comparison": self.comparison and self.comparison.to_dict(),
        }


def _side(scores: np.ndarray, proba: np.ndarray, y: np.ndarray, now: np.ndarray, groups: pl.Series, k: int) -> Side:
    cut = max_f1_threshold(proba, y) if y.any() else 1.0
    predicted = proba >= cut
    tp = int((predicted & (y == 1)).sum())
    precision = tp / int(predicted.sum()) if predicted.any() else None
    recall = tp / int(y.sum()) if y.any() else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return Side(
        auc=_auc(scores, y),
        auc_now=_auc(scores[now], y[now]),
        recall_at_k=recall_at_k(scores, y, groups, k)[0],
        threshold=float(cut),
        precision=precision,
        recall=recall,
        f1=f1,
    )


def _auc(scores: np.ndarray, y: np.ndarray) -> float | None:
    if not 0 < y.sum() < len(y):
        return None
    order = np.argsort(scores, kind="stable")
    starts = np.flatnonzero(np.r_[True, scores[order][1:] != scores[order][:-1]])
    positives = y[order].astype(np.float64)
    return float(weighted_auc(positives, 1.0 - positives, starts))


def _paired_auc_gains(a: np.ndarray, b: np.ndarray, y: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """AUC(b) - AUC(a) on `resamples` row resamples, each drawn once and applied to both models (as
    count matrices, a chunk of resamples at a time)."""
    n = len(y)
    rng = np.random.default_rng(seed)
    orders = [np.argsort(scores, kind="stable") for scores in (a, b)]
    starts = [np.flatnonzero(np.r_[True, s[o][1:] != s[o][:-1]]) for s, o in zip((a, b), orders, strict=True)]
    chunk = max(1, min(resamples, BOOTSTRAP_CELLS // max(n, 1)))
    gains = []
    for first in range(0, resamples, chunk):
        rows = min(chunk, resamples - first)
        draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        aucs = []
        for order, start in zip(orders, starts, strict=True):
            pos = counts[:, order] * y[order]
            aucs.append(weighted_auc(pos, counts[:, order] - pos, start))
        gains.append(aucs[1] - aucs[0])
    return np.concatenate(gains)


def _paired_recall_gains(
    a: np.ndarray, b: np.ndarray, y: np.ndarray, groups: pl.Series, k: int, resamples: int, seed: int
) -> tuple[float | None, np.ndarray]:
    """recall@k(b) - recall@k(a), and its values on `resamples` resamples of the users (paired)."""
    per_group = []
    for scores in (a, b):
        frame = pl.DataFrame({"g": groups, "s": scores, "y": y}).filter(pl.col("g").is_not_null())
        per_group.append(
            frame.with_columns(
                above=pl.col("s").rank("min", descending=True).over("g") - 1, tied=pl.len().over("g", "s")
            )
            .with_columns(inside=(k - pl.col("above")).clip(0, pl.col("tied")) / pl.col("tied"))
            .group_by("g")
            .agg(hits=(pl.col("y") * pl.col("inside")).sum(), positives=pl.col("y").sum())
            .filter(pl.col("positives") > 0)
            .select("g", (pl.col("hits") / pl.col("positives")).alias("recall"))
        )
    joined = per_group[0].join(per_group[1], on="g", suffix="_b")
    if joined.height == 0:
        return None, np.array([])
    diff = (joined["recall_b"] - joined["recall"]).to_numpy()
    draws = np.random.default_rng(seed + 1).integers(0, len(diff), (resamples, len(diff)))
    return float(diff.mean()), diff[draws].mean(axis=1)


def compare(
    champion: TrainedModel,
    challenger: TrainedModel,
    holdout: pl.DataFrame,
    *,
    now_days: Sequence[dt.date] | None = None,
    k: int = 10,
    group: str = "user_id",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Both models on `holdout` (labelled examples); `now_days` are its days of the current regime."""
    y = holdout.get_column(challenger.label).cast(pl.Int64).to_numpy()
    now = holdout["event_date"].is_in(list(now_days)).to_numpy() if now_days else np.ones(len(y), dtype=bool)
    groups = holdout.get_column(group)
    (a, pa), (b, pb) = champion.score(holdout), challenger.score(holdout)
    old, new = _side(a, pa, y, now, groups, k), _side(b, pb, y, now, groups, k)
    auc_gains = _paired_auc_gains(a, b, y, resamples, seed) if old.auc is not None else np.array([])
    recall_gain, recall_gains = _paired_recall_gains(a, b, y, groups, k, resamples, seed)
    return Comparison(
        rows=len(y),
        positives=int(y.sum()),
        now_rows=int(now.sum()),
        k=k,
        champion=old,
        challenger=new,
        auc_gain=None if old.auc is None or new.auc is None else new.auc - old.auc,
        auc_gain_ci=percentile_interval(auc_gains, 0.90),
        recall_at_k_gain=recall_gain,
        recall_at_k_gain_ci=percentile_interval(recall_gains, 0.90),
        auc_gain_now=None if old.auc_now is None or new.auc_now is None else new.auc_now - old.auc_now,
    )


def judge_first(challenger_auc: float | None) -> Decision:
    """No champion to beat: promote a model better than chance."""
    floor = 0.5 + FIRST_MODEL_MARGIN
    if challenger_auc is None:
        return Decision(
            False, "not promoted: first model, but its AUC is undefined on the holdout (one class only).", None
        )
    if challenger_auc > floor:
        return Decision(
            True, f"promoted: first model; AUC {challenger_auc:.3f} on the holdout is above {floor:.3f}.", None
        )
    return Decision(
        False, f"not promoted: first model, AUC {challenger_auc:.3f} is not above chance + margin ({floor:.3f}).", None
    )


def judge(comparison: Comparison, *, more_of_the_regime: bool = False) -> Decision:
    """The promotion rule (module docstring); the reason names the figures it rests on."""
    c = comparison
    if c.auc_gain is None or c.auc_gain_ci is None or c.auc_gain_now is None:
        return Decision(False, "keep champion: AUC is undefined on this holdout (one class only).", c)
    low, high = c.auc_gain_ci
    f1 = f"F1 {c.challenger.f1 or 0.0:.3f} vs {c.champion.f1 or 0.0:.3f} at thresholds re-tuned on the holdout"
    gain = (
        f"AUC {c.challenger.auc:.3f} vs {c.champion.auc:.3f} (gain {c.auc_gain:+.3f}, 90% CI {low:+.3f}..{high:+.3f})"
    )
    if c.recall_at_k_gain is not None and c.recall_at_k_gain_ci is not None:
        r_low, r_high = c.recall_at_k_gain_ci
        gain += f", recall@{c.k} gain {c.recall_at_k_gain:+.3f} ({r_low:+.3f}..{r_high:+.3f})"
    if high < 0:
        return Decision(False, f"keep champion: AUC worse beyond the uncertainty: {gain}; {f1}.", c)
    if c.recall_at_k_gain_ci is not None and c.recall_at_k_gain_ci[1] < 0:
        return Decision(False, f"keep champion: recall@{c.k} worse beyond the uncertainty: {gain}; {f1}.", c)
    now = f"on the current regime ({c.now_rows} rows): AUC gain {c.auc_gain_now:+.3f}"
    if more_of_the_regime:
        return Decision(True, f"promoted: trained on a week or more of the current regime than the champion, "
                              f"and not worse within the uncertainty ({now}); {gain}; {f1}.", c)  # fmt: skip
    if c.auc_gain_now <= 0:
        return Decision(False, f"keep champion: not better {now}; {gain}; {f1}.", c)
    return Decision(True, f"promoted: better {now}; {gain}; {f1}.", c)
