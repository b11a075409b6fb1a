"""Model training, offline evaluation and label-free performance estimation (promotion: lib/promotion.py).

Pure logic (no Dagster): Polars frames in, plain dataclasses out.

**Model.** A scikit-learn ``Pipeline``: a ``ColumnTransformer`` that ordinal-encodes the categorical
columns (missing and unseen categories both become ``-1``; categories beyond ``max_bins - 1`` per
column, the rarest ones, are grouped into one "infrequent" code, because the booster accepts at most
``max_bins`` distinct values per categorical feature) and passes numeric columns through as float64
(nulls become NaN, which the booster handles natively: each split learns which side missing values
go to), followed by ``HistGradientBoostingClassifier`` with the encoded columns declared categorical.

Default hyperparameters (:data:`DEFAULT_PARAMS`, overridable with ``params=``): ``max_iter=200``
boosting rounds at most, ``learning_rate=0.1``, ``max_leaf_nodes=31``, ``min_samples_leaf=20``,
``l2_regularization=0.0``, ``max_bins=255``, and early stopping on: 10% of the fitting rows
(stratified) are held out by the booster and training stops when their log loss has not improved by
``tol`` for ``n_iter_no_change=10`` rounds. These are scikit-learn's own defaults except ``max_iter``
(100 → 200, cheap with early stopping) and early stopping forced on for every size (scikit-learn
enables it automatically only above 10k rows), so small and large runs behave alike.

**Calibration and decision threshold.** ``train_model`` holds out a stratified slice of the
training frame (``calibration_fraction``, 20% by default) that the booster never sees. On that
slice it fits a calibrator from the booster's raw score (log-odds) to a probability, and picks the
decision threshold that maximizes F1 of the calibrated probabilities. The default calibrator is
Platt scaling (``"sigmoid"``: a logistic regression on the log-odds, two parameters): it is strictly
increasing, so rankings (AUC, recall@k) are those of the raw scores, and it is stable on small
slices. ``"isotonic"`` is more flexible but piecewise constant. Rankings always use the raw score,
probabilities (log loss, thresholded metrics, performance estimation) the calibrated one.

**Label-free estimation** (:func:`estimate_performance`, after NannyML's CBPE): if the calibrated
probability ``p_i`` is right, label ``i`` is a Bernoulli(``p_i``) draw, so expected confusion counts
at the threshold are sums of ``p_i`` (TP), ``1 - p_i`` (FP) over predicted positives, and the expected
AUC is the ``p``-weighted share of correctly ordered (positive, negative) pairs, computed in
O(n log n) after one sort. It stays valid under covariate shift (``P(x)`` changes, ``P(y | x)`` does
not) as long as the model remains calibrated on the new region; it cannot see concept drift.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

# scikit-learn is imported where it is used: it takes most of a second to import, and every run process
# of the code location (an ingestion micro-batch too) imports this module.
if TYPE_CHECKING:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

CalibrationMethod = Literal["sigmoid", "isotonic"]

DEFAULT_PARAMS: Final[Mapping[str, Any]] = {
    "max_iter": 200,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 0.0,
    "max_bins": 255,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
    "tol": 1e-7,
    "scoring": "loss",
}
_MANAGED_PARAMS: Final = frozenset({"categorical_features", "random_state", "loss"})
_LOG_LOSS_EPS: Final = 1e-15
BOOTSTRAP_CELLS: Final = 4_000_000  # resamples x rows held in memory at once by the bootstrap


# --- the model ----------------------------------------------------------------------------------


def _nulls_to_nan(X: Any) -> np.ndarray:
    """Polars nulls arrive as ``None`` in object arrays; OrdinalEncoder treats only NaN as missing."""
    arr = X.to_numpy() if isinstance(X, pl.DataFrame) else np.asarray(X)
    arr = np.array(arr, dtype=object, copy=True)
    arr[np.equal(arr, cast(Any, None))] = np.nan  # numpy's own loop; the cast only tells mypy None is meant
    return arr


@dataclass(frozen=True)
class Calibrator:
    """Maps the booster's raw score (log-odds) to a calibrated probability of the positive class."""

    method: CalibrationMethod
    estimator: LogisticRegression | IsotonicRegression

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, method: CalibrationMethod, weights: np.ndarray) -> Calibrator:
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression

        if method == "sigmoid":
            return cls(method, LogisticRegression(C=np.inf).fit(raw.reshape(-1, 1), y, sample_weight=weights))
        if method == "isotonic":
            isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            return cls(method, isotonic.fit(raw, y, sample_weight=weights))
        raise ValueError(f"unknown calibration method {method!r} (sigmoid or isotonic)")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "sigmoid":
            probability: np.ndarray = self.estimator.predict_proba(raw.reshape(-1, 1))[:, 1]
            return probability
        return np.asarray(self.estimator.predict(raw), dtype=np.float64)


