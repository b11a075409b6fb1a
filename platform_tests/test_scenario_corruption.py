"""Silent corruption inside the first training window never trains a model (small scale; the full
scale runs standalone: `python platform_tests/scenario_corruption.py`, figures in the README).

Five days carry about 15 % corruption that passes the event contract, one kind a day, from each of
two authors: the platform's own kinds (`lib/demo/silent.py`) and a second author's who never saw the
detectors (`silent_second_author.py`). Against one clean twin of the same stream.
"""

import json
from pathlib import Path
from typing import Any

import pytest

import silent_second_author as second
from dataplatform.lib.demo.silent import SilentKind
from scenario_corruption import run_streams

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "corruption"
# Measured and left as a known gap: some users' local time sent as UTC moves 15 % of a day's records by
# 4-8 hours; tier 2 flags hour_of_day at about 1.2x its threshold (WARN), which is not abrupt enough to
# call the day corrupted, and no record rule knows a user's hours. Neither asserted caught nor missed.
UNCAUGHT = {second.LOCAL_TIME_AS_UTC}


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    figures = run_streams(tmp_path_factory.mktemp("corruption"), "small", ["first", "second"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
    return figures


def _left_out_of_training(dirty: dict[str, Any]) -> set[str]:
    excluded = set(dirty["excluded_days"])
    for training_set in dirty["training_sets"]:
        assert not excluded & {*training_set["train"], *training_set["holdout"]}
    return excluded


def _first_model_matches_the_clean_run(dirty: dict[str, Any], clean: dict[str, Any]) -> None:
    low, high = clean["auc_ci"]
    assert low <= dirty["auc"] <= high


@pytest.mark.slow
@pytest.mark.scenario
def test_the_clean_stream_loses_no_day_and_marks_no_record(figures: dict[str, Any]) -> None:
    clean = figures["clean"]
    assert clean["excluded_days"] == {} and clean["suspect_days"] == {}
    assert clean["detection"]["false_positive_share_clean_days"] < 0.001


@pytest.mark.slow
@pytest.mark.scenario
def test_the_platforms_own_kinds_never_train_a_model(figures: dict[str, Any]) -> None:
    dirty = figures["first"]
    print(json.dumps({k: dirty[k] for k in ("suspect_days", "excluded_days", "detection")}, indent=1))
    # Every corrupted day is left out of training, and no clean day is.
    assert _left_out_of_training(dirty) == set(dirty["bad_days"])
    assert set(dirty["suspect_days"]) <= set(dirty["bad_days"]) and dirty["suspect_days"]
    assert dirty["detection"]["false_positive_share_clean_days"] < 0.001
    assert dirty["detection"]["clean_records_marked_on_corrupted_days"] <= 3
    kinds = dirty["detection"]["per_kind"]
    for kind in (SilentKind.PRICES_IN_CENTS, SilentKind.PLACEHOLDER_USER, SilentKind.REPLAYED_TRAFFIC):
        assert kinds[kind]["marked_share"] > 0.95, kind
    assert kinds[SilentKind.PRODUCT_SWAP]["marked_share"] > 0.5
    _first_model_matches_the_clean_run(dirty, figures["clean"])


@pytest.mark.slow
@pytest.mark.scenario
def test_a_second_authors_kinds_are_left_out_of_training_but_for_the_measured_gap(figures: dict[str, Any]) -> None:
    dirty = figures["second"]
    print(json.dumps({k: dirty[k] for k in ("suspect_days", "excluded_days", "detection")}, indent=1))
    bad = set(dirty["bad_days"])
    gap = {day for day, kind in dirty["kind_of_day"].items() if kind in UNCAUGHT}
    excluded = _left_out_of_training(dirty)
    assert bad - gap <= excluded <= bad
    assert dirty["detection"]["false_positive_share_clean_days"] < 0.001
    _first_model_matches_the_clean_run(dirty, figures["clean"])
