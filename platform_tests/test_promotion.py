"""The promotion rule: ranking quality with a paired bootstrap, thresholds re-tuned on the holdout, and
"better on the regime the data is in now"."""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl
import pytest

from dataplatform.lib import promotion
from dataplatform.lib.training import TrainedModel, evaluate, train_model
from test_training import CATEGORICAL, FEATURES, synthetic

OLD_DAY, NEW_DAY = dt.date(2026, 3, 1), dt.date(2026, 3, 2)


def _train(frame: pl.DataFrame) -> TrainedModel:
    return train_model(frame, feature_columns=FEATURES, categorical_columns=CATEGORICAL, n_threads=1)


def _on(day: dt.date, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.lit(day).alias("event_date"))


@pytest.fixture(scope="module")
def regimes() -> dict[str, TrainedModel]:
    """A model of the old regime and one of the new (the strongest feature's effect reversed)."""
    return {"old": _train(synthetic(12_000, seed=11)), "new": _train(synthetic(12_000, seed=12, x0_effect=-1.5))}


def test_a_first_model_is_promoted_only_above_chance() -> None:
    assert promotion.judge_first(0.70).promote
    weak = promotion.judge_first(0.51)
    assert not weak.promote and "0.520" in weak.reason
    assert not promotion.judge_first(None).promote


def test_a_challenger_of_the_new_regime_replaces_a_champion_of_the_old(regimes: dict) -> None:
    holdout = _on(NEW_DAY, synthetic(4000, seed=13, x0_effect=-1.5))
    decision = promotion.judge(promotion.compare(regimes["old"], regimes["new"], holdout, now_days=[NEW_DAY]))
    comparison = decision.comparison
    assert decision.promote and decision.reason.startswith("promoted: better on the current regime")
    assert comparison is not None and comparison.auc_gain_ci is not None
    assert comparison.auc_gain > 0.1 and comparison.auc_gain_ci[0] > 0.05
    assert comparison.recall_at_k_gain is not None and comparison.recall_at_k_gain > 0


def test_a_challenger_no_better_keeps_the_champion(regimes: dict) -> None:
    holdout = _on(OLD_DAY, synthetic(4000, seed=14))
    same = promotion.judge(promotion.compare(regimes["old"], regimes["old"], holdout))
    assert not same.promote and "not better on the current regime" in same.reason
    assert same.comparison is not None and same.comparison.auc_gain_ci == (0.0, 0.0)
    worse = promotion.judge(promotion.compare(regimes["old"], regimes["new"], holdout))
    assert not worse.promote and "worse beyond the uncertainty" in worse.reason


def test_better_on_the_whole_holdout_is_not_enough_when_the_current_regime_says_otherwise(regimes: dict) -> None:
    # Three quarters of the holdout is from before the onset: the old regime's model wins there, and
    # loses on the day after it, which is what the data is now.
    before, after = synthetic(6000, seed=15), synthetic(2000, seed=16, x0_effect=-1.5)
    holdout = pl.concat([_on(OLD_DAY, before), _on(NEW_DAY, after)])
    overall = promotion.compare(regimes["new"], regimes["old"], holdout)
    assert overall.auc_gain is not None and overall.auc_gain > 0
    decision = promotion.judge(promotion.compare(regimes["new"], regimes["old"], holdout, now_days=[NEW_DAY]))
    assert not decision.promote and decision.comparison is not None and decision.comparison.auc_gain_now < 0


def test_a_stale_decision_threshold_is_re_tuned_before_precision_and_recall_are_compared(regimes: dict) -> None:
    holdout = _on(OLD_DAY, synthetic(4000, seed=17))
    champion = regimes["old"]
    stale = dataclasses.replace(champion, threshold=0.999)  # nothing is predicted positive at its own cut
    assert evaluate(stale, holdout, bootstrap=0).recall == 0.0
    fresh, retuned = (promotion.compare(m, champion, holdout).champion for m in (champion, stale))
    assert retuned.f1 == fresh.f1 and retuned.threshold == fresh.threshold < 0.999


def test_the_paired_interval_is_narrower_than_the_models_own_intervals(regimes: dict) -> None:
    # Two models of one regime trained on different draws: each AUC is uncertain, their difference far less.
    holdout = _on(OLD_DAY, synthetic(3000, seed=18))
    sibling = _train(synthetic(12_000, seed=19))
    comparison = promotion.compare(regimes["old"], sibling, holdout)
    assert comparison.auc_gain_ci is not None
    own = evaluate(sibling, holdout).auc_ci
    assert own is not None
    assert comparison.auc_gain_ci[1] - comparison.auc_gain_ci[0] < 0.5 * (own[1] - own[0])


def test_a_follow_up_with_more_of_the_regime_is_promoted_unless_the_data_say_it_is_worse(regimes: dict) -> None:
    holdout = _on(NEW_DAY, synthetic(3000, seed=20, x0_effect=-1.5))
    sibling = _train(synthetic(12_000, seed=21, x0_effect=-1.5))
    even = promotion.compare(regimes["new"], sibling, holdout)
    assert even.auc_gain_ci is not None and even.auc_gain_ci[0] < 0 < even.auc_gain_ci[1]  # the holdout cannot tell
    kept = promotion.judge(dataclasses.replace(even, auc_gain_now=-0.001))
    assert not kept.promote
    follow_up = promotion.judge(dataclasses.replace(even, auc_gain_now=-0.001), more_of_the_regime=True)
    assert follow_up.promote and "a week or more of the current regime" in follow_up.reason
    worse = promotion.compare(regimes["new"], regimes["old"], holdout)
    assert not promotion.judge(worse, more_of_the_regime=True).promote