@dataclass(frozen=True)
class TrainedModel:
    """A fitted pipeline with what is needed to score, evaluate and register it."""

    pipeline: Pipeline
    calibrator: Calibrator
    feature_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    label: str
    params: dict[str, Any]  # the booster's effective hyperparameters
    threshold: float  # decision threshold on the calibrated probability (max F1 on the calibration slice)
    training_rows: int  # rows of the training frame (fit + calibration slices)
    calibration_rows: int
    label_rate: float  # share of positives in the training frame
    training_seconds: float  # wall time of train_model (conversion, fit, calibration)
    trained_at: str  # UTC, ISO 8601
    n_iter: int  # boosting rounds actually run (early stopping)
    seed: int
    sklearn_version: str = field(default_factory=lambda: importlib.metadata.version("scikit-learn"))

    def features(self, frame: pl.DataFrame) -> pl.DataFrame:
        return model_input(frame, self.feature_columns, self.categorical_columns)

    def decision_scores(self, frame: pl.DataFrame) -> np.ndarray:
        """Raw scores (log-odds before calibration): use them to rank."""
        return np.asarray(self.pipeline.decision_function(self.features(frame)), dtype=np.float64)

    def predict_proba(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class, one per row."""
        return self.calibrator(self.decision_scores(frame))

    def score(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(raw scores, calibrated probabilities) with one pass through the pipeline."""
        raw = self.decision_scores(frame)
        return raw, self.calibrator(raw)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (for model cards and run metadata)."""
        return {
            "feature_columns": list(self.feature_columns),
            "categorical_columns": list(self.categorical_columns),
            "label": self.label,
            "params": dict(self.params),
            "calibration": self.calibrator.method,
            "threshold": self.threshold,
            "training_rows": self.training_rows,
            "calibration_rows": self.calibration_rows,
            "label_rate": self.label_rate,
            "training_seconds": self.training_seconds,
            "trained_at": self.trained_at,
            "n_iter": self.n_iter,
            "seed": self.seed,
            "sklearn_version": self.sklearn_version,
        }


def model_input(
    frame: pl.DataFrame, feature_columns: Sequence[str], categorical_columns: Sequence[str]
) -> pl.DataFrame:
    """The feature columns in order: categoricals as text, everything else as float64 (null stays null)."""
    missing = [c for c in feature_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks feature columns {missing}")
    categorical = set(categorical_columns)
    return frame.select(
        pl.col(c).cast(pl.String) if c in categorical else pl.col(c).cast(pl.Float64) for c in feature_columns
    )


def _labels(frame: pl.DataFrame, label: str) -> np.ndarray:
    if label not in frame.columns:
        raise ValueError(f"frame lacks the label column {label!r}")
    column = frame.get_column(label)
    if column.null_count():
        raise ValueError(f"label column {label!r} has {column.null_count()} nulls")
    values = column.cast(pl.Float64).to_numpy()
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"label column {label!r} must hold only 0 and 1")
    return values.astype(np.int64)


def _stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, holdout indices): ``fraction`` of each class held out, both sorted."""
    held: list[np.ndarray] = []
    for cls in (0, 1):
        members = rng.permutation(np.flatnonzero(y == cls))
        held.append(members[: max(1, round(len(members) * fraction))])
    holdout = np.sort(np.concatenate(held))
    mask = np.ones(len(y), dtype=bool)
    mask[holdout] = False
    return np.flatnonzero(mask), holdout


def max_f1_threshold(proba: np.ndarray, y: np.ndarray) -> float:
    """Threshold t maximizing F1 of ``proba >= t`` (t is one of the observed probabilities)."""
    order = np.argsort(-proba, kind="stable")
    p, yy = proba[order], y[order]
    tp = np.cumsum(yy)
    predicted = np.arange(1, len(p) + 1)
    last_of_tie = np.r_[p[1:] != p[:-1], True]  # a threshold keeps or drops a tie group as a whole
    f1 = 2 * tp / (predicted + yy.sum())
    f1 = np.where(last_of_tie, f1, -1.0)
    return float(p[int(np.argmax(f1))])


def train_model(
    frame: pl.DataFrame,
    *,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str] = (),
    label: str = "label",
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    calibration: CalibrationMethod = "sigmoid",
    calibration_fraction: float = 0.2,
    n_threads: int | None = None,
    weight: str | None = None,
) -> TrainedModel:
    """Fit the pipeline on ``1 - calibration_fraction`` of the rows, calibrate and pick the threshold on the rest.

    ``weight`` names a column of per-row sample weights (recent days weighted up after a drift, say):
    the booster's fit and the calibrator use them.

    ``n_threads`` caps the booster's OpenMP threads during the fit (None: all cores). Set it when
    several runs share a machine: OpenMP threads spin while waiting, so oversubscribed cores make
    the fit many times slower, not just proportionally slower.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    started = time.perf_counter()
    features = tuple(feature_columns)
    categorical = tuple(c for c in features if c in set(categorical_columns))
    if unknown := sorted(set(categorical_columns) - set(features)):
        raise ValueError(f"categorical columns {unknown} are not in feature_columns")
    if not 0.0 < calibration_fraction < 0.5:
        raise ValueError("calibration_fraction must be in (0, 0.5)")
    overrides = dict(params or {})
    if managed := sorted(_MANAGED_PARAMS & overrides.keys()):
        raise ValueError(f"params {managed} are set by train_model (categorical columns, seed)")
    y = _labels(frame, label)
    if y.min() == y.max():
        raise ValueError(f"the training frame has a single class ({int(y[0])}); nothing to learn")

    hyper = {**DEFAULT_PARAMS, **overrides}
    numeric = [c for c in features if c not in categorical]
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=-1,
        encoded_missing_value=-1,
        max_categories=int(hyper["max_bins"]) - 1,  # + the -1 code: at most max_bins distinct values
    )
    cat_branch = Pipeline(
        [("nulls", FunctionTransformer(_nulls_to_nan, feature_names_out="one-to-one")), ("encode", encoder)]
    )
    transformers: list[tuple[str, Any, list[str]]] = []
    if categorical:
        transformers.append(("categorical", cat_branch, list(categorical)))
    if numeric:
        transformers.append(("numeric", "passthrough", numeric))
    booster = HistGradientBoostingClassifier(
        categorical_features=list(range(len(categorical))) or None, random_state=seed
    ).set_params(**hyper)
    pipeline = Pipeline([("columns", ColumnTransformer(transformers, sparse_threshold=0.0)), ("booster", booster)])

    rng = np.random.default_rng(seed)
    fit_idx, cal_idx = _stratified_split(y, calibration_fraction, rng)
    if min(int(y[fit_idx].sum()), int((1 - y[fit_idx]).sum())) < 2:
        raise ValueError("too few examples of the minority class to fit and calibrate (need ≥ 3)")
    X = model_input(frame, features, categorical)
    w = frame.get_column(weight).cast(pl.Float64).to_numpy() if weight else np.ones(len(y))
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        pipeline.fit(X[fit_idx], y[fit_idx], booster__sample_weight=w[fit_idx])
    raw_cal = np.asarray(pipeline.decision_function(X[cal_idx]), dtype=np.float64)
    calibrator = Calibrator.fit(raw_cal, y[cal_idx], calibration, w[cal_idx])
    threshold = max_f1_threshold(calibrator(raw_cal), y[cal_idx])

    effective = {k: v for k, v in booster.get_params().items() if k in hyper}
    return TrainedModel(
        pipeline=pipeline,
        calibrator=calibrator,
        feature_columns=features,
        categorical_columns=categorical,
        label=label,
        params=effective,
        threshold=threshold,
        training_rows=frame.height,
        calibration_rows=len(cal_idx),
        label_rate=float(y.mean()),
        training_seconds=round(time.perf_counter() - started, 3),
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        n_iter=int(booster.n_iter_),
        seed=seed,
    )


# --- offline evaluation ---------------------------------------------------------------------------


Interval = tuple[float, float]


@dataclass(frozen=True)
class Metrics:
    """Offline metrics on one labelled frame. ``None`` where a metric is undefined."""

    n: int
    n_positive: int
    positive_rate: float
    mean_predicted: float  # mean calibrated probability: compare with positive_rate
    auc: float | None  # None when the frame holds one class only
    auc_ci: Interval | None  # 95% percentile bootstrap
    precision: float | None  # at `threshold`; None when nothing is predicted positive
    precision_ci: Interval | None
    recall: float | None  # at `threshold`; None without positives
    recall_ci: Interval | None
    log_loss: float
    threshold: float
    predicted_positive_rate: float
    recall_at_k: float | None  # None without a group column or without any group holding a positive
    k: int
    n_groups: int  # groups with at least one positive (the recall@k average runs over these)
    bootstrap: int

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _tie_groups(sorted_values: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    return np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])


def weighted_auc(pos: np.ndarray, neg: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """AUC per row of weights (rows, n) given in ascending score order; ties count one half."""
    pos_g = np.add.reduceat(pos, starts, axis=-1)
    neg_g = np.add.reduceat(neg, starts, axis=-1)
    below = np.cumsum(neg_g, axis=-1) - neg_g
    numerator = (pos_g * (below + 0.5 * neg_g)).sum(axis=-1)
    denominator = pos_g.sum(axis=-1) * neg_g.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> Interval | None:
    """The central `level` interval of bootstrap draws (non-finite draws left out); None without any."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _bootstrap(
    scores: np.ndarray, proba: np.ndarray, y: np.ndarray, threshold: float, resamples: int, seed: int
) -> tuple[Interval | None, Interval | None, Interval | None]:
    """95% CIs of AUC, precision, recall: ``resamples`` draws of n rows with replacement, as count matrices."""
    n = len(y)
    order = np.argsort(scores, kind="stable")
    starts = _tie_groups(scores[order])
    y_sorted = y[order].astype(np.float64)
    hit = (proba[order] >= threshold).astype(np.float64)
    rng = np.random.default_rng(seed)
    aucs, precisions, recalls = [], [], []
    chunk = max(1, min(resamples, BOOTSTRAP_CELLS // max(n, 1)))
    for first in range(0, resamples, chunk):
        rows = min(chunk, resamples - first)
        draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        pos = counts * y_sorted
        aucs.append(weighted_auc(pos, counts - pos, starts))
        tp, predicted, positives = pos @ hit, counts @ hit, pos.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precisions.append(np.where(predicted > 0, tp / predicted, np.nan))
            recalls.append(np.where(positives > 0, tp / positives, np.nan))
    return (
        percentile_interval(np.concatenate(aucs)),
        percentile_interval(np.concatenate(precisions)),
        percentile_interval(np.concatenate(recalls)),
    )


def recall_at_k(
    scores: np.ndarray, labels: np.ndarray, groups: pl.Series | np.ndarray, k: int
) -> tuple[float | None, int]:
    """Mean over groups with ≥ 1 positive of (positives ranked in the group's top k) / (group's positives).

    Ties are broken at random in expectation: a tie group straddling the cut at k contributes each
    member with probability (free slots) / (group size), so the value does not depend on row order.
    Rows with a null group are ignored. Returns (recall@k, number of groups averaged).
    """
    if k < 1:
        raise ValueError("k must be ≥ 1")
    df = pl.DataFrame({"g": groups, "s": scores, "y": labels}).filter(pl.col("g").is_not_null())
    per_group = (
        df.with_columns(
            above=pl.col("s").rank("min", descending=True).over("g") - 1,
            tied=pl.len().over("g", "s"),
        )
        .with_columns(inside=(k - pl.col("above")).clip(0, pl.col("tied")) / pl.col("tied"))
        .group_by("g")
        .agg(hits=(pl.col("y") * pl.col("inside")).sum(), positives=pl.col("y").sum())
        .filter(pl.col("positives") > 0)
    )
    if per_group.is_empty():
        return None, 0
    value = per_group.select((pl.col("hits") / pl.col("positives")).mean()).item()
    return float(value), per_group.height


def evaluate(
    model: TrainedModel,
    frame: pl.DataFrame,
    *,
    k: int = 10,
    group: str | None = "user_id",
    bootstrap: int = 200,
    seed: int = 0,
    threshold: float | None = None,
) -> Metrics:
    """Metrics of ``model`` on a labelled frame (a recent holdout); ``threshold`` defaults to the model's."""
    from sklearn.metrics import roc_auc_score

    y = _labels(frame, model.label)
    if not len(y):
        raise ValueError("cannot evaluate on an empty frame")
    cut = model.threshold if threshold is None else threshold
    scores, proba = model.score(frame)
    positives = int(y.sum())
    two_classes = 0 < positives < len(y)
    predicted = proba >= cut
    tp = int((predicted & (y == 1)).sum())
    clipped = np.clip(proba, _LOG_LOSS_EPS, 1 - _LOG_LOSS_EPS)
    log_loss = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log1p(-clipped)))
    auc_ci = precision_ci = recall_ci = None
    if bootstrap > 0:
        auc_ci, precision_ci, recall_ci = _bootstrap(scores, proba, y, cut, bootstrap, seed)
    r_at_k, n_groups = (None, 0)
    if group is not None and group in frame.columns:
        r_at_k, n_groups = recall_at_k(scores, y, frame.get_column(group), k)
    return Metrics(
        n=len(y),
        n_positive=positives,
        positive_rate=positives / len(y),
        mean_predicted=float(proba.mean()),
        auc=float(roc_auc_score(y, scores)) if two_classes else None,
        auc_ci=auc_ci if two_classes else None,
        precision=tp / int(predicted.sum()) if predicted.any() else None,
        precision_ci=precision_ci,
        recall=tp / positives if positives else None,
        recall_ci=recall_ci,
        log_loss=log_loss,
        threshold=cut,
        predicted_positive_rate=float(predicted.mean()),
        recall_at_k=r_at_k,
        k=k,
        n_groups=n_groups,
        bootstrap=bootstrap,
    )


