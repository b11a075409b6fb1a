"""Batch ingestion end to end on real files and a real DuckDB file: nothing lost, nothing doubled."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dataplatform.lib import warehouse
from dataplatform.lib.ingest import batch_id_for, ingest_batch
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LocalLanding
from factories import event, gzip_bytes, ingest_landing, jsonl_bytes, warehouse_snapshot, write_landing

CONTENT_COLUMNS = ["event_id", "user_id", "timestamp", "event_type", "product_id", "category", "brand", "price",
                   "session_id", "extras", "event_date"]  # fmt: skip


def lake_events(lake: Lake) -> pl.DataFrame:
    return pl.read_parquet(
        str(lake.storage.root / "events" / "event_date=*" / "*.parquet"), hive_partitioning=True
    ).sort("event_id")


def mixed_landing(landing: Path) -> int:
    """Three files, one with bad records and a broken line; returns how many valid events."""
    write_landing(landing, "a.jsonl", jsonl_bytes([event(i) for i in range(10)]))
    bad = jsonl_bytes([event(10), event(11, event_type="click"), event(12, price=-1)]) + b"{broken\n"
    write_landing(landing, "b.jsonl.gz", gzip_bytes(bad))
    write_landing(landing, "sub/c.jsonl", jsonl_bytes([event(20), event(1)]))  # e1 repeats a.jsonl
    return 12


def test_batch_reconciles_and_lands_in_lake_and_warehouse(landing_dir: Path, lake: Lake, warehouse_path: Path) -> None:
    valid = mixed_landing(landing_dir)
    report = ingest_landing(landing_dir, lake, warehouse_path)
    assert (report.rows_in, report.rows_valid, report.rows_quarantined, report.rows_duplicate) == (16, valid, 3, 1)
    tables = warehouse_snapshot(warehouse_path)
    assert tables["events"].height == valid
    assert tables["events"]["event_id"].n_unique() == valid
    assert sorted(map(tuple, tables["quarantine"]["reasons"].to_list())) == [
        ("event_type:not_allowed",), ("price:below_minimum",), ("record:malformed_json",)
    ]  # fmt: skip
    lake_rows = lake_events(lake)
    assert lake_rows["event_id"].to_list() == tables["events"]["event_id"].to_list()
    assert sorted(p.parent.name for p in (lake.storage.root / "events").glob("*/*.parquet")) == [
        "event_date=2026-03-01", "event_date=2026-03-02", "event_date=2026-03-03"
    ]  # fmt: skip


def test_running_a_batch_twice_changes_nothing(landing_dir: Path, lake: Lake, warehouse_path: Path) -> None:
    mixed_landing(landing_dir)
    ingest_landing(landing_dir, lake, warehouse_path)
    first = warehouse_snapshot(warehouse_path)
    files_before = sorted(lake.storage.root.rglob("*.parquet"))
    ingest_landing(landing_dir, lake, warehouse_path)
    second = warehouse_snapshot(warehouse_path)
    for name in first:
        assert first[name].equals(second[name]), name
    assert sorted(lake.storage.root.rglob("*.parquet")) == files_before


def test_redelivered_file_under_another_name_is_a_no_op(landing_dir: Path, lake: Lake, warehouse_path: Path) -> None:
    write_landing(landing_dir, "a.jsonl", jsonl_bytes([event(i) for i in range(5)]))
    ingest_landing(landing_dir, lake, warehouse_path)
    before = warehouse_snapshot(warehouse_path)
    write_landing(landing_dir, "a-again.jsonl", (landing_dir / "a.jsonl").read_bytes())
    store = LocalLanding(landing_dir)
    again = [store.stat("a-again.jsonl")]
    report = ingest_batch(
        store=store, files=again, lake=lake, warehouse_path=warehouse_path,
        batch_id=batch_id_for("stream", again), mode="stream",
    )  # fmt: skip
    assert report.files_redelivered == ["a-again.jsonl"] and report.rows_in == 0
    after = warehouse_snapshot(warehouse_path)
    assert before["events"].equals(after["events"])
    with warehouse.connect(warehouse_path, read_only=True) as con:
        statuses = con.sql("SELECT source_file, status FROM ingested_files ORDER BY source_file").fetchall()
    assert statuses == [("a-again.jsonl", "redelivered"), ("a.jsonl", "ingested")]


@pytest.mark.parametrize(
    ("rejected_name", "fixed_name", "encode"),
    [("a.jsonl.tmp", "a.jsonl", lambda data: data), ("a.jsonl", "a.jsonl.gz", gzip_bytes)],
    ids=["tmp-suffix-renamed", "gzip-bytes-renamed-gz"],
)
def test_a_rejected_file_redelivered_under_a_corrected_name_is_ingested(
    landing_dir: Path, lake: Lake, warehouse_path: Path, rejected_name: str, fixed_name: str, encode: Any
) -> None:
    data = encode(jsonl_bytes([event(i) for i in range(4)]))
    write_landing(landing_dir, rejected_name, data)
    first = ingest_landing(landing_dir, lake, warehouse_path)
    assert (first.files_rejected, first.rows_valid) == (1, 0)
    (landing_dir / rejected_name).unlink()
    write_landing(landing_dir, fixed_name, data)  # the same bytes, as the replay documentation says to re-deliver
    second = ingest_landing(landing_dir, lake, warehouse_path)
    assert second.files_redelivered == [] and (second.rows_in, second.rows_valid) == (4, 4)
    assert warehouse_snapshot(warehouse_path)["events"].height == 4
    # Ingested content, though, still makes a later copy a redelivery.
    write_landing(landing_dir, "copy-" + fixed_name, data)
    (landing_dir / fixed_name).unlink()
    assert ingest_landing(landing_dir, lake, warehouse_path).files_redelivered == ["copy-" + fixed_name]


def test_rejected_and_accepted_copies_in_one_batch_land_once(
    landing_dir: Path, lake: Lake, warehouse_path: Path
) -> None:
    data = jsonl_bytes([event(i) for i in range(3)])
    write_landing(landing_dir, "a.jsonl.tmp", data)
    write_landing(landing_dir, "b.jsonl", data)
    report = ingest_landing(landing_dir, lake, warehouse_path)
    assert (report.files_rejected, report.rows_valid, report.files_redelivered) == (1, 3, [])


def test_records_already_in_the_warehouse_count_as_duplicates(
    landing_dir: Path, lake: Lake, warehouse_path: Path
) -> None:
    write_landing(landing_dir, "a.jsonl", jsonl_bytes([event(i) for i in range(5)]))
    ingest_landing(landing_dir, lake, warehouse_path)
    (landing_dir / "a.jsonl").unlink()
    write_landing(landing_dir, "b.jsonl", jsonl_bytes([event(i) for i in range(3, 8)]))
    report = ingest_landing(landing_dir, lake, warehouse_path)
    assert (report.rows_in, report.rows_valid, report.rows_duplicate) == (5, 3, 2)
    assert warehouse_snapshot(warehouse_path)["events"].height == 8
    assert lake_events(lake).height == 8  # the lake holds each event once too


def test_streaming_and_history_paths_produce_identical_rows(tmp_path: Path) -> None:
    records = [event(i) for i in range(30)] + [event(31, price="NaN"), event(2)]
    outputs = {}
    for mode in ("stream", "history"):
        landing = tmp_path / mode / "in"
        if mode == "stream":  # many small files, as a sensor sees them
            for i in range(0, len(records), 4):
                write_landing(landing, f"part-{i:03d}.jsonl", jsonl_bytes(records[i : i + 4]))
        else:  # one compressed dump for the day
            write_landing(landing, "dump.jsonl.gz", gzip_bytes(jsonl_bytes(records)))
        lake = Lake.local(tmp_path / mode / "lake")
        ingest_landing(landing, lake, tmp_path / mode / "wh.duckdb", prefix=mode)
        outputs[mode] = warehouse_snapshot(tmp_path / mode / "wh.duckdb")["events"].select(CONTENT_COLUMNS)
    assert outputs["stream"].height == 30  # the NaN price is quarantined, e2 repeats
    assert outputs["stream"].equals(outputs["history"])


KILLABLE_INGEST = textwrap.dedent(
    """
    import importlib, sys, time
    from pathlib import Path
    from dataplatform.lib.ingest import batch_id_for, ingest_batch
    from dataplatform.lib.lake import Lake
    from dataplatform.lib.landing import LocalLanding
    landing, lake, wh = map(Path, sys.argv[1:4])
    if len(sys.argv) > 4:  # stop at the nth call of a function, before or after it: the parent kills us there
        target, when, nth = sys.argv[4], sys.argv[5], int(sys.argv[6])
        module_name, _, path = target.partition(":")
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original, calls = getattr(owner, name), []
        def halt():
            print("halted", flush=True)
            time.sleep(3600)
        def stop_here(*args, **kwargs):
            calls.append(1)
            if len(calls) == nth and when == "before":
                halt()
            result = original(*args, **kwargs)
            if len(calls) == nth and when == "after":
                halt()
            return result
        setattr(owner, name, stop_here)
    store = LocalLanding(landing)
    files = store.list_files(1000)
    print("ready", flush=True)
    ingest_batch(store=store, files=files, lake=Lake.local(lake), warehouse_path=wh,
                 batch_id=batch_id_for("stream", files), mode="stream")
    print("done", flush=True)
    """
)


def _start_ingest(landing: Path, root: Path, *stop_at: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "platform")}
    script = [sys.executable, "-c", KILLABLE_INGEST, str(landing), str(root / "lake"), str(root / "wh.duckdb")]
    proc = subprocess.Popen([*script, *stop_at], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture(scope="module")
def killable_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Landing files, and the warehouse of one uninterrupted run over them."""
    root = tmp_path_factory.mktemp("reference")
    for i in range(8):
        write_landing(root / "landing", f"f{i}.jsonl", jsonl_bytes([event(i * 5000 + j) for j in range(5000)]))
    proc = _start_ingest(root / "landing", root)
    assert proc.communicate()[0].strip() == "done"
    return root / "landing", root / "wh.duckdb"


