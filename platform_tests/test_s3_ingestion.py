"""Ingestion from S3, end to end in one process: moto's S3 server, the landing sensor, real runs, DuckDB.

Nothing is mocked: the store talks HTTP to moto through dagster-aws, the sensor is evaluated with a
real (ephemeral) instance, runs execute the assets, and the checks read the warehouse file.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from dataplatform.defs.ingestion.assets import history_events, landing_events
from dataplatform.defs.ingestion.sensors import landing_files_sensor
from dataplatform.defs.quality.assets import warehouse_events
from dataplatform.defs.resources import FileStoreResource, LakehouseResource, WarehouseResource, ingestion_policy
from dataplatform.lib import lakeread, warehouse
from dataplatform.lib.settings import Settings
from factories import event, gzip_bytes, jsonl_bytes

LANDING_BUCKET = "landing-bucket"
LANDING_PREFIX = "incoming/"
HISTORY_BUCKET = "history-bucket"
HISTORY_PREFIX = "dumps/"
LAKE_BUCKET = "lake-bucket"
REGION = "us-east-1"
LANDING_OP = landing_events.op.name

Resources = dict[str, dg.ConfigurableResource]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def s3(s3_client: Any) -> Any:
    """The landing, history and lake buckets on an empty S3 server."""
    for bucket in (LANDING_BUCKET, HISTORY_BUCKET, LAKE_BUCKET):
        s3_client.create_bucket(Bucket=bucket)
    return s3_client


@pytest.fixture(params=["local lake", "lake on s3"])
def resources(request: pytest.FixtureRequest, s3: Any, moto_endpoint: str, tmp_path: Path) -> Resources:
    """As `dataplatform.defs.resources.build_resources` builds them, pointed at moto; the lake in a
    local folder (the default profile) or on S3 as well (the production profile)."""
    s3_resource = S3Resource(endpoint_url=moto_endpoint, region_name=REGION)
    lake_uri = f"s3://{LAKE_BUCKET}/lake" if request.param == "lake on s3" else str(tmp_path / "lake")
    return {
        # S3 reports LastModified in whole seconds and objects appear complete: no settle time needed.
        "landing": FileStoreResource(uri=f"s3://{LANDING_BUCKET}/incoming", s3=s3_resource, settle_seconds=0.0),
        "history": FileStoreResource(uri=f"s3://{HISTORY_BUCKET}/dumps", s3=s3_resource),
        "ingestion": ingestion_policy(Settings.from_env()),
        "lakehouse": LakehouseResource(
            s3=s3_resource, lake_uri=lake_uri, warehouse=WarehouseResource(database=str(tmp_path / "wh.duckdb"))
        ),
    }


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


# --- helpers -----------------------------------------------------------------------------------


def put(s3: Any, key: str, data: bytes, bucket: str = LANDING_BUCKET) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data)


def csv_bytes(records: list[dict[str, object]]) -> bytes:
    columns = list(records[0])
    lines = [",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in records]
    return ("\n".join(lines) + "\n").encode()


def tick(instance: dg.DagsterInstance, resources: Resources, cursor: str | None) -> dg.SensorResult:
    # The context owns the resources (nested ConfigurableResources): open it as a context manager.
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        result = landing_files_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def requested_files(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"][LANDING_OP]["config"]["files"]


def run(request: dg.RunRequest, resources: Resources, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Launch the requested run the way the daemon would: its config, its tags and its run_key."""
    return dg.materialize(
        [landing_events],
        run_config=request.run_config,
        resources=resources,
        instance=instance,
        tags={**request.tags, "dagster/run_key": request.run_key},
    )