# --- label-free estimation ------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimatedMetrics:
    """Expected metrics on an unlabelled frame, assuming the calibrated probabilities are right."""

    n: int
    expected_auc: float | None
    expected_precision: float | None
    expected_recall: float | None
    expected_positive_rate: float
    predicted_positive_rate: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def expected_auc(scores: np.ndarray, proba: np.ndarray) -> float | None:
    """E[AUC] ≈ Σ_{i≠j} p_i (1 − p_j) ([s_i > s_j] + ½[s_i = s_j]) / Σ_{i≠j} p_i (1 − p_j), in O(n log n)."""
    order = np.argsort(scores, kind="stable")
    p = proba[order].astype(np.float64)
    starts = _tie_groups(scores[order])
    pos_g = np.add.reduceat(p, starts)
    neg_g = np.add.reduceat(1.0 - p, starts)
    below = np.cumsum(neg_g) - neg_g
    self_pairs = float((p * (1.0 - p)).sum())  # i = j terms, each counted as a tie above
    numerator = float((pos_g * (below + 0.5 * neg_g)).sum()) - 0.5 * self_pairs
    denominator = float(p.sum() * (1.0 - p).sum()) - self_pairs
    return numerator / denominator if denominator > 0 else None


def estimate_performance(
    model: TrainedModel, frame: pl.DataFrame, *, threshold: float | None = None
) -> EstimatedMetrics:
    """Confidence-based performance estimation (CBPE) of ``model`` on ``frame``; needs no labels."""
    if not frame.height:
        raise ValueError("cannot estimate performance on an empty frame")
    cut = model.threshold if threshold is None else threshold
    scores, proba = model.score(frame)
    predicted = proba >= cut
    expected_tp = float(proba[predicted].sum())
    expected_positives = float(proba.sum())
    return EstimatedMetrics(
        n=frame.height,
        expected_auc=expected_auc(scores, proba),
        expected_precision=expected_tp / int(predicted.sum()) if predicted.any() else None,
        expected_recall=expected_tp / expected_positives if expected_positives > 0 else None,
        expected_positive_rate=expected_positives / frame.height,
        predicted_positive_rate=float(predicted.mean()),
        threshold=cut,
    )


def permutation_importance(model: TrainedModel, frame: pl.DataFrame, *, seed: int = 0) -> dict[str, float]:
    """Each feature's share of the model's ranking skill: the AUC it loses on `frame` when that feature's
    values are shuffled (a loss below 0 counts 0), over the sum of all losses. Empty when the frame holds
    one class or no feature matters."""
    from sklearn.metrics import roc_auc_score

    y = _labels(frame, model.label)
    if not 0 < y.sum() < len(y):
        return {}
    base = roc_auc_score(y, model.decision_scores(frame))
    losses = {}
    for column in model.feature_columns:
        shuffled = frame.with_columns(pl.col(column).shuffle(seed=seed))
        losses[column] = max(0.0, base - roc_auc_score(y, model.decision_scores(shuffled)))
    total = sum(losses.values())
    return {c: loss / total for c, loss in losses.items()} if total > 0 else {}
