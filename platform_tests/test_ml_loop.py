"""The ML loop through Dagster on demo data: gated training, promotion, monitoring, the drift sensor."""

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from dataplatform.defs.features.assets import training_examples
from dataplatform.defs.ingestion.assets import history_events, landing_events
from dataplatform.defs.ml.assets import ONSET_TAG, TRIGGER_TAG, challenger_model, champion_model, training_set
from dataplatform.defs.ml.sensors import drift_retraining_sensor
from dataplatform.defs.monitoring.assets import DRIFT_FEATURES, drift_report, model_performance
from dataplatform.defs.monitoring.batch_drift import batch_drift
from dataplatform.defs.quality.assets import event_distributions, warehouse_events
from dataplatform.defs.quality.plausibility import event_plausibility
from dataplatform.lib import suspects
from dataplatform.lib.demo import DemoConfig, encode_events, generate_events, write_history
from dataplatform.lib.registry import ArtifactIntegrityError
from dataplatform.lib.retraining import MIN_DRIFTED_FEATURES
from factories import local_resources, write_landing

START = dt.date(2026, 3, 1)
RETRAIN = [training_set, challenger_model, champion_model]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def prepare(
    root: Path,
    days: int,
    instance: dg.DagsterInstance,
    *,
    silent: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    daily: Sequence[dg.AssetsDefinition] = (warehouse_events, training_examples),
    **options: object,
) -> dict:
    """Demo history through ingestion, certification and features, day by day; `silent` changes
    the generated events in a way the contract cannot see."""
    config = DemoConfig(start=START, days=days, users=400, events_per_day=2500, seed=11, **options)
    frame, _ = generate_events(config)
    write_history(silent(frame) if silent else frame, root / "history", fmt="jsonl")
    resources = local_resources(root)
    last = str(START + dt.timedelta(days=days - 1))
    tags = {"dagster/asset_partition_range_start": str(START), "dagster/asset_partition_range_end": last}
    assert dg.materialize([history_events], resources=resources, instance=instance, tags=tags).success
    for i in range(days):
        day = str(START + dt.timedelta(days=i))
        result = dg.materialize(list(daily), partition_key=day, resources=resources, instance=instance)
        assert result.success
    return resources


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def loop(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict, dg.DagsterInstance, dg.ExecuteInProcessResult]]:
    root = tmp_path_factory.mktemp("loop")
    with dg.instance_for_test() as instance:
        resources = prepare(root, 20, instance)
        first = dg.materialize(RETRAIN, resources=resources, instance=instance)
        yield resources, instance, first


def test_first_training_passes_the_gate_and_becomes_champion(loop: tuple) -> None:
    resources, _, first = loop
    assert first.success
    assert checks(first)["training_data_gate"].passed and checks(first)["beats_champion"].passed
    registry = resources["models"].registry()
    champion = registry.champion()
    assert champion is not None and champion.metrics["holdout"]["auc"] > 0.6
    # Labels of 03-19 and 03-20 are not mature yet: holdout 03-17..18, training the 14 days before.
    assert champion.training_window == {"start": "2026-03-03", "end": "2026-03-16"}
    with resources["lakehouse"].connect(read_only=True) as con:
        assert con.sql("SELECT promoted FROM model_decisions").fetchall() == [(True,)]
    promoted = first.asset_materializations_for_node(champion_model.op.name)[0].metadata
    assert promoted["version"].value == champion.version and promoted["trigger"].value == "manual"
    assert promoted["promoted_because"].value == champion.notes
    assert "| True | manual |" in promoted["recent_retrains"].value


