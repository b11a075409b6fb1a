"""'What if this data was wrong?': lineage, the blast radius of a selection, retraction and revert.

The end-to-end test runs two platforms on the same 12 demo days. One also receives a producer's bad
batch (other users' events on days 4 and 5, prices in cents) before anything is built; the other never
does. After the first platform's blast radius names what the batch touched and the batch is retracted
and its plan re-materialized, its events, feature days, training set and champion equal the clean one's.
"""

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from dataplatform.defs.features.assets import training_examples
from dataplatform.defs.ingestion.assets import history_events, landing_events
from dataplatform.defs.ml.assets import challenger_model, champion_model, training_set
from dataplatform.defs.quality.assets import warehouse_events
from dataplatform.defs.remediation.actions import (
    EVENT_DAY_ASSETS,
    FEATURE_DAY_ASSETS,
    RETRAIN_ASSETS,
    blast_radius_report,
    plan_subset,
    retract_records_job,
    retraction_sensor,
)
from dataplatform.lib import blast_radius as blast_radius_cli
from dataplatform.lib import featurestore, retraction, warehouse
from dataplatform.lib.blast_radius import Predicate, Selection, blast_radius, select_records
from dataplatform.lib.contract import CONTRACT_COLUMNS
from dataplatform.lib.demo import DemoConfig, encode_events, generate_events, write_history
from factories import local_resources, write_landing

START = dt.date(2026, 3, 1)
DAYS = 12
RETRAIN = [training_set, challenger_model, champion_model]
BAD_DAYS = (START + dt.timedelta(days=3), START + dt.timedelta(days=4))
RETRACTED_IN_QUARANTINE = "SELECT count(*) FROM quarantine WHERE list_contains(reasons, 'record:retracted')"
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.slow]


def _day(i: int) -> str:
    return str(START + dt.timedelta(days=i))


def _bad_events() -> pl.DataFrame:
    """Another producer's users, on two days inside the training window, with prices in cents."""
    other, _ = generate_events(DemoConfig(start=START, days=DAYS, users=150, events_per_day=900, seed=5))
    other = other.filter(pl.col("corruption").is_null() & pl.col("timestamp").dt.date().is_in(BAD_DAYS))
    return other.with_columns(pl.col("price") * 100, ("b-" + pl.col("user_id").cast(pl.String)).alias("user_id"))


def _ingest(resources: dict, instance: dg.DagsterInstance, *files: str) -> dg.AssetMaterialization:
    config = {"ops": {landing_events.op.name: {"config": {"files": list(files)}}}}
    result = dg.materialize([landing_events], run_config=config, resources=resources, instance=instance)
    assert result.success
    return result.asset_materializations_for_node(landing_events.op.name)[0]


def _build(root: Path, instance: dg.DagsterInstance, *, bad_batch: bool) -> tuple[dict, str | None]:
    frame, _ = generate_events(DemoConfig(start=START, days=DAYS, users=400, events_per_day=2500, seed=11))
    write_history(frame, root / "history", fmt="jsonl")
    resources = local_resources(root)
    tags = {"dagster/asset_partition_range_start": _day(0), "dagster/asset_partition_range_end": _day(DAYS - 1)}
    assert dg.materialize([history_events], resources=resources, instance=instance, tags=tags).success
    batch_id = None
    if bad_batch:
        write_landing(root / "landing" / "producer-b", "export-0001.jsonl", encode_events(_bad_events(), "jsonl"))
        batch_id = _ingest(resources, instance, "producer-b/export-0001.jsonl").metadata["batch_ids"].value
        batch_id = batch_id[0] if isinstance(batch_id, list) else str(batch_id).split(",")[0]
    for i in range(DAYS):
        daily = dg.materialize([warehouse_events, training_examples], partition_key=_day(i), resources=resources,
                               instance=instance)  # fmt: skip
        assert daily.success
    assert dg.materialize(RETRAIN, resources=resources, instance=instance).success
    return resources, batch_id


def _events(resources: dict) -> pl.DataFrame:
    with resources["lakehouse"].connect() as con:
        return con.sql("SELECT * FROM events").pl().select(*CONTRACT_COLUMNS).sort("event_id")


def _examples(resources: dict) -> pl.DataFrame:
    return featurestore.read_examples(resources["lakehouse"].lake(), [_day(i) for i in range(DAYS)]).sort("example_id")


@pytest.fixture(scope="module")
def platforms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with dg.instance_for_test() as clean_instance, dg.instance_for_test() as instance:
        clean, _ = _build(tmp_path_factory.mktemp("clean"), clean_instance, bad_batch=False)
        dirty, batch_id = _build(tmp_path_factory.mktemp("dirty"), instance, bad_batch=True)
        yield {"clean": clean, "dirty": dirty, "batch_id": batch_id, "instance": instance}


