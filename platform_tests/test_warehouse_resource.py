"""The warehouse is dagster-duckdb's DuckDBResource: a user's own asset takes it by type and gets the
platform's tables, in UTC, waiting for the writer's lock instead of failing."""

import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from dataplatform.defs.resources import build_resources
from dataplatform.lib.lake import Lake
from dataplatform.lib.settings import Settings
from factories import event, ingest_landing, jsonl_bytes, local_resources, write_landing


@dg.asset
def events_by_type(warehouse: DuckDBResource) -> dg.MaterializeResult:
    """What a user writes: an asset of their own on the platform's warehouse."""
    with warehouse.get_connection() as con:
        rows = con.execute("SELECT event_type, count(*) FROM events GROUP BY ALL ORDER BY ALL").fetchall()
        zone = con.execute("SELECT current_setting('TimeZone')").fetchone()
    return dg.MaterializeResult(metadata={"counts": dict(rows), "zone": zone[0] if zone else None})


def test_the_platform_offers_its_warehouse_as_a_duckdb_resource(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DP_WAREHOUSE_PATH", str(tmp_path / "w.duckdb"))
    resources = build_resources(Settings.from_env())
    assert isinstance(resources["warehouse"], DuckDBResource)
    assert resources["lakehouse"].warehouse.database == str(tmp_path / "w.duckdb")


def test_a_users_asset_reads_the_ingested_events_through_it(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    write_landing(
        landing,
        "a.jsonl",
        jsonl_bytes([event(1, event_type="view"), event(2, event_type="view"), event(3, event_type="purchase")]),
    )
    ingest_landing(landing, Lake.local(tmp_path / "lake"), tmp_path / "wh.duckdb")
    result = dg.materialize([events_by_type], resources=local_resources(tmp_path))
    metadata = result.asset_materializations_for_node("events_by_type")[0].metadata
    assert metadata["counts"].value == {"purchase": 1, "view": 2}
    assert metadata["zone"].value == "UTC"


def test_a_connection_waits_for_the_writer_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    resources = local_resources(tmp_path)
    with resources["warehouse"].get_connection():
        pass  # the declared tables exist
    # The holder keeps the lock until told to let go, so the test does not depend on how fast the machine is.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('held', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    counted: list[tuple] = []

    def count_events() -> None:
        with resources["warehouse"].get_connection(read_only=True) as con:
            counted.append(con.execute("SELECT count(*) FROM events").fetchone())

    try:
        assert holder.stdin is not None and holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(path))  # what a plain connection does meanwhile
        reader = threading.Thread(target=count_events)
        reader.start()  # the resource's connection waits for the holder to let go
        holder.stdin.write("release\n")
        holder.stdin.flush()
        holder.wait()
        reader.join()
        assert counted == [(0,)]
    finally:
        holder.kill()
        holder.wait()
