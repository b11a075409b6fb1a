"""Fault injection: kill -9 of runs and of the daemon, concurrent writers, S3 going away, an unwritable lake.

Every scenario ends the same way: nothing lost, nothing doubled, no partial file under a final name, every
batch reconciles and the lake holds exactly the warehouse's events.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from moto.server import ThreadedMotoServer

from dataplatform.lib import warehouse
from dataplatform.lib.ingest import batch_id_for, ingest_batch
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LocalLanding, S3Landing
from factories import event, jsonl_bytes, write_landing
from servers import (
    kill_process_group,
    platform_env,
    start_daemon,
    stop_process_group,
    wait_until,
    write_instance_config,
)

REPO = Path(__file__).resolve().parents[1]
SEED = 20261125

# --- shared checks --------------------------------------------------------------------------------------------


def query(warehouse_path: Path, sql: str, wait_seconds: float = 30.0) -> list[tuple[Any, ...]]:
    with warehouse.connect(warehouse_path, read_only=True, wait_seconds=wait_seconds) as con:
        return con.sql(sql).fetchall()


def assert_no_partial_files(lake: Lake) -> None:
    """Under a final name every file is complete; only hidden `.*.tmp` files may be left over by a kill."""
    for path in lake.storage.root.rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith("."):
            assert path.name.endswith(".tmp"), path
        elif path.suffix == ".parquet":
            pl.read_parquet(path)  # raises on a truncated file
        elif path.suffix == ".json":
            json.loads(path.read_text())
        else:
            raise AssertionError(f"unexpected file in the lake: {path}")


def ledger_markers(lake: Lake) -> list[Path]:
    return [p for p in (lake.storage.root / "_ledger").rglob("*.json") if not p.name.startswith(".")]


def assert_consistent(lake: Lake, warehouse_path: Path, expected_ids: set[str], landing_keys: set[str]) -> None:
    """Nothing lost, nothing doubled; every batch reconciles; lake == warehouse; every file recorded once."""
    assert_no_partial_files(lake)
    with warehouse.connect(warehouse_path, read_only=True) as con:
        ids = [row[0] for row in con.sql("SELECT event_id FROM events").fetchall()]
        batches = [row[0] for row in con.sql("SELECT batch_id FROM ingest_batches").fetchall()]
        checks = [warehouse.batch_reconciliation(con, batch_id) for batch_id in batches]
        files = con.sql("SELECT source_file, list(status) FROM ingested_files GROUP BY 1").fetchall()
    assert len(ids) == len(set(ids)), "an event_id is doubled in the warehouse"
    assert set(ids) == expected_ids, f"{len(expected_ids - set(ids))} events lost, {len(set(ids) - expected_ids)} extra"
    assert checks and all(check["ok"] for check in checks), [c for c in checks if not c["ok"]]
    assert dict(files) == {key: ["ingested"] for key in landing_keys}
    lake_ids = pl.read_parquet(
        str(lake.storage.root / "events" / "event_date=*" / "*.parquet"), hive_partitioning=True
    )["event_id"].to_list()
    assert sorted(lake_ids) == sorted(ids), "the lake and the warehouse differ"
    ledger_keys = {json.loads(p.read_text())["key"] for p in (lake.storage.root / "_ledger" / "files").glob("*.json")}
    assert ledger_keys == landing_keys


# An ingestion in its own process, killable at any moment: it imports and lists, says "ready", waits for "go"
# on stdin (so that kill delays count from the start of the ingest itself), then prints a JSON summary.
INGEST_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import duckdb
    from dataplatform.lib.ingest import batch_id_for, ingest_batch
    from dataplatform.lib.lake import Lake
    from dataplatform.lib.landing import LocalLanding

    lock_refusals = 0
    real_connect = duckdb.connect

    def counting_connect(*args, **kwargs):  # observes warehouse.connect's retries; changes nothing
        global lock_refusals
        try:
            return real_connect(*args, **kwargs)
        except duckdb.IOException as exc:
            lock_refusals += "lock" in str(exc).lower()
            raise

    duckdb.connect = counting_connect
    landing, lake, wh, prefix, *keys = sys.argv[1:]
    store = LocalLanding(Path(landing))
    files = [store.stat(k) for k in keys] if keys else store.list_files(1000)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    report = ingest_batch(store=store, files=files, lake=Lake.local(Path(lake)), warehouse_path=Path(wh),
                          batch_id=batch_id_for(prefix, files), mode="stream")
    print(json.dumps({"started": started, "finished": time.time(), "batch_id": report.batch_id,
                      "lock_refusals": lock_refusals, "rows_valid": report.rows_valid,
                      "rows_duplicate_existing": report.rows_duplicate_existing}), flush=True)
    """
)