def query(resources: Resources, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    lakehouse = resources["lakehouse"]
    assert isinstance(lakehouse, LakehouseResource)
    with warehouse.connect(Path(lakehouse.warehouse.database), read_only=True) as con:
        return con.sql(sql, params=params).fetchall()


def snapshot(resources: Resources) -> dict[str, list[tuple[Any, ...]]]:
    """What the warehouse holds, as comparable rows."""
    return {
        "events": query(resources, "SELECT event_id, batch_id, source_file FROM events ORDER BY ALL"),
        "quarantine": query(resources, "SELECT batch_id, source_file, source_row FROM quarantine ORDER BY ALL"),
        "ingest_batches": query(resources, "SELECT batch_id, rows_in FROM ingest_batches ORDER BY ALL"),
        "ingested_files": query(resources, "SELECT source_file, status, batch_id FROM ingested_files ORDER BY ALL"),
    }


def ingest_waiting_files(
    instance: dg.DagsterInstance, resources: Resources, cursor: str | None = None
) -> tuple[list[dg.RunRequest], str | None]:
    """One sensor tick, then every run it requested; returns the requests and the new cursor."""
    result = tick(instance, resources, cursor)
    for request in result.run_requests or []:
        assert run(request, resources, instance).success
    return list(result.run_requests or []), result.cursor


# Landing files of test (a): 3 + 2 + 2 valid events, 2 quarantined records, 1 hidden upload.
CLICKS = [event(1, timestamp="2026-03-01T12:00:00+02:00"), event(2), event(3)]
ORDERS = [  # no event_id: derived from content; epoch-second timestamps
    {"user_id": "u8", "timestamp": 1772366400, "event_type": "purchase", "product_id": 7, "price": 19.5,
     "category": "kitchen", "brand": "acme", "session_id": "s8"},
    {"user_id": "u9", "timestamp": 1772370000, "event_type": "cart", "product_id": 8, "price": 5.0,
     "category": "kitchen", "brand": "zeta", "session_id": "s9"},
]  # fmt: skip
MIXED = jsonl_bytes([event(4), event(5, event_type="teleport"), event(6)]) + b"{not json\n"
LANDING = {
    "2026/03/01/clicks.jsonl": jsonl_bytes(CLICKS),
    "orders.csv.gz": gzip_bytes(csv_bytes(ORDERS)),
    "mixed.jsonl": MIXED,
}
HIDDEN = ".upload-4.jsonl.tmp"


def upload_landing_files(s3: Any) -> None:
    for key, data in LANDING.items():
        put(s3, LANDING_PREFIX + key, data)
    put(s3, LANDING_PREFIX + HIDDEN, jsonl_bytes([event(99)]))


# --- (a) listing, sensor, run -----------------------------------------------------------------


def test_s3_store_lists_landing_files_and_skips_hidden_uploads(s3: Any, resources: Resources) -> None:
    upload_landing_files(s3)
    put(s3, "elsewhere/other.jsonl", jsonl_bytes([event(98)]))  # outside the landing prefix

    listed = resources["landing"].store().list_files(limit=100)

    assert sorted(f.key for f in listed) == sorted(LANDING)
    assert {f.key: f.size for f in listed} == {key: len(data) for key, data in LANDING.items()}


def test_sensor_requests_exactly_the_new_landing_files(
    s3: Any, resources: Resources, instance: dg.DagsterInstance
) -> None:
    upload_landing_files(s3)

    result = tick(instance, resources, cursor=None)

    assert result.run_requests, result.skip_reason
    assert sorted(key for r in result.run_requests for key in requested_files(r)) == sorted(LANDING)
    assert all(r.run_key and r.run_key.endswith(":attempt-1") for r in result.run_requests)


def test_requested_run_loads_valid_events_and_quarantines_bad_records(
    s3: Any, resources: Resources, instance: dg.DagsterInstance
) -> None:
    upload_landing_files(s3)

    ingest_waiting_files(instance, resources)

    events = query(resources, "SELECT source_file, count(*) FROM events GROUP BY ALL ORDER BY ALL")
    assert events == [("2026/03/01/clicks.jsonl", 3), ("mixed.jsonl", 2), ("orders.csv.gz", 2)]
    assert query(resources, "SELECT event_id FROM events WHERE source_file = 'mixed.jsonl' ORDER BY 1") == [
        ("e4",),
        ("e6",),
    ]
    local_time = query(resources, "SELECT strftime(\"timestamp\", '%H:%M') FROM events WHERE event_id = 'e1'")
    assert local_time == [("10:00",)]  # +02:00 offset stored as UTC
    quarantine = query(resources, "SELECT source_file, source_row, reasons FROM quarantine ORDER BY source_row")
    assert quarantine == [
        ("mixed.jsonl", 2, ["event_type:not_allowed"]),
        ("mixed.jsonl", 4, ["record:malformed_json"]),
    ]
    files = query(resources, "SELECT source_file, status FROM ingested_files ORDER BY 1")
    assert files == [(key, "ingested") for key in sorted(LANDING)]


def test_next_tick_after_the_run_requests_nothing(s3: Any, resources: Resources, instance: dg.DagsterInstance) -> None:
    upload_landing_files(s3)
    _, cursor = ingest_waiting_files(instance, resources)

    again = tick(instance, resources, cursor)

    assert not again.run_requests
    assert again.cursor is not None
    assert json.loads(again.cursor)["pending"] == {}  # the successful run closed its batch


# --- (b) re-delivery ----------------------------------------------------------------------------


def test_same_content_under_a_new_key_is_recorded_as_redelivered_without_new_rows(
    s3: Any, resources: Resources, instance: dg.DagsterInstance
) -> None:
    put(s3, LANDING_PREFIX + "mixed.jsonl", MIXED)
    _, cursor = ingest_waiting_files(instance, resources)
    before = snapshot(resources)

    put(s3, LANDING_PREFIX + "retry/mixed-copy.jsonl", MIXED)
    requests, _ = ingest_waiting_files(instance, resources, cursor)

    assert [requested_files(r) for r in requests] == [["retry/mixed-copy.jsonl"]]
    after = snapshot(resources)
    assert after["events"] == before["events"]
    assert after["quarantine"] == before["quarantine"]
    status = query(resources, "SELECT status FROM ingested_files WHERE source_file = 'retry/mixed-copy.jsonl'")
    assert status == [("redelivered",)]
    redelivered = query(resources, "SELECT files_redelivered, rows_in FROM ingest_batches WHERE rows_in = 0")
    assert redelivered == [(["retry/mixed-copy.jsonl"], 0)]


# --- (c) history backfill -----------------------------------------------------------------------


def test_history_backfill_of_two_days_ingests_both_partitions_in_one_run(
    s3: Any, resources: Resources, instance: dg.DagsterInstance
) -> None:
    # The range run below works under any policy; a backfill of the range is one such run only under this.
    assert history_events.backfill_policy == dg.BackfillPolicy.single_run()
    day1, day2 = "2026-03-01", "2026-03-02"
    put(s3, f"{HISTORY_PREFIX}event_date={day1}/part-0.jsonl", jsonl_bytes([
        event(10, timestamp=f"{day1}T08:00:00+00:00"), event(11, timestamp=f"{day1}T09:30:00Z"),
    ]), bucket=HISTORY_BUCKET)  # fmt: skip
    put(s3, f"{HISTORY_PREFIX}event_date={day2}/part-0.csv.gz", gzip_bytes(csv_bytes([
        event(20, timestamp=f"{day2}T07:00:00+00:00"), event(21, timestamp=f"{day2}T23:59:59+00:00"),
        event(22, timestamp=f"{day2}T12:00:00+00:00", price=-1),
    ])), bucket=HISTORY_BUCKET)  # fmt: skip

    result = dg.materialize(
        [history_events],
        resources=resources,
        instance=instance,
        tags={"dagster/asset_partition_range_start": day1, "dagster/asset_partition_range_end": day2},
    )

    assert result.success
    days = query(resources, "SELECT CAST(event_date AS VARCHAR), count(*) FROM events GROUP BY ALL ORDER BY ALL")
    assert days == [(day1, 2), (day2, 2)]
    batches = query(
        resources,
        "SELECT partition_key, mode, run_id, rows_in, rows_valid, rows_quarantined FROM ingest_batches ORDER BY 1",
    )
    assert batches == [
        (day1, "history", result.run_id, 2, 2, 0),
        (day2, "history", result.run_id, 3, 2, 1),
    ]


# --- (d) S3 failure -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_config",
    [
        pytest.param({}, id="waiting-files"),
        pytest.param({"ops": {LANDING_OP: {"config": {"files": ["mixed.jsonl"]}}}}, id="sensor-named-files"),
    ],
)
def test_run_against_a_missing_bucket_fails_and_leaves_the_warehouse_unchanged(
    s3: Any, resources: Resources, instance: dg.DagsterInstance, run_config: dict[str, Any]
) -> None:
    put(s3, LANDING_PREFIX + "mixed.jsonl", MIXED)
    ingest_waiting_files(instance, resources)
    before = snapshot(resources)
    landing = resources["landing"]
    assert isinstance(landing, FileStoreResource)
    broken = {**resources, "landing": FileStoreResource(uri="s3://no-such-bucket/incoming", s3=landing.s3)}

    result = dg.materialize(
        [landing_events], run_config=run_config, resources=broken, instance=instance, raise_on_error=False
    )

    assert not result.success
    failures = result.get_step_failure_events()
    assert failures, "the run should fail in its step, not before it"
    error = failures[0].step_failure_data.error
    assert error is not None and error.cause is not None
    assert error.cause.cls_name in {"NoSuchBucket", "ClientError"}  # S3's refusal, not a vanished file
    assert snapshot(resources) == before


