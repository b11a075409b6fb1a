"""Load: a burst of 10,000 small files drained by the real landing sensor, and one big file (JSONL, then CSV).

Both print their figures (time, peak RSS) to the terminal, also under pytest's capture.

The burst evaluates `landing_files_sensor` with `build_sensor_context` in a loop and executes
every requested run in process (as in test_dagster_ingestion.py), with the platform's default
limits (DP_MAX_LISTED_FILES, DP_BATCH_MAX_FILES, DP_MAX_BATCHES_PER_TICK, DP_MAX_IN_FLIGHT). It
asserts the work bounds of each tick (files listed, files per batch), that each tick requests as
many runs as the limits allow until the zone is drained (so the burst drains in the fewest ticks),
and that every file is ingested exactly once with exact counts. Tick times are printed, not asserted.

The big file is ingested through `ingest_batch` in a child process, so its peak RSS is its own.
Size it with DP_BIG_FILE_MB (default 320), its pieces with DP_PIECE_BYTES (default here 8 MiB). A
JSONL file larger than the piece is streamed in pieces, so memory is bounded by the piece size, not
by the file: the test's bound is sized from the piece, and the file is big enough that reading it
whole would exceed that bound. The full-size run is `DP_BIG_FILE_MB=5120 DP_PIECE_BYTES=67108864
.venv/bin/python -m pytest platform_tests/test_load_burst.py -k big_file -s` (about 6 GB of disk).
"""

import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster_aws.s3 import S3Resource

from dataplatform.defs.common.conventions import SETTINGS
from dataplatform.defs.ingestion.assets import landing_events
from dataplatform.defs.ingestion.sensors import landing_files_sensor
from dataplatform.defs.resources import FileStoreResource, LakehouseResource, WarehouseResource, ingestion_policy
from dataplatform.lib import warehouse
from dataplatform.lib.demo import DemoConfig, encode_events, generate_events
from dataplatform.lib.landing import LandingFile, LocalLanding
from factories import event, jsonl_bytes, write_landing

pytestmark = pytest.mark.slow

BURST_FILES = 10_000
EVENTS_PER_FILE = 5
TICK_LIMIT_SECONDS = 60.0  # Dagster's sensor evaluation timeout (printed beside the measured ticks)
PLATFORM_DIR = Path(__file__).resolve().parents[1] / "platform"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}")