def test_monitoring_reports_drift_and_performance_for_a_day(loop: tuple) -> None:
    resources, instance, _ = loop
    day = "2026-03-19"
    report = dg.materialize([drift_report], partition_key=day, resources=resources, instance=instance)
    metadata = report.asset_materializations_for_node(drift_report.op.name)[0].metadata
    assert metadata["decision"].value in {"drift", "stable"}
    assert metadata["effect_vs_threshold"].value.startswith("![") and "base64," in metadata["distributions"].value
    # The verdict comes first and names every drifted feature; every feature has a score every day.
    assert next(iter(metadata)) == "verdict" and metadata["verdict"].value.startswith(metadata["decision"].value)
    assert all(f in metadata["verdict"].value for f in metadata["drifted_features"].value)
    assert {f"drift_score_{c}" for c in DRIFT_FEATURES} <= set(metadata)
    # 20 days of data: the 28-day features are still filling up, so today really differs from the
    # training window, and the domain classifier says so, naming those features.
    assert metadata["domain_auc"].value > metadata["domain_threshold"].value
    assert metadata["drivers"].value.splitlines()[2].split("|")[1].strip().endswith("_28d")
    # Labels of a day mature once events up to the next midnight plus the 1-day horizon are in.
    performance = dg.materialize(
        [model_performance], partition_key="2026-03-18", resources=resources, instance=instance
    )
    perf = performance.asset_materializations_for_node(model_performance.op.name)[0].metadata
    assert perf["labels_mature"].value is True and perf["auc"].value > 0.55
    assert perf["auc_low"].value < perf["auc"].value < perf["auc_high"].value
    assert abs(perf["expected_auc"].value - perf["auc"].value) < 0.1
    # The model story: which champion, since when, why, and how good, first on the page.
    champion = resources["models"].registry().champion()
    story = perf["champion_story"].value
    assert next(iter(perf)) == "champion_story" and story.startswith(f"champion {champion.version}, promoted ")
    assert f"realized AUC {perf['auc'].value:.3f} on 2026-03-18" in story and "(trigger: manual)" in story
    assert "base64," in perf["auc_over_time"].value and "| True | manual |" in perf["last_decisions"].value
    latest = dg.materialize([model_performance], partition_key="2026-03-20", resources=resources, instance=instance)
    assert latest.asset_materializations_for_node(model_performance.op.name)[0].metadata["labels_mature"].value is False


def test_the_drift_report_says_since_when_the_current_episode_runs(loop: tuple) -> None:
    resources, instance, _ = loop
    days = ["2026-03-17", "2026-03-18", "2026-03-19", "2026-03-20"]
    reports = {}
    for day in days:
        result = dg.materialize([drift_report], partition_key=day, resources=resources, instance=instance)
        reports[day] = result.asset_materializations_for_node(drift_report.op.name)[0].metadata
    material = [reports[d]["features_drifted"].value >= MIN_DRIFTED_FEATURES for d in days]
    # The episode of the last day: the run of material days that ends with it (no gap on consecutive days).
    expected = next((days[i] for i in range(len(days)) if all(material[i:])), None)
    assert reports[days[-1]]["drift_since"].value == (expected or "no current drift")
    if expected:
        assert f"since {expected}" in reports[days[-1]]["verdict"].value


def test_a_challenger_that_is_not_better_is_not_promoted(loop: tuple) -> None:
    resources, instance, _ = loop
    before = resources["models"].registry().champion().version
    again = dg.materialize(RETRAIN, resources=resources, instance=instance)
    beats = checks(again)["beats_champion"]
    assert not beats.passed and beats.blocking  # same data, same model: not better
    # A normal outcome, not a failure: WARN, the run succeeds, and the champion is not materialized.
    assert again.success and beats.severity == dg.AssetCheckSeverity.WARN
    assert not again.asset_materializations_for_node(champion_model.op.name)
    assert resources["models"].registry().champion().version == before
    assert "keep" in beats.metadata["decision"].value or "not" in beats.metadata["decision"].value