def spawn_ingest(
    landing: Path, lake: Path, warehouse_path: Path, prefix: str = "stream", keys: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """A ready ingestion process (imported, files listed), waiting for `go`."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "platform")}
    argv = [sys.executable, "-c", INGEST_SCRIPT, str(landing), str(lake), str(warehouse_path), prefix, *keys]
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish(proc: subprocess.Popen[str], timeout: float = 120.0) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"ingest process exited with {proc.returncode}"
    return json.loads(out.strip().splitlines()[-1])


def in_process_ingest(landing: Path, lake: Lake, warehouse_path: Path, keys: tuple[str, ...] = ()) -> None:
    """Ingest the named landing files (all of them by default) as one batch, in this process."""
    store = LocalLanding(landing)
    files = [f for f in store.list_files(1000) if not keys or f.key in keys]
    ingest_batch(
        store=store, files=files, lake=lake, warehouse_path=warehouse_path,
        batch_id=batch_id_for("stream", files), mode="stream",
    )  # fmt: skip


# --- 1. kill -9 of an ingestion run at random moments ---------------------------------------------------------

KILL_TRIALS = 20
KILL_FILES, KILL_EVENTS_PER_FILE = 8, 2500


@pytest.fixture(scope="module")
def kill_landing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str], float]:
    """Landing files (valid events, one bad record and one repeat each), their valid ids, one clean run's duration."""
    landing = tmp_path_factory.mktemp("kill-landing")
    for k in range(KILL_FILES):
        records = [event(k * KILL_EVENTS_PER_FILE + i) for i in range(KILL_EVENTS_PER_FILE)]
        records += [event(10**7 + k, event_type="click")] + ([event(k * KILL_EVENTS_PER_FILE - 1)] if k else [])
        write_landing(landing, f"part-{k}.jsonl", jsonl_bytes(records))
    reference = tmp_path_factory.mktemp("kill-reference")
    proc = spawn_ingest(landing, reference / "lake", reference / "wh.duckdb")
    go(proc)
    summary = finish(proc)
    return (
        landing,
        {f"e{n}" for n in range(KILL_FILES * KILL_EVENTS_PER_FILE)},
        summary["finished"] - summary["started"],
    )


def state_after_kill(lake: Lake, warehouse_path: Path) -> str:
    """How far the killed run got: which of lake, warehouse and ledger it had written."""
    # Killed while the first connection was creating the schema, the file may exist without the table yet.
    has_events = (
        warehouse_path.exists()
        and query(warehouse_path, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'")[0][0]
    )
    events = query(warehouse_path, "SELECT count(*) FROM events")[0][0] if has_events else 0
    lake_files = [p for p in lake.storage.root.rglob("*.parquet") if not p.name.startswith(".")]
    markers = len(ledger_markers(lake))
    if markers == 2 * KILL_FILES:
        return "complete"
    if events:
        return f"committed, {markers} ledger markers"
    return "lake written" if lake_files else "nothing written"


@pytest.mark.slow
def test_ingest_killed_at_random_moments_is_completed_by_a_rerun(
    tmp_path: Path, kill_landing: tuple[Path, set[str], float]
) -> None:
    landing, expected, duration = kill_landing
    keys = {p.name for p in landing.iterdir() if not p.name.startswith(".")}
    rng = random.Random(SEED)
    outcomes: dict[str, int] = {}
    started = time.monotonic()
    for trial in range(KILL_TRIALS):
        # Stratified: one random delay in each twentieth of a clean run, so the kills cover every phase.
        delay = (trial + rng.random()) / KILL_TRIALS * duration
        root = tmp_path / f"trial-{trial:02d}"
        lake, warehouse_path = Lake.local(root / "lake"), root / "wh.duckdb"
        proc = spawn_ingest(landing, lake.storage.root, warehouse_path)
        go(proc)
        time.sleep(delay)
        proc.kill()
        proc.communicate()
        assert_no_partial_files(lake)  # whatever the moment, readers never see a partial file
        state = state_after_kill(lake, warehouse_path) if proc.returncode else "finished before the kill"
        outcomes[state] = outcomes.get(state, 0) + 1
        if state.startswith("committed"):  # the warehouse commit is all or nothing
            assert query(warehouse_path, "SELECT count(*) FROM events")[0][0] == len(expected)

        in_process_ingest(landing, lake, warehouse_path)
        assert_consistent(lake, warehouse_path, expected, keys)
        rows = query(warehouse_path, "SELECT rows_in, rows_valid, rows_quarantined, rows_duplicate FROM ingest_batches")
        assert rows == [(len(expected) + 2 * KILL_FILES - 1, len(expected), KILL_FILES, KILL_FILES - 1)]
    print(
        f"\n{KILL_TRIALS} kills over a clean run of {duration:.2f} s, {time.monotonic() - started:.1f} s in all;"
        f" state left by the kill: {outcomes}"
    )


# --- 2. the daemon killed with -9 while files stream in, then restarted ----------------------------------------

SENSOR = "landing_files_sensor"
DAEMON_FILES = 14
FIRST_WAVE = 2  # dropped before the rest streams in, once the sensor ticks
STREAM_GAP_SECONDS = 2.0
EVENTS_PER_FILE = 5000
BATCH_ID_TAG = "dataplatform/batch_id"
LANDING_JOB = "ingest_landing_job"
POOL = "duckdb_writer"


def daemon_file(k: int) -> bytes:
    return jsonl_bytes([event(100_000 + k * EVENTS_PER_FILE + i) for i in range(EVENTS_PER_FILE)])


def sensor_cursor(instance: dg.DagsterInstance) -> dict[str, Any] | None:
    """The landing sensor's stored cursor ({} before its first run request), None before its first tick."""
    for state in instance.all_instigator_state():
        if state.instigator_name != SENSOR:
            continue
        if instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1):
            return json.loads(getattr(state.instigator_data, "cursor", None) or "{}")
    return None


def statuses_by_file(warehouse_path: Path) -> dict[str, list[str]] | None:
    """source_file -> its statuses in ingested_files, or None while a run holds the warehouse lock."""
    if not warehouse_path.exists():
        return {}
    try:
        return dict(query(warehouse_path, "SELECT source_file, list(status) FROM ingested_files GROUP BY 1", 1.0))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            return None
        raise


def describe(runs: list[dg.DagsterRun]) -> list[tuple[str, str, str | None, str]]:
    return [
        (r.run_id[:8], r.status.value, r.tags.get("dagster/run_key"), r.tags.get("dagster/parent_run_id", "")[:8])
        for r in runs
    ]


@pytest.mark.slow
def test_daemon_killed_while_files_stream_in_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    dagster_home, data_dir = tmp_path / "dagster_home", tmp_path / "data"
    landing, warehouse_path = data_dir / "landing", data_dir / "warehouse" / "warehouse.duckdb"
    landing.mkdir(parents=True)
    write_instance_config(dagster_home)
    # Test tuning only: run monitoring polls every 5 s (not 30), fails a run that never started after 60 s (not
    # 180) and frees the slot of a dead run after 10 s (not 30), so that recovery fits this test's time budget.
    config = yaml.safe_load((dagster_home / "dagster.yaml").read_text())
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"]  # the fix this test needs
    config["run_monitoring"].update(
        poll_interval_seconds=5, start_timeout_seconds=60, free_slots_after_run_end_seconds=10
    )
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = platform_env(
        dagster_home, data_dir, tmp_path / "home",
        DP_SENSOR_INTERVAL_SECONDS="1", DP_SETTLE_SECONDS="0", DP_BATCH_MAX_FILES="4",
    )  # fmt: skip
    names = [f"stream-{k:02d}.jsonl" for k in range(DAEMON_FILES)]
    log_path = tmp_path / "daemon.log"
    started = time.monotonic()

    killed = threading.Event()

    def drop(keys: list[str], gap: float, hold_last_until: threading.Event | None = None) -> None:
        for n, key in enumerate(keys):
            if hold_last_until is not None and n == len(keys) - 1:
                # However fast the rest went (a busy machine), the stream is still open at the kill.
                hold_last_until.wait(timeout=600)
            write_landing(landing, key, daemon_file(names.index(key)))
            time.sleep(gap)

    def writer_slot_holders() -> list[str]:
        return [slot.run_id for slot in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots]

    def ingested(count: int) -> bool:
        statuses = statuses_by_file(warehouse_path)
        return statuses is not None and len(statuses) >= count

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.get_runs(limit=1)  # create the SQLite storages before the daemon and the test race to
        instance.all_instigator_state()
        daemon = start_daemon(env, tmp_path, log_path)
        try:
            wait_until("the sensor's first tick", lambda: sensor_cursor(instance) is not None, 120, daemon)
            drop(names[:FIRST_WAVE], gap=0.5)
            first_done = lambda: ingested(FIRST_WAVE) and not writer_slot_holders()  # noqa: E731
            wait_until("the first files to be ingested", first_done, 120, daemon)
            # The rest streams in, through the kill and the restart. The kill comes at a random moment while the
            # next ingestion step holds the writer slot: its run worker dies with the daemon, mid-write.
            dropper = threading.Thread(target=drop, args=(names[FIRST_WAVE:], STREAM_GAP_SECONDS, killed), daemon=True)
            dropper.start()
            wait_until("an ingestion step to take the writer slot", writer_slot_holders, 120, daemon, interval=0.05)
            time.sleep(rng.uniform(0.0, 0.6))
            streaming = dropper.is_alive()
            kill_process_group(daemon)
            killed.set()
            killed_at = time.monotonic() - started
            assert streaming, "the kill should come while files stream in"
            # What the kill left behind (nothing changes it until the restart).
            pending_at_kill = (sensor_cursor(instance) or {}).get("pending", {})
            runs_at_kill = instance.get_runs()
            slot_at_kill = writer_slot_holders()

            daemon = start_daemon(env, tmp_path, log_path)
            dropper.join()

            wait_until(f"all {DAEMON_FILES} files in ingested_files", lambda: ingested(DAEMON_FILES), 240, daemon)
            wait_until("every run to finish", lambda: all(r.is_finished for r in instance.get_runs()), 60, daemon)
            wait_until("the sensor to close every batch", lambda: not (sensor_cursor(instance) or {})["pending"], 30)
            final_cursor = sensor_cursor(instance)
        except BaseException:
            print(f"\n--- runs: {describe(instance.get_runs())}")
            print(f"--- {POOL} slot held by: {writer_slot_holders()}")
            print("--- daemon log tail:\n" + "\n".join(log_path.read_text(errors="replace").splitlines()[-60:]))
            raise
        finally:
            killed.set()  # release the dropper if the test failed before the kill
            stop_process_group(daemon)
        runs = instance.get_runs()

    print(
        f"\nkilled the daemon's process group {killed_at:.1f} s in, {len(pending_at_kill)} batches"
        f" pending, {POOL} slot held by {[run_id[:8] for run_id in slot_at_kill]}, runs: {describe(runs_at_kill)}"
        f"\nall ingested after {time.monotonic() - started:.1f} s,"
        f" runs: {describe(runs)}"
    )
    assert statuses_by_file(warehouse_path) == {name: ["ingested"] for name in names}
    expected = {f"e{100_000 + k * EVENTS_PER_FILE + i}" for k in range(DAEMON_FILES) for i in range(EVENTS_PER_FILE)}
    assert_consistent(Lake.local(data_dir / "lake"), warehouse_path, expected, set(names))
    # No batch ran to success twice (retries of failed attempts are fine), and the sensor never requested a
    # run_key twice (Dagster's own re-execution of a failed run carries its parent's run_key, and a parent tag).
    landing_runs = [r for r in runs if r.job_name == LANDING_JOB]
    succeeded = [r.tags[BATCH_ID_TAG] for r in landing_runs if r.status == dg.DagsterRunStatus.SUCCESS]
    assert len(succeeded) == len(set(succeeded)), f"a batch was ingested by two successful runs: {succeeded}"
    requested = [r.tags["dagster/run_key"] for r in landing_runs if "dagster/parent_run_id" not in r.tags]
    assert len(requested) == len(set(requested))
    # The cursor survived the kill: every batch pending then was completed under its own batch id.
    assert set(pending_at_kill) <= set(succeeded)
    assert final_cursor == {"pending": {}, "failed": {}}


# --- 3. overlapping writers, and a reader holding the warehouse file ------------------------------------------

WRITERS, FILES_PER_WRITER, EVENTS_PER_WRITER_FILE, OVERLAP = 4, 2, 3000, 100


def test_concurrent_writers_all_succeed_and_nothing_is_lost(tmp_path: Path) -> None:
    """Four processes ingest different files into one warehouse at once, starting on no warehouse at all.

    Neighbouring files share OVERLAP event ids, so whichever batch commits second must see the other's rows:
    that holds only if `warehouse.connect` serializes the writers (DuckDB takes one writing process)."""
    landing = tmp_path / "landing"
    step = EVENTS_PER_WRITER_FILE - OVERLAP
    names = [f"w{k // FILES_PER_WRITER}-f{k % FILES_PER_WRITER}.jsonl" for k in range(WRITERS * FILES_PER_WRITER)]
    for k, name in enumerate(names):
        write_landing(landing, name, jsonl_bytes([event(k * step + i) for i in range(EVENTS_PER_WRITER_FILE)]))
    expected = {f"e{n}" for n in range(len(names) * step + OVERLAP)}
    lake, warehouse_path = Lake.local(tmp_path / "lake"), tmp_path / "warehouse" / "wh.duckdb"

    writers = [
        spawn_ingest(
            landing, lake.storage.root, warehouse_path, f"w{w}", tuple(names[w * FILES_PER_WRITER :][:FILES_PER_WRITER])
        )
        for w in range(WRITERS)
    ]
    for proc in writers:  # all at once: every one is already imported and has listed its files
        go(proc)
    summaries = [finish(proc) for proc in writers]

    t0 = min(s["started"] for s in summaries)
    spans = [(round(s["started"] - t0, 2), round(s["finished"] - t0, 2), s["lock_refusals"]) for s in summaries]
    print(f"\nwriters (start s, end s, times the lock refused them): {spans}")
    assert max(s["started"] for s in summaries) < min(s["finished"] for s in summaries), "the writers did not overlap"
    assert sum(s["lock_refusals"] for s in summaries) > 0, "no writer ever met the lock: nothing was tested"
    assert_consistent(lake, warehouse_path, expected, set(names))
    # Every shared id is in exactly one batch; the ids shared across writers count as duplicates in one of them.
    cross_writer = WRITERS - 1
    assert sum(s["rows_duplicate_existing"] for s in summaries) == cross_writer * OVERLAP


HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read_only")
    con.sql("SELECT count(*) FROM events").fetchall()
    print("holding", flush=True)
    time.sleep(float(sys.argv[3]))
    con.close()
    print(time.time(), flush=True)
    """
)
HOLD_SECONDS = 4.0


@pytest.mark.parametrize("mode", ["read_write", "read_only"])
def test_a_process_holding_the_warehouse_only_delays_a_run(tmp_path: Path, mode: str) -> None:
    landing, lake, warehouse_path = tmp_path / "landing", Lake.local(tmp_path / "lake"), tmp_path / "wh.duckdb"
    write_landing(landing, "a.jsonl", jsonl_bytes([event(i) for i in range(100)]))
    in_process_ingest(landing, lake, warehouse_path)
    write_landing(landing, "b.jsonl", jsonl_bytes([event(i) for i in range(100, 300)]))

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(warehouse_path), mode, str(HOLD_SECONDS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    started = time.time()
    in_process_ingest(landing, lake, warehouse_path, keys=("b.jsonl",))  # waits for the lock, does not fail
    finished = time.time()
    released = float(holder.communicate(timeout=30)[0].strip())
    assert holder.returncode == 0

    print(f"\n{mode} holder: the run waited {released - started:.1f} s and finished {finished - released:.2f} s after")
    assert finished >= released, "the run cannot have written while another process held the file"
    assert_consistent(lake, warehouse_path, {f"e{i}" for i in range(300)}, {"a.jsonl", "b.jsonl"})


# --- 4. the S3 landing zone going away in the middle of a batch -----------------------------------------------

BUCKET, PREFIX, REGION = "landing-bucket", "incoming/", "us-east-1"
S3_FILES = {
    f"2026/03/0{k % 3 + 1}/part-{k}.jsonl": jsonl_bytes([event(500 + k * 50 + i) for i in range(50)]) for k in range(4)
}


def fill_bucket(endpoint: str) -> Any:
    """A fresh moto state holding the landing bucket and files; returns a client that does not retry for long."""
    with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")) as response:
        assert response.status == 200
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION,
        config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=5),
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    for key, data in S3_FILES.items():
        client.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=data)
    return client


def test_s3_outage_mid_batch_writes_nothing_and_a_rerun_ingests_everything_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    endpoint = f"http://127.0.0.1:{port}"
    lake, warehouse_path = Lake.local(tmp_path / "lake"), tmp_path / "wh.duckdb"
    reads: list[str] = []

    class OutageAfterFirstRead(S3Landing):
        """The real S3 store; after its first (real) GET, the server is stopped from another thread."""

        def read(self, key: str) -> bytes:
            data = super().read(key)
            reads.append(key)
            if len(reads) == 1:
                stopper = threading.Thread(target=server.stop)
                stopper.start()
                stopper.join()
            return data

    try:
        store = OutageAfterFirstRead(fill_bucket(endpoint), BUCKET, PREFIX)
        files = store.list_files(100)
        assert sorted(f.key for f in files) == sorted(S3_FILES)
        with pytest.raises(BotoCoreError) as failure:
            ingest_batch(
                store=store, files=files, lake=lake, warehouse_path=warehouse_path,
                batch_id=batch_id_for("stream", files), mode="stream",
            )  # fmt: skip
        print(f"\nafter {len(reads)} file read, the ingest raised {failure.type.__name__}: {failure.value}")
        assert len(reads) == 1
        # Nothing reached the lake, its ledger or the warehouse.
        assert not [path for path in lake.storage.root.rglob("*") if path.is_file()]
        if warehouse_path.exists():
            assert query(warehouse_path, "SELECT count(*) FROM events")[0][0] == 0
        with pytest.raises(BotoCoreError):  # and while S3 is down, listing fails: no silent "no new files"
            store.list_files(100)

        # S3 is back on the same address with the same objects (moto keeps its state in this process: make it anew).
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        store = S3Landing(fill_bucket(endpoint), BUCKET, PREFIX)
        again = store.list_files(100)
        assert {f.identity for f in again} == {f.identity for f in files}  # same keys, sizes and ETags
        ingest_batch(
            store=store, files=again, lake=lake, warehouse_path=warehouse_path,
            batch_id=batch_id_for("stream", again), mode="stream",
        )  # fmt: skip
    finally:
        server.stop()
    expected = {f"e{500 + k * 50 + i}" for k in range(4) for i in range(50)}
    assert_consistent(lake, warehouse_path, expected, set(S3_FILES))


# --- 5. an unwritable lake: a file where a folder must go, a full disk ----------------------------------------


@pytest.fixture
def day_files(tmp_path: Path) -> tuple[Path, set[str], set[str]]:
    """Three landing files over three event dates; their event ids and keys."""
    landing = tmp_path / "landing"
    for k in range(3):
        write_landing(landing, f"day-{k}.jsonl", jsonl_bytes([event(k * 3000 + i) for i in range(3000)]))
    return landing, {f"e{n}" for n in range(9000)}, {f"day-{k}.jsonl" for k in range(3)}


def assert_nothing_committed(lake: Lake, warehouse_path: Path) -> None:
    counts = query(warehouse_path, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM ingest_batches),"
                   " (SELECT count(*) FROM ingested_files), (SELECT count(*) FROM quarantine)")  # fmt: skip
    assert counts == [(0, 0, 0, 0)]
    assert not ledger_markers(lake)


def test_a_file_where_the_lake_needs_a_folder_fails_clearly_and_a_rerun_after_the_fix_completes(
    tmp_path: Path, day_files: tuple[Path, set[str], set[str]]
) -> None:
    landing, expected, keys = day_files
    lake, warehouse_path = Lake.local(tmp_path / "lake"), tmp_path / "wh.duckdb"
    lake.storage.root.mkdir()
    (lake.storage.root / "events").write_text("not a folder")  # works as root too, unlike chmod

    with pytest.raises(OSError) as failure:
        in_process_ingest(landing, lake, warehouse_path)
    print(f"\n{failure.type.__name__}: {failure.value}")
    assert str(lake.storage.root / "events") in str(failure.value)
    assert_nothing_committed(lake, warehouse_path)
    assert not list(lake.storage.root.rglob("*.parquet"))

    (lake.storage.root / "events").unlink()  # the operator's fix; then the same batch again
    in_process_ingest(landing, lake, warehouse_path)
    assert_consistent(lake, warehouse_path, expected, keys)


def test_a_full_disk_under_the_lake_fails_clearly_and_a_rerun_after_the_fix_completes(
    tmp_path: Path, day_files: tuple[Path, set[str], set[str]]
) -> None:
    landing, expected, keys = day_files
    lake, warehouse_path = Lake.local(tmp_path / "lake"), tmp_path / "wh.duckdb"
    lake.storage.root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(lake.storage.root)], capture_output=True, text=True
    ) if shutil.which("mount") else None  # fmt: skip
    if mounted is None or mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() if mounted else 'no mount command'}")
    try:
        with pytest.raises(OSError) as failure:
            in_process_ingest(landing, lake, warehouse_path)
        written = sorted(str(p.relative_to(lake.storage.root)) for p in lake.storage.root.rglob("*") if p.is_file())
        print(f"\n{failure.type.__name__}: {failure.value}\nleft in the full lake: {written}")
        assert str(lake.storage.root / "events") in str(failure.value) and "No space left on device" in str(
            failure.value
        )
        assert_no_partial_files(lake)  # complete files of some days may be there; nothing partial, no temp file
        assert not [name for name in written if Path(name).name.startswith(".")]
        assert_nothing_committed(lake, warehouse_path)

        subprocess.run(["mount", "-o", "remount,size=64m", str(lake.storage.root)], check=True)  # space freed
        in_process_ingest(landing, lake, warehouse_path)
        assert_consistent(lake, warehouse_path, expected, keys)
    finally:
        subprocess.run(["umount", str(lake.storage.root)], check=True)