def test_burst_of_10000_files_drains_in_bounded_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    landing = tmp_path / "landing"
    for i in range(BURST_FILES):
        records = [event(i * EVENTS_PER_FILE + j) for j in range(EVENTS_PER_FILE)]
        write_landing(landing, f"burst-{i:05d}.jsonl", jsonl_bytes(records))
    resources = {
        "landing": FileStoreResource(uri=str(landing), s3=S3Resource(region_name="us-east-1"), settle_seconds=0),
        "ingestion": ingestion_policy(SETTINGS),
        "lakehouse": LakehouseResource(
            s3=S3Resource(),
            lake_uri=str(tmp_path / "lake"),
            warehouse=WarehouseResource(database=str(tmp_path / "wh.duckdb")),
        ),
    }
    listed: list[int] = []
    list_files = LocalLanding.list_files

    def counting_list_files(self: LocalLanding, limit: int) -> list[LandingFile]:
        files = list_files(self, limit)
        listed.append(len(files))
        return files

    monkeypatch.setattr(LocalLanding, "list_files", counting_list_files)
    per_tick_runs = min(SETTINGS.max_batches_per_tick, SETTINGS.max_in_flight)
    expected_batches = math.ceil(BURST_FILES / SETTINGS.batch_max_files)
    tick_seconds: list[float] = []
    runs_per_tick: list[int] = []
    run_seconds: list[float] = []
    run_keys: list[str] = []
    cursor = None
    started = time.perf_counter()
    with dg.instance_for_test() as instance:
        # Enough ticks to drain at per_tick_runs batches each, plus slack; a stuck loop fails here.
        for _ in range(expected_batches // per_tick_runs + 10):
            clock = time.perf_counter()
            with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
                result = landing_files_sensor(context)
            tick_seconds.append(time.perf_counter() - clock)
            assert listed[-1] <= SETTINGS.max_listed_files
            runs_per_tick.append(len(result.run_requests))
            cursor = result.cursor
            if not result.run_requests:
                break
            for request in result.run_requests:
                files = request.run_config["ops"][landing_events.op.name]["config"]["files"]
                assert 0 < len(files) <= SETTINGS.batch_max_files
                clock = time.perf_counter()
                run = dg.materialize(
                    [landing_events], run_config=request.run_config, resources=resources, instance=instance,
                    tags={"dagster/run_key": request.run_key},
                )  # fmt: skip
                run_seconds.append(time.perf_counter() - clock)
                assert run.success
                run_keys.append(request.run_key)
        else:
            pytest.fail(f"the landing zone was not drained in {len(tick_seconds)} ticks")
        assert json.loads(cursor or "{}").get("pending") == {}
    total = time.perf_counter() - started

    report(
        capsys,
        f"load burst: {BURST_FILES:,} files x {EVENTS_PER_FILE} events drained in {total:.1f} s;"
        f" {len(tick_seconds)} ticks (max {max(tick_seconds):.2f} s,"
        f" mean {sum(tick_seconds) / len(tick_seconds):.2f} s,"
        f" limit {TICK_LIMIT_SECONDS:.0f} s; files listed per tick <= {max(listed):,}),"
        f" {len(run_seconds)} runs (mean {sum(run_seconds) / len(run_seconds):.2f} s, max {max(run_seconds):.2f} s);"
        f" peak RSS of the test process {peak_rss_mib():,.0f} MiB",
    )
    # Every run of a tick completes before the next (in process): each tick requests the most runs the
    # limits allow, the last one what is left, and then one tick finds nothing.
    full, rest = divmod(expected_batches, per_tick_runs)
    assert runs_per_tick == [per_tick_runs] * full + [rest] * (rest > 0) + [0]
    assert len(run_keys) == len(set(run_keys)) == expected_batches  # one run per batch, none retried
    with resources["lakehouse"].connect(read_only=True) as con:
        files = con.sql(
            "SELECT status, count(*), count(DISTINCT source_file) FROM ingested_files GROUP BY 1"
        ).fetchall()
        batches = con.sql(
            "SELECT count(*), max(len(files)), sum(rows_in), sum(rows_valid), sum(rows_quarantined + rows_duplicate)"
            " FROM ingest_batches"
        ).fetchall()[0]
        events = warehouse.scalar(con, "SELECT count(*) FROM events")
        distinct_ids = warehouse.scalar(con, "SELECT count(DISTINCT event_id) FROM events")
    assert files == [("ingested", BURST_FILES, BURST_FILES)]
    total_events = BURST_FILES * EVENTS_PER_FILE
    assert batches == (expected_batches, SETTINGS.batch_max_files, total_events, total_events, 0)
    assert events == distinct_ids == total_events
    ledger = resources["lakehouse"].lake().ledger
    assert all(ledger.has_file(f) for f in list_files(LocalLanding(landing), BURST_FILES + 1))


# --- one big file -----------------------------------------------------------------------------

BIG_FILE_MB = float(os.environ.get("DP_BIG_FILE_MB", "320"))
# The platform's 64 MiB default would need a file of over 1.5 GiB for the bound below to tell streaming
# from reading whole; 8 MiB pieces make the same point on a 320 MiB file.
PIECE_BYTES = int(os.environ.get("DP_PIECE_BYTES", str(8 * 2**20)))
# Peak RSS allowed: the interpreter, libraries and DuckDB's state for the batch, plus a multiple of the
# piece (its bytes, their text and the parsed frame at once). Measured (2026-12-03, 200 MiB file): 427,
# 531 and 893 MiB for 4, 16 and 64 MiB pieces, i.e. about 390 MiB + 8.5x the piece.
FIXED_MIB = 512
PER_PIECE = 12
# Reading a file whole holds at least its bytes and its parsed frame together (measured: 7.5x the file).
WHOLE_FILE_FLOOR = 2
CHUNK_EVENTS = 100_000

INGEST_CHILD = """
import json, sys, time
from pathlib import Path
from dataplatform.lib.ingest import batch_id_for, ingest_batch
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LocalLanding

landing, out, piece_bytes = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
store = LocalLanding(landing)
files = store.list_files(10)
start = time.perf_counter()
report = ingest_batch(store=store, files=files, lake=Lake.local(out / "lake"), warehouse_path=out / "wh.duckdb",
                      batch_id=batch_id_for("stream", files), mode="stream", piece_bytes=piece_bytes)
seconds = time.perf_counter() - start
peak = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_mib": peak, "phases": report.seconds, "rows_in": report.rows_in,
                  "pieces": report.pieces,
                  "rows_valid": report.rows_valid, "rows_quarantined": report.rows_quarantined,
                  "rows_duplicate": report.rows_duplicate}))
"""


def write_big_file(path: Path, target_bytes: int) -> int:
    """Append chunks of clean demo events (event ids made unique per chunk) until the file reaches target_bytes;
    JSONL or CSV by the name (a CSV file has one header line)."""
    fmt = "csv" if path.suffix == ".csv" else "jsonl"
    frame = generate_events(DemoConfig(days=7, users=20_000, products=5_000, events_per_day=CHUNK_EVENTS // 7)).frame
    frame = frame.filter(pl.col("corruption").is_null())
    events = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        chunk = 0
        while out.tell() < target_bytes:
            renamed = frame.with_columns(pl.concat_str(pl.lit(f"c{chunk}-"), "event_id").alias("event_id"))
            data = encode_events(renamed, fmt)
            out.write(data if fmt == "jsonl" or chunk == 0 else data[data.index(b"\n") + 1 :])
            events += renamed.height
            chunk += 1
    return events


@pytest.mark.parametrize("name", ["big.jsonl", "big.csv"])
def test_big_file_streams_in_pieces_with_memory_bounded_by_the_piece(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    bound_mib = FIXED_MIB + PER_PIECE * PIECE_BYTES / 2**20
    # The bound must be below what a whole-file read needs, or it would pass without streaming.
    assert bound_mib < BIG_FILE_MB * WHOLE_FILE_FLOOR, "DP_BIG_FILE_MB is too small for this DP_PIECE_BYTES"
    landing = tmp_path / "landing"
    clock = time.perf_counter()
    events = write_big_file(landing / name, int(BIG_FILE_MB * 2**20))
    size_mib = (landing / name).stat().st_size / 2**20
    generated = time.perf_counter() - clock
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLATFORM_DIR), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", INGEST_CHILD, str(landing), str(tmp_path / "out"), str(PIECE_BYTES)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result["phases"].items())
    report(
        capsys,
        f"big file: {size_mib:,.0f} MiB {name}, {events:,} events (written in {generated:.0f} s) ingested in one batch"
        f" read in {result['pieces']} pieces"
        f" in {result['seconds']:.1f} s ({events / result['seconds']:,.0f} rows/s; {phases});"
        f" peak RSS of the ingesting process {result['peak_mib']:,.0f} MiB"
        f" = {result['peak_mib'] / size_mib:.1f}x the file (bound {bound_mib:,.0f} MiB for"
        f" {PIECE_BYTES / 2**20:g} MiB pieces)",
    )
    assert result["rows_in"] == result["rows_valid"] == events
    assert result["rows_quarantined"] == result["rows_duplicate"] == 0
    assert result["pieces"] >= math.floor(size_mib * 2**20 / PIECE_BYTES)  # never read whole
    # Bounded by the piece, not the file: the whole-file reader peaked at 7.5x the file (1.5 GiB for 200 MiB).
    assert result["peak_mib"] < bound_mib
