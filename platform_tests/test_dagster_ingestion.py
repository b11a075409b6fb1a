"""The Dagster wiring: definitions load, the sensor drives runs on a real instance, assets materialize."""

from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from dataplatform.definitions import defs
from dataplatform.defs.common.keys import HISTORY_EVENTS, LANDING_EVENTS
from dataplatform.defs.ingestion.assets import history_events, landing_events
from dataplatform.defs.ingestion.sensors import landing_files_sensor
from dataplatform.defs.resources import LakehouseResource, WarehouseResource
from dataplatform.lib import warehouse
from factories import event, jsonl_bytes, local_resources, write_landing


@pytest.fixture
def resources(tmp_path: Path) -> dict[str, dg.ConfigurableResource]:
    return local_resources(tmp_path)


def tick(instance: dg.DagsterInstance, resources: dict, cursor: str | None = None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return landing_files_sensor(context)


def count(resources: dict, table: str) -> int:
    with resources["lakehouse"].connect(read_only=True) as con:
        return warehouse.scalar(con, f"SELECT count(*) FROM {table}")


def test_definitions_load_with_groups_descriptions_and_kinds() -> None:
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    for key in (LANDING_EVENTS, HISTORY_EVENTS):
        node = graph.get(key)
        assert node.group_name == "ingestion" and node.description and node.owners
        assert {"duckdb", "parquet", "polars"} <= set(node.kinds)
    assert definitions.resolve_sensor_def("landing_files_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert set(definitions.resources) >= {"landing", "history", "lakehouse"}


def test_sensor_ticks_drive_runs_until_the_landing_zone_is_drained(tmp_path: Path, resources: dict) -> None:
    landing = tmp_path / "landing"
    write_landing(landing, "a.jsonl", jsonl_bytes([event(i) for i in range(5)]))
    write_landing(landing, "b.jsonl", jsonl_bytes([event(i) for i in range(5, 9)] + [event(99, user_id="")]))
    with dg.instance_for_test() as instance:
        result = tick(instance, resources)
        assert len(result.run_requests) == 1
        request = result.run_requests[0]
        assert request.run_config["ops"][landing_events.op.name]["config"]["files"] == ["a.jsonl", "b.jsonl"]

        # The same tick again (no run launched yet) must not request the batch twice.
        assert tick(instance, resources, result.cursor).run_requests == []

        run = dg.materialize(
            [landing_events], run_config=request.run_config, resources=resources, instance=instance,
            tags={"dagster/run_key": request.run_key},
        )  # fmt: skip
        assert run.success
        checks = run.get_asset_check_evaluations()
        assert [(c.check_name, c.passed) for c in checks] == [("batch_reconciles", True)]
        metadata = run.asset_materializations_for_node(landing_events.op.name)[0].metadata
        assert metadata["rows_in"].value == 10 and metadata["rows_quarantined"].value == 1
        assert count(resources, "events") == 9 and count(resources, "quarantine") == 1

        drained = tick(instance, resources, result.cursor)
        assert drained.run_requests == [] and '"pending": {}' in drained.cursor


def test_sensor_retries_a_failed_batch_under_a_new_run_key(tmp_path: Path, resources: dict) -> None:
    write_landing(tmp_path / "landing", "a.jsonl", jsonl_bytes([event(1)]))
    broken = {
        **resources,
        "lakehouse": LakehouseResource(
            s3=S3Resource(), lake_uri="/proc/forbidden", warehouse=WarehouseResource(database="/proc/x.duckdb")
        ),
    }
    with dg.instance_for_test() as instance:
        first = tick(instance, broken)
        request = first.run_requests[0]
        run = dg.materialize(
            [landing_events], run_config=request.run_config, resources=broken, instance=instance,
            tags={"dagster/run_key": request.run_key}, raise_on_error=False,
        )  # fmt: skip
        assert not run.success
        retry = tick(instance, broken, first.cursor)
        assert [r.run_key for r in retry.run_requests] == [request.run_key.replace("attempt-1", "attempt-2")]


def test_manual_materialization_takes_the_waiting_files(tmp_path: Path, resources: dict) -> None:
    write_landing(tmp_path / "landing", "a.jsonl", jsonl_bytes([event(i) for i in range(3)]))
    assert dg.materialize([landing_events], resources=resources).success
    assert count(resources, "events") == 3
    assert dg.materialize([landing_events], resources=resources).success  # nothing waits: an empty batch
    assert count(resources, "events") == 3


def test_history_backfill_of_a_date_range_runs_as_one_run(tmp_path: Path, resources: dict) -> None:
    # A range run (below) works under any policy; a backfill launched from the UI is one run only under this.
    assert defs().get_assets_def(HISTORY_EVENTS).backfill_policy == dg.BackfillPolicy.single_run()
    history = tmp_path / "history"
    write_landing(history, "event_date=2026-03-01/part-0.jsonl", jsonl_bytes([event(i) for i in range(0, 9, 3)]))
    write_landing(history, "event_date=2026-03-02/part-0.jsonl", jsonl_bytes([event(i) for i in range(1, 9, 3)]))
    with dg.instance_for_test() as instance:
        day_range = {
            "dagster/asset_partition_range_start": "2026-03-01",
            "dagster/asset_partition_range_end": "2026-03-03",
        }
        result = dg.materialize([history_events], resources=resources, instance=instance, tags=day_range)
        assert result.success
        materialized = instance.get_materialized_partitions(HISTORY_EVENTS)
    assert materialized == {"2026-03-01", "2026-03-02", "2026-03-03"}
    assert count(resources, "events") == 6
    with resources["lakehouse"].connect(read_only=True) as con:
        rows = con.sql("SELECT partition_key, rows_in FROM ingest_batches ORDER BY partition_key").fetchall()
    assert rows == [("2026-03-01", 3), ("2026-03-02", 3), ("2026-03-03", 0)]