def test_the_blast_radius_of_a_batch_names_everything_built_from_it(platforms: dict) -> None:
    resources, batch_id = platforms["dirty"], platforms["batch_id"]
    registry = resources["models"].registry()
    champion = registry.champion()
    with resources["lakehouse"].connect() as con:
        radius = blast_radius(con, resources["lakehouse"].lake(), Selection(batch_ids=(batch_id,)),
                              registry.list_versions(), champion.version)  # fmt: skip
        bad_rows = warehouse.scalar(con, "SELECT count(*) FROM events WHERE source_file LIKE 'producer-b/%'")
    assert radius.records == bad_rows > 1000
    assert sorted({row["event_date"] for row in radius.per_day}) == list(BAD_DAYS)
    assert radius.lake_files and all(f.endswith(f"{batch_id}.parquet") for f in radius.lake_files)
    assert [c["event_date"] for c in radius.certifications] == list(BAD_DAYS)
    assert all(c["passed"] for c in radius.certifications)  # it passed the contract: certified
    # Labels read the next day and features 28 days back: every feature day from the day before the batch.
    assert [str(d) for d in radius.feature_days] == [_day(i) for i in range(2, DAYS)]
    assert len(radius.training_sets) == 1 and radius.training_sets[0]["fingerprint"] == champion.data_fingerprint
    assert radius.affected_versions == [champion.version] and radius.champion_affected
    # The same answer by producer prefix, by file pattern, and as the UI's report.
    with resources["lakehouse"].connect() as con:
        lake = resources["lakehouse"].lake()
        for selection in (Selection(landing_prefix="producer-b/"), Selection(source_pattern="export-*.jsonl")):
            assert blast_radius(con, lake, selection, registry.list_versions(), champion.version).records == bad_rows
    report = dg.materialize(
        [blast_radius_report],
        run_config={"ops": {blast_radius_report.op.name: {"config": {"batch_ids": [batch_id]}}}},
        resources=resources,
        instance=platforms["instance"],
    )
    metadata = report.asset_materializations_for_node(blast_radius_report.op.name)[0].metadata
    assert metadata["records"].value == bad_rows and metadata["champion_affected"].value is True
    assert f"the champion `{champion.version}` was trained on them" in metadata["report"].value


