"""14 weeks of events through the real assets: the loop notices drift, retrains on the new regime, and
recovers about as well as retraining every day, with a fraction of the retrains; on a stationary
stream it leaves the model alone. Figures and the chart go to test-artifacts/.
"""

import dataclasses
import json
from pathlib import Path

import dagster as dg
import pytest

from scenario_loop import materialize_or_fail, plot, run_streams, summary

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "scenario"


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict:
    results = run_streams(tmp_path_factory.mktemp("scenario"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    plot(results, ARTIFACTS / "auc_over_time.png")
    figures = summary(results)
    (ARTIFACTS / "figures.json").write_text(
        json.dumps({**figures, "results": {k: dataclasses.asdict(v) for k, v in results.items()}}, indent=1)
    )
    print(json.dumps({k: v for k, v in figures.items() if k != "requests"}, indent=1))
    return figures


@pytest.mark.slow
@pytest.mark.scenario
@pytest.mark.parametrize("stream", ["drift", "concept"])
def test_the_loop_recovers_from_drift_about_as_well_as_retraining_every_day(figures: dict, stream: str) -> None:
    loop = figures[stream]
    assert loop["requests_before_onset"] == 0  # never before the drift
    assert loop["days_from_onset_to_promotion"] is not None and loop["days_from_onset_to_promotion"] <= 7
    assert loop["auc_last_14_days_with_loop"] > loop["auc_last_14_days_fixed_model"] + 0.01
    assert loop["auc_last_14_days_with_loop"] >= loop["auc_last_14_days_every_day"] - 0.01
    assert loop["retrains"] <= loop["every_day_retrains"] / 5


@pytest.mark.slow
@pytest.mark.scenario
def test_a_stationary_stream_is_never_retrained(figures: dict) -> None:
    assert figures["requests"]["control"] == []


@dg.asset
def broken_asset() -> None:
    raise ValueError("the broken asset's own error")


def test_a_failed_run_fails_the_scenario_with_the_run_error() -> None:
    with dg.instance_for_test() as instance, pytest.raises(RuntimeError, match="the broken asset's own error"):
        materialize_or_fail([broken_asset], {}, instance)
