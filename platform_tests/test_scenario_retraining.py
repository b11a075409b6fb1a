"""14 weeks of events through the real assets: the loop notices drift, retrains, and recovers;
on a stationary stream it leaves the model alone. Figures and the chart go to test-artifacts/.
"""

import dataclasses
import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest

from scenario_loop import DRIFT_START_DAY, START, materialize_or_fail, plot, run_both, summary

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "scenario"


@pytest.mark.slow
@pytest.mark.scenario
def test_the_loop_retrains_on_drift_and_not_on_a_stationary_stream(tmp_path: Path) -> None:
    drifting, control = run_both(tmp_path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    plot(drifting, control, ARTIFACTS / "auc_over_time.png")
    figures = summary(drifting, control)
    (ARTIFACTS / "figures.json").write_text(
        json.dumps({**figures, "drift": dataclasses.asdict(drifting), "control": dataclasses.asdict(control)}, indent=1)
    )
    print(json.dumps(figures, indent=1))

    onset = START + dt.timedelta(DRIFT_START_DAY)
    # The sensor fires within a few days of the onset of a gradual drift ...
    assert figures["days_from_onset_to_request"] is not None and figures["days_from_onset_to_request"] <= 10
    # ... and never before it.
    assert all(dt.date.fromisoformat(r["day"]) >= onset for r in drifting.retrain_requests)
    # A retrained champion recovers what the fixed model loses.
    assert any(r["promoted"] for r in drifting.retrain_requests)
    assert figures["auc_last_14_days_with_loop"] > figures["auc_last_14_days_fixed_model"] + 0.01
    # On the stationary control stream nothing triggers a retrain.
    assert control.retrain_requests == []


@dg.asset
def broken_asset() -> None:
    raise ValueError("the broken asset's own error")


def test_a_failed_run_fails_the_scenario_with_the_run_error() -> None:
    with dg.instance_for_test() as instance, pytest.raises(RuntimeError, match="the broken asset's own error"):
        materialize_or_fail([broken_asset], {}, instance)