def test_a_drift_retrain_follows_the_onset_and_records_its_cost_and_gain(loop: tuple) -> None:
    resources, instance, _ = loop
    tags = {TRIGGER_TAG: "drift_2_of_3", ONSET_TAG: "2026-03-12"}  # as drift_retraining_sensor tags its runs
    run = dg.materialize(RETRAIN, resources=resources, instance=instance, tags=tags)
    window = run.asset_materializations_for_node(training_set.op.name)[0].metadata
    assert window["window_rule"].value.startswith("recent-weighted: 9 days before the onset 2026-03-12 weigh")
    assert set(window["window"].value["weights"]) == {f"2026-03-{d:02d}" for d in range(3, 12)}
    challenger = run.asset_materializations_for_node(challenger_model.op.name)[0].metadata
    assert "auc_gain" in challenger and challenger["training_rows"].value > 1000
    assert "| challenger |" in challenger["recent_retrains"].value
    with resources["lakehouse"].connect(read_only=True) as con:
        row = con.sql(
            "SELECT trigger, onset, auc_gain, training_seconds, training_rows, comparison FROM model_decisions "
            "ORDER BY decided_at DESC LIMIT 1"
        ).fetchall()[0]
    assert row[:2] == ("drift_2_of_3", dt.date(2026, 3, 12)) and row[2] is not None and row[3] > 0 and row[4] > 1000
    assert json.loads(row[5])["now_rows"] > 0


def test_the_drift_sensor_waits_for_persistent_drift(loop: tuple) -> None:
    resources, instance, _ = loop
    with dg.build_sensor_context(
        instance=instance, resources={k: resources[k] for k in ("alerts", "retraining")}
    ) as context:
        result = drift_retraining_sensor(context)
    # One drift report so far (whatever it found), one day after the model's data ends: either
    # rule (not "M of the last N" days; inside the cooldown) keeps it from retraining.
    assert result.run_requests == []
    assert result.skip_reason.skip_message.startswith(("no_trigger", "cooldown"))