# --- (d) the lake where the profile puts it -----------------------------------------------------------


def test_the_days_quality_assets_read_the_lake_the_ingest_wrote(
    s3: Any, resources: Resources, instance: dg.DagsterInstance
) -> None:
    put(s3, LANDING_PREFIX + "2026/03/01/clicks.jsonl", jsonl_bytes(CLICKS))
    ingest_waiting_files(instance, resources)
    lakehouse = resources["lakehouse"]
    assert isinstance(lakehouse, LakehouseResource)
    lake = lakehouse.lake()
    [key] = lake.event_keys("2026-03-01")
    if lakehouse.lake_uri.startswith("s3://"):  # the objects are in the lake bucket, none on local disk
        stored = [o["Key"] for o in s3.list_objects_v2(Bucket=LAKE_BUCKET)["Contents"]]
        assert f"lake/{key}" in stored and any(k.startswith("lake/_ledger/files/") for k in stored)

    result = dg.materialize(
        [warehouse_events], partition_key="2026-03-01", resources=resources, instance=instance, raise_on_error=False
    )

    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    [(in_warehouse,)] = query(resources, "SELECT count(*) FROM events WHERE \"timestamp\"::DATE = DATE '2026-03-01'")
    metadata = result.asset_materializations_for_node(warehouse_events.op.name)[0].metadata
    assert metadata["dagster/row_count"].value == in_warehouse == lakeread.events_for_days(lake, ["2026-03-01"]).height
    assert in_warehouse > 0
