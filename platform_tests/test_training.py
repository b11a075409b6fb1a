"""Training, evaluation and label-free estimation, on synthetic frames (promotion: test_promotion.py)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from dataplatform.lib.training import (
    DEFAULT_PARAMS,
    Metrics,
    TrainedModel,
    estimate_performance,
    evaluate,
    expected_auc,
    permutation_importance,
    recall_at_k,
    train_model,
)

NUMERIC = [f"x{i}" for i in range(8)]
CATEGORICAL = ["category", "brand"]
FEATURES = [*NUMERIC, *CATEGORICAL]


def synthetic(
    n: int, seed: int, *, noise: bool = False, x0_scale: float = 1.0, x0_shift: float = 0.0, x0_effect: float = 1.5
) -> pl.DataFrame:
    """A frame shaped like the training frames; P(label | features) is fixed, so it is learnable (unless noise).

    ``x0_scale`` / ``x0_shift`` move the distribution of the strongest feature (covariate shift): the
    labelling rule stays the same. ``x0_effect`` changes the rule itself (concept drift).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(NUMERIC)))
    x[:, 0] = x[:, 0] * x0_scale + x0_shift
    category = np.array(["shoes", "bags", "phones", "books"])[rng.integers(0, 4, n)]
    brand = np.array([f"brand{i}" for i in range(300)])[rng.integers(0, 300, n)]  # > 255 levels
    shoes = np.where(category == "shoes", 1.0, 0.0)
    logit = x0_effect * x[:, 0] - 0.8 * x[:, 1] + 0.6 * x[:, 2] * x[:, 3] + shoes - 1.0
    if noise:
        logit = np.full(n, -1.0)
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    frame = pl.DataFrame(
        {
            "example_id": np.arange(n),
            "user_id": rng.integers(0, max(1, n // 20), n),
            "product_id": rng.integers(0, 1000, n),
            "label": label,
            "category": category,
            "brand": brand,
            **{name: x[:, i] for i, name in enumerate(NUMERIC)},
        }
    )
    # missing values: a numeric column and a categorical one
    return frame.with_columns(
        pl.when(pl.col("x4") > 1.0).then(None).otherwise(pl.col("x5")).alias("x5"),
        pl.when(pl.col("x6") > 1.2).then(None).otherwise(pl.col("category")).alias("category"),
    )


@pytest.fixture(scope="module")
def model() -> TrainedModel:
    return train_model(
        synthetic(20_000, seed=1), feature_columns=FEATURES, categorical_columns=CATEGORICAL, n_threads=1
    )


@pytest.fixture(scope="module")
def holdout() -> pl.DataFrame:
    return synthetic(10_000, seed=2)


@pytest.fixture(scope="module")
def holdout_metrics(model: TrainedModel, holdout: pl.DataFrame) -> Metrics:
    return evaluate(model, holdout)


def test_trained_model_records_its_training(model: TrainedModel) -> None:
    assert model.training_rows == 20_000
    assert model.calibration_rows == pytest.approx(4_000, abs=2)
    assert 0.2 < model.label_rate < 0.6
    assert model.training_seconds > 0
    assert 1 <= model.n_iter <= DEFAULT_PARAMS["max_iter"]
    assert model.params["max_leaf_nodes"] == 31 and model.params["early_stopping"] is True
    assert model.feature_columns == tuple(FEATURES)
    assert 0.0 < model.threshold < 1.0
    summary = model.summary()
    assert summary["calibration"] == "sigmoid" and summary["threshold"] == model.threshold


def test_learnable_problem_metrics(holdout_metrics: Metrics) -> None:
    m = holdout_metrics
    assert m.auc is not None and m.auc > 0.75
    for value, interval in ((m.auc, m.auc_ci), (m.precision, m.precision_ci), (m.recall, m.recall_ci)):
        assert value is not None and interval is not None
        lo, hi = interval
        assert lo <= value <= hi and hi - lo < 0.05
    assert abs(m.mean_predicted - m.positive_rate) < 0.02  # calibrated
    assert m.log_loss < 0.6
    assert m.recall_at_k is not None and 0.0 < m.recall_at_k <= 1.0 and m.n_groups > 100
    record = m.to_dict()
    assert record["auc_ci"] == list(m.auc_ci or ()) and record["k"] == 10


def test_pure_noise_gives_chance_auc() -> None:
    noise = train_model(
        synthetic(8_000, seed=3, noise=True), feature_columns=FEATURES, categorical_columns=CATEGORICAL, n_threads=1
    )
    m = evaluate(noise, synthetic(8_000, seed=4, noise=True), bootstrap=100)
    assert m.auc is not None and abs(m.auc - 0.5) < 0.04
    assert m.auc_ci is not None and m.auc_ci[0] < 0.5 < m.auc_ci[1]


def test_unseen_categories_and_nulls_score(model: TrainedModel) -> None:
    frame = synthetic(3, seed=5).with_columns(
        pl.Series("brand", ["never-seen", None, "brand1"]), pl.Series("category", [None, "new", "shoes"])
    )
    proba = model.predict_proba(frame)
    assert proba.shape == (3,) and np.isfinite(proba).all() and ((proba > 0) & (proba < 1)).all()
    with pytest.raises(ValueError, match="lacks feature columns"):
        model.predict_proba(frame.drop("x0"))


def test_recall_at_k_hand_example() -> None:
    # user 1: positives ranked 1st and 3rd of 4 -> top 2 holds one of two positives: 0.5
    # user 2: one positive ranked 2nd -> 1.0
    # user 3: no positive -> not averaged
    # user 4: three rows tied; one positive; 2 of 3 slots -> 2/3 in expectation
    groups = [1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 4]
    scores = [0.9, 0.8, 0.7, 0.1, 0.5, 0.6, 0.9, 0.8, 0.3, 0.3, 0.3]
    labels = [1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0]
    value, n_groups = recall_at_k(np.array(scores), np.array(labels), pl.Series(groups), k=2)
    assert n_groups == 3
    assert value == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert recall_at_k(np.array(scores), np.array(labels), pl.Series(groups), k=10)[0] == pytest.approx(1.0)


def test_evaluate_without_group_or_second_class(model: TrainedModel, holdout: pl.DataFrame) -> None:
    m = evaluate(model, holdout.drop("user_id"), bootstrap=0)
    assert m.recall_at_k is None and m.auc_ci is None and m.auc is not None
    negatives = holdout.filter(pl.col("label") == 0).head(500)
    one_class = evaluate(model, negatives, bootstrap=20)
    assert one_class.auc is None and one_class.recall is None and one_class.auc_ci is None


def test_expected_auc_equals_auc_when_probabilities_are_the_labels() -> None:
    rng = np.random.default_rng(6)
    scores = rng.integers(0, 50, 2_000).astype(float)  # many ties
    labels = (rng.random(2_000) < 0.3).astype(float)
    assert expected_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_estimated_performance_matches_realized_same_distribution(
    model: TrainedModel, holdout: pl.DataFrame, holdout_metrics: Metrics
) -> None:
    estimate = estimate_performance(model, holdout.drop("label"))
    assert estimate.expected_auc is not None and holdout_metrics.auc is not None
    assert abs(estimate.expected_auc - holdout_metrics.auc) < 0.03
    assert abs((estimate.expected_precision or 0) - (holdout_metrics.precision or 0)) < 0.03
    assert abs((estimate.expected_recall or 0) - (holdout_metrics.recall or 0)) < 0.03
    assert abs(estimate.expected_positive_rate - holdout_metrics.positive_rate) < 0.02


def test_estimated_performance_tracks_covariate_shift(model: TrainedModel, holdout_metrics: Metrics) -> None:
    shifted = synthetic(10_000, seed=7, x0_scale=0.4, x0_shift=0.3)  # the strongest feature loses spread
    realized = evaluate(model, shifted, bootstrap=0)
    estimate = estimate_performance(model, shifted.drop("label"))
    assert realized.auc is not None and holdout_metrics.auc is not None and estimate.expected_auc is not None
    assert holdout_metrics.auc - realized.auc > 0.05  # the shift really costs AUC ...
    assert abs(estimate.expected_auc - realized.auc) < 0.03  # ... and the estimate sees it without labels
    assert abs((estimate.expected_recall or 0) - (realized.recall or 0)) < 0.04


def test_train_model_rejects_bad_input() -> None:
    frame = synthetic(500, seed=8)
    with pytest.raises(ValueError, match="single class"):
        train_model(frame.with_columns(label=pl.lit(0)), feature_columns=FEATURES, categorical_columns=CATEGORICAL)
    with pytest.raises(ValueError, match="not in feature_columns"):
        train_model(frame, feature_columns=NUMERIC, categorical_columns=["brand"])
    with pytest.raises(ValueError, match="set by train_model"):
        train_model(frame, feature_columns=FEATURES, categorical_columns=CATEGORICAL, params={"random_state": 1})


def test_sample_weights_move_the_model_towards_the_weighted_rows() -> None:
    # Two regimes with opposite signs of x0: weighting one of them up makes the model rank like it.
    old, new = synthetic(6000, seed=5), synthetic(6000, seed=6, x0_effect=-1.5)
    frame = pl.concat([old.with_columns(weight=pl.lit(1.0)), new.with_columns(weight=pl.lit(0.05))])
    towards_old = train_model(frame, feature_columns=FEATURES, categorical_columns=CATEGORICAL, weight="weight")
    towards_new = train_model(
        frame.with_columns(weight=1.05 - pl.col("weight")), feature_columns=FEATURES, categorical_columns=CATEGORICAL,
        weight="weight",
    )  # fmt: skip
    probe = synthetic(4000, seed=7, x0_effect=-1.5)
    assert evaluate(towards_new, probe, bootstrap=0).auc > evaluate(towards_old, probe, bootstrap=0).auc + 0.05


def test_permutation_importance_names_what_the_model_uses(model: TrainedModel, holdout: pl.DataFrame) -> None:
    importance = permutation_importance(model, holdout)
    assert sum(importance.values()) == pytest.approx(1.0)
    assert max(importance, key=importance.__getitem__) == "x0"  # the strongest term of the labelling rule
    assert importance["x7"] < 0.02  # not in the rule