def test_the_cli_answers_the_same_as_json(
    platforms: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    resources = platforms["dirty"]
    lakehouse = resources["lakehouse"]
    monkeypatch.setenv("DP_WAREHOUSE_PATH", lakehouse.warehouse.database)
    monkeypatch.setenv("DP_LAKE_URI", lakehouse.lake_uri)
    monkeypatch.setenv("DP_MODELS_URI", resources["models"].root)
    assert blast_radius_cli.main(["--prefix", "producer-b/", "--where", "price > 0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["champion_affected"] is True and report["records"] > 1000
    assert report["model_versions"][0]["version"] == resources["models"].registry().champion().version
    with pytest.raises(SystemExit):
        blast_radius_cli.main(["--where", "price > 0; DROP TABLE events"])


def test_retracting_the_batch_leaves_the_platform_equal_to_a_run_that_never_received_it(platforms: dict) -> None:
    resources, clean, batch_id, instance = (platforms[k] for k in ("dirty", "clean", "batch_id", "instance"))
    tainted = resources["models"].registry().champion().version
    config = {"batch_ids": [batch_id], "note": "producer b sent prices in cents", "by": "test"}
    started = time.perf_counter()
    run = retract_records_job.execute_in_process(
        run_config={"ops": {"retract_records": {"config": config}}}, resources=resources, instance=instance
    )
    assert run.success
    retract_seconds = time.perf_counter() - started
    outcome = run.output_for_node("retract_records")
    again = retract_records_job.execute_in_process(
        run_config={"ops": {"retract_records": {"config": config}}}, resources=resources, instance=instance
    )
    assert again.output_for_node("retract_records") == outcome  # the same retraction, a no-op
    with resources["lakehouse"].connect() as con:
        rows = retraction.list_retractions(con)
        assert rows.height == 1 and rows["status"][0] == "active" and rows["retracted_by"][0] == "test"
        assert warehouse.scalar(con, RETRACTED_IN_QUARANTINE) == rows["records"][0]
        records = rows["records"][0]
    # The sensor turns the plan into one backfill of the affected partitions, retraining included.
    with dg.build_sensor_context(instance=instance, resources=resources, repository_def=_repository()) as context:
        result = retraction_sensor.evaluate_tick(context)  # as the daemon does: backfill requests validated
    with dg.build_sensor_context(
        instance=instance, resources=resources, repository_def=_repository(), cursor=result.cursor
    ) as context:
        assert not retraction_sensor.evaluate_tick(context).run_requests  # a plan is launched once
    assert len(result.run_requests) == 1
    subset = result.run_requests[0].asset_graph_subset
    assert subset is not None and set(subset.non_partitioned_asset_keys) == set(RETRAIN_ASSETS)
    partitions = {key: set(subset.get_partitions_subset(key).get_partition_keys()) for key in subset.asset_keys
                  if key not in subset.non_partitioned_asset_keys}  # fmt: skip
    assert partitions[EVENT_DAY_ASSETS[0]] == {str(d) for d in BAD_DAYS}
    assert partitions[FEATURE_DAY_ASSETS[0]] == {_day(i) for i in range(2, DAYS)}
    # The backfill's work, in its order (the daemon runs it in `dagster dev`).
    started = time.perf_counter()
    for day in partitions[EVENT_DAY_ASSETS[0]]:
        certified = dg.materialize([warehouse_events], partition_key=day, resources=resources, instance=instance)
        assert all(c.passed for c in certified.get_asset_check_evaluations() if c.check_name == "day_reconciles")
    for day in sorted(partitions[FEATURE_DAY_ASSETS[0]]):
        assert dg.materialize([training_examples], partition_key=day, resources=resources, instance=instance).success
    assert dg.materialize(RETRAIN, resources=resources, instance=instance).success
    backfill_seconds, feature_days = time.perf_counter() - started, len(partitions[FEATURE_DAY_ASSETS[0]])
    print(f"retraction of {records:,} records: retract_records_job {retract_seconds:.1f} s, its backfill "
          f"(in process, {feature_days} feature days and a retrain) {backfill_seconds:.1f} s")  # fmt: skip

    assert _events(resources).equals(_events(clean))
    assert _examples(resources).equals(_examples(clean))
    champion, clean_champion = resources["models"].registry().champion(), clean["models"].registry().champion()
    assert champion.version != tainted and champion.data_fingerprint == clean_champion.data_fingerprint
    with resources["lakehouse"].connect() as con:
        assert select_records(con, Selection(batch_ids=(batch_id,))).height == 0

    # No re-run or re-delivery undoes it: the batch run again, and some of its records in a new file.
    _ingest(resources, instance, "producer-b/export-0001.jsonl")
    landing = Path(resources["landing"].uri) / "producer-b"
    write_landing(landing, "export-0002.jsonl", encode_events(_bad_events().head(100), "jsonl"))
    resent = _ingest(resources, instance, "producer-b/export-0002.jsonl").metadata
    assert resent["rows_valid"].value == 0 and resent["rows_duplicate"].value == 100
    assert _events(resources).equals(_events(clean))
    with resources["lakehouse"].connect() as con:
        assert warehouse.batch_reconciliation(con, batch_id)["ok"]
        assert warehouse.scalar(con, RETRACTED_IN_QUARANTINE) == retraction.list_retractions(con)["records"][0]
    for day in BAD_DAYS:
        certified = dg.materialize([warehouse_events], partition_key=str(day), resources=resources, instance=instance)
        assert all(c.passed for c in certified.get_asset_check_evaluations() if c.check_name == "day_reconciles")


def test_a_reverted_retraction_restores_the_records_as_they_were(platforms: dict) -> None:
    resources, batch_id = platforms["dirty"], platforms["batch_id"]
    lake = resources["lakehouse"].lake()
    with resources["lakehouse"].connect() as con:
        retraction_id = retraction.list_retractions(con)["retraction_id"][0]
        outcome = retraction.revert(con, lake, retraction_id, note="it was right after all", by="test")
        assert outcome.changed and outcome.records > 1000
        assert not retraction.revert(con, lake, retraction_id, note="again", by="test").changed
        assert select_records(con, Selection(batch_ids=(batch_id,))).height == outcome.records
        assert warehouse.scalar(con, RETRACTED_IN_QUARANTINE) == 0
        assert retraction.list_retractions(con)["status"].to_list() == ["reverted"]
    restored = [k for d in BAD_DAYS for k in lake.event_keys(d) if batch_id in k]
    assert lake.read(restored).height == outcome.records
    assert outcome.plan["retrain"] and outcome.plan["event_days"] == [str(d) for d in BAD_DAYS]


def _repository() -> dg.RepositoryDefinition:
    from dataplatform.definitions import defs

    return defs().get_repository_def()


def test_predicates_are_values_never_sql() -> None:
    frame = pl.DataFrame({"price": [5.0, 2000.0], "brand": ["a'; DROP TABLE events; --", "b"]})
    assert frame.filter(Predicate.parse("price > 1000").expr())["price"].to_list() == [2000.0]
    assert frame.filter(Predicate.parse("brand = a'; DROP TABLE events; --").expr()).height == 1
    assert frame.filter(Predicate.parse("brand in b,c").expr())["brand"].to_list() == ["b"]
    for bad in ("price >", "password = x", "1=1; DROP TABLE events", "brand is null x", "price > 1; DROP TABLE x"):
        with pytest.raises(ValueError):
            Predicate.parse(bad)
    with pytest.raises(ValueError, match="at least one"):
        Selection()
    with pytest.raises(ValueError, match="UTC offset"):
        Selection(since=dt.datetime(2026, 3, 1))
    assert Selection(batch_ids=("b", "a")).fingerprint() == Selection(batch_ids=("a", "b")).fingerprint()


def test_plan_subset_names_the_backfill_partitions() -> None:
    plan = {"event_days": ["2026-03-04"], "feature_days": ["2026-03-03", "2026-03-04"], "retrain": False}
    subset = plan_subset(plan, _repository().asset_graph)
    assert not subset.non_partitioned_asset_keys
    assert set(subset.asset_keys) == {*EVENT_DAY_ASSETS, *FEATURE_DAY_ASSETS}