def test_a_tampered_champion_artifact_is_refused(loop: tuple, tmp_path: Path) -> None:
    resources, instance, _ = loop
    registry = resources["models"].registry()
    card = registry.champion()
    artifact = Path(resources["models"].root) / "versions" / card.version / card.artifact
    original = artifact.read_bytes()
    try:
        artifact.write_bytes(original[:-10] + b"0123456789")
        with pytest.raises(ArtifactIntegrityError):
            registry.load(card.version)
        result = dg.materialize(
            [model_performance],
            partition_key="2026-03-19",
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
    finally:
        artifact.write_bytes(original)


def test_the_gate_keeps_a_corrupted_stretch_out_and_blocks_when_nothing_clean_is_left(tmp_path: Path) -> None:
    corrupt = {"corruption_rate": 0.15, "corrupt_from": START + dt.timedelta(5), "corrupt_to": START + dt.timedelta(9)}
    with dg.instance_for_test() as instance:
        resources = prepare(tmp_path, 14, instance, **corrupt)
        result = dg.materialize(RETRAIN, resources=resources, instance=instance, raise_on_error=False)
        gate = checks(result)["training_data_gate"]
        assert gate.passed  # the valid remainder still trains
        assert sorted(gate.metadata["excluded_days"].value) == [str(START + dt.timedelta(i)) for i in range(5, 10)]

        strict = dg.materialize(
            RETRAIN, resources=resources, instance=instance, raise_on_error=False,
            run_config={"ops": {training_set.op.name: {"config": {"train_days": 5, "holdout_days": 2}}}},
        )  # fmt: skip
        # Training days 2026-03-06..10 are all corrupted: nothing clean is left, the gate blocks training.
        blocked = checks(strict)["training_data_gate"]
        assert not blocked.passed and "clean labelled days" in blocked.metadata["reasons"].value
        assert not strict.asset_materializations_for_node(challenger_model.op.name)


def test_days_of_silent_corruption_are_suspect_and_stay_out_of_training_until_accepted(tmp_path: Path) -> None:
    """15% of the prices of days 6-10 in cents: every record passes the contract."""
    corrupted = [START + dt.timedelta(i) for i in range(6, 11)]
    bad = pl.col("timestamp").dt.date().is_in(corrupted) & (pl.int_range(pl.len()) % 100 < 15)

    def cents(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.when(bad).then(pl.col("price") * 100).otherwise(pl.col("price")).alias("price"))

    daily = (warehouse_events, event_distributions, event_plausibility, training_examples)
    with dg.instance_for_test() as instance:
        resources = prepare(tmp_path, 16, instance, silent=cents, daily=daily)
        result = dg.materialize(RETRAIN, resources=resources, instance=instance, raise_on_error=False)
        gate = checks(result)["training_data_gate"]
        excluded = gate.metadata["excluded_days"].value
        assert gate.passed and sorted(excluded) == [str(day) for day in corrupted]
        # Both signals name the days: 15% implausible prices (the corruption share) and the abrupt shift.
        assert all(
            why.startswith("corruption ") and "suspect: price: abrupt shift" in why for why in excluded.values()
        ), excluded
        window = result.asset_materializations_for_node(training_set.op.name)[0].metadata["window"].value
        assert not set(excluded) & set(window["train_days"] + window["holdout_days"])

        with resources["lakehouse"].connect() as con:
            assert suspects.accept_day(con, corrupted[0], by="analyst", note="checked with the producer")
            assert not suspects.accept_day(con, corrupted[0], by="someone else", note="again")  # a no-op
            assert "accepted by analyst" in suspects.accepted_days(con)[corrupted[0]]
        again = dg.materialize([training_set], resources=resources, instance=instance, raise_on_error=False)
        window = again.asset_materializations_for_node(training_set.op.name)[0].metadata["window"].value
        assert str(corrupted[0]) in window["train_days"] and str(corrupted[0]) not in window["excluded_days"]


# Last in the module: it adds landing batches to the shared loop's warehouse.
def test_a_micro_batch_is_judged_on_demand_against_the_champion(loop: tuple) -> None:
    resources, instance, _ = loop
    before = dg.materialize([batch_drift], resources=resources, instance=instance)  # history only, no stream yet
    assert before.asset_materializations_for_node(batch_drift.op.name)[0].metadata["status"].value == (
        "no landing batch ingested yet"
    )
    # The two days after the loop's history, from the same simulated world: day 21 as it is, day 22 with
    # prices four times higher.
    frame, _ = generate_events(DemoConfig(start=START, days=22, users=400, events_per_day=2500, seed=11))
    clean = frame.filter(pl.col("corruption").is_null())
    landing = Path(resources["landing"].uri)
    calm = clean.filter(pl.col("timestamp").dt.date() == START + dt.timedelta(days=20))
    pricey = clean.filter(pl.col("timestamp").dt.date() == START + dt.timedelta(days=21))
    write_landing(landing, "calm.jsonl", encode_events(calm, "jsonl"))
    write_landing(landing, "pricey.jsonl", encode_events(pricey.with_columns(pl.col("price") * 4), "jsonl"))

    def judged(name: str) -> dict:
        config = {"ops": {landing_events.op.name: {"config": {"files": [name]}}}}
        ingested = dg.materialize([landing_events], run_config=config, resources=resources, instance=instance)
        batch_id = ingested.asset_materializations_for_node(landing_events.op.name)[0].metadata["batch_ids"].value
        config = {"ops": {batch_drift.op.name: {"config": {"batch_id": batch_id}}}}
        result = dg.materialize([batch_drift], run_config=config, resources=resources, instance=instance)
        metadata = result.asset_materializations_for_node(batch_drift.op.name)[0].metadata
        assert metadata["batch_id"].value == batch_id and metadata["examples"].value > 500
        return {key: value.value for key, value in metadata.items()}

    calm_batch, pricey_batch = judged("calm.jsonl"), judged("pricey.jsonl")
    print(f"\ncalm: {calm_batch['drifted_features']}\npricey: {pricey_batch['drifted_features']}")
    assert "price" not in calm_batch["drifted_features"]
    assert "price" in pricey_batch["drifted_features"] and pricey_batch["decision"] == "drift"
    assert pricey_batch["scores"]["price"] > 2 * calm_batch["scores"]["price"]
    with resources["lakehouse"].connect(read_only=True) as con:
        datasets = con.sql("SELECT DISTINCT dataset FROM distribution_drift WHERE dataset LIKE 'batch:%'").fetchall()
    assert len(datasets) == 2