# Every phase of a batch, in order: (function, before or after its nth call). The kill lands exactly there.
KILL_PHASES = {
    "files read": ("dataplatform.lib.ingest:_read_files", "after", 1),
    "records transformed": ("dataplatform.lib.ingest:transform", "after", 1),
    "lake manifest named, no data file": ("dataplatform.lib.lake:BatchWriter._name", "after", 1),
    "a lake temp file written, not renamed": ("os:replace", "before", 2),
    "lake files written": ("dataplatform.lib.lake:BatchWriter.write", "after", 1),
    "warehouse rows added, not committed": ("dataplatform.lib.warehouse:BatchTransaction.add", "after", 1),
    "lake batch finished": ("dataplatform.lib.lake:BatchWriter.finish", "after", 1),
    "warehouse committed, ledger empty": ("dataplatform.lib.warehouse:BatchTransaction.finish", "after", 1),
    "ledger half written": ("dataplatform.lib.lake:Ledger.record", "after", 4),
}


@pytest.mark.parametrize("phase", list(KILL_PHASES))
def test_run_killed_in_any_phase_can_simply_be_run_again(
    tmp_path: Path, killable_batch: tuple[Path, Path], phase: str
) -> None:
    landing, reference = killable_batch
    target, when, nth = KILL_PHASES[phase]
    proc = _start_ingest(landing, tmp_path, target, when, str(nth))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "halted", f"never reached: {phase}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed there, not finished before the kill
    lake = Lake.local(tmp_path / "lake")
    # Whatever the moment of the kill, readers never see a partial file under a final name.
    visible = [p for p in lake.storage.root.rglob("*.parquet") if not p.name.startswith(".")]
    for path in visible:
        pl.read_parquet(path)
    if target == "os:replace":  # the kill did land between writing a file and publishing it
        assert any(p.name.endswith(".tmp") for p in lake.storage.root.rglob(".*"))

    ingest_landing(landing, lake, tmp_path / "wh.duckdb")
    assert warehouse_snapshot(tmp_path / "wh.duckdb")["events"].equals(warehouse_snapshot(reference)["events"])
    assert lake_events(lake).height == 40000
