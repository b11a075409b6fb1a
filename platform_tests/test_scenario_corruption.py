"""Silent corruption inside the first training window never trains a model (small scale; the full
scale runs standalone: `python platform_tests/scenario_corruption.py`, figures in the README).

Five days carry about 15 % corruption of five kinds that all pass the event contract. Two kinds
have no rule written for them: product ids swapped between records (the price band of each product
catches most) and last week's traffic replayed under new ids (nothing catches it: measured, and kept
as a known gap rather than a rule tuned on the generator).
"""

import json
from pathlib import Path

import pytest

from dataplatform.lib.demo.silent import SilentKind
from scenario_corruption import run_pair

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "corruption"


@pytest.mark.slow
@pytest.mark.scenario
def test_corrupted_days_are_suspect_or_left_out_and_the_first_model_matches_a_clean_run(tmp_path: Path) -> None:
    figures = run_pair(tmp_path, "small", list(SilentKind))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
    dirty, clean = figures["corrupted"], figures["clean"]
    print(json.dumps({k: dirty[k] for k in ("suspect_days", "excluded_days", "detection")}, indent=1))

    bad, excluded = set(dirty["bad_days"]), set(dirty["excluded_days"])
    replayed = dirty["bad_days"][list(SilentKind).index(SilentKind.REPLAYED_TRAFFIC)]
    # Every corrupted day a rule can see is left out of training, and no clean day is.
    assert excluded == bad - {replayed}
    assert set(dirty["suspect_days"]) <= bad and dirty["suspect_days"]
    for training_set in dirty["training_sets"]:
        assert not excluded & {*training_set["train"], *training_set["holdout"]}
    # The clean twin loses no day, and clean records are not marked.
    assert clean["excluded_days"] == {} and clean["suspect_days"] == {}
    assert dirty["detection"]["false_positive_share_clean_days"] < 0.001
    assert dirty["detection"]["clean_records_marked_on_corrupted_days"] <= 3  # 0 here, 1 of ~8,000 at full scale
    kinds = dirty["detection"]["per_kind"]
    assert kinds[SilentKind.PRICES_IN_CENTS]["marked_share"] > 0.95
    assert kinds[SilentKind.PLACEHOLDER_USER]["marked_share"] > 0.95
    assert kinds[SilentKind.PRODUCT_SWAP]["marked_share"] > 0.5  # no rule was written for it
    # The first model is as good as the clean stream's: its AUC is inside the other's bootstrap interval.
    low, high = clean["auc_ci"]
    assert low <= dirty["auc"] <= high
