"""The real thing: `dagster-daemon run` on the repository's workspace ingests files dropped in a folder.

The daemon ticks `landing_files_sensor` by itself (default status RUNNING, no `dagster sensor start`),
the queued run coordinator launches the runs, and the test watches the DuckDB warehouse from outside,
read-only, the way an analyst would. Latencies are printed for information only, never asserted.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import yaml

from dataplatform.lib import warehouse
from factories import event, jsonl_bytes, write_landing

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DAEMON = Path(sys.executable).parent / "dagster-daemon"  # the venv running the tests (/work/main/.venv)
SENSOR = "landing_files_sensor"
POLL_TIMEOUT_SECONDS = 120.0
POLL_INTERVAL_SECONDS = 0.5
STOP_TIMEOUT_SECONDS = 30.0

# Five files, each with 3 valid events and 1 record the contract rejects: 15 events, 5 quarantined.
FILES = {
    f"batch-{k}.jsonl": jsonl_bytes([event(10 * k + i) for i in (1, 2, 3)])
    + (jsonl_bytes([event(10 * k + 4, event_type="teleport")]) if k % 2 else b"{not json\n")
    for k in range(1, 6)
}
REDELIVERY = "batch-1-resent.jsonl"  # the same bytes as batch-1.jsonl under another name
AUDIT_SQL = "SELECT rows_in, rows_valid, rows_quarantined, rows_duplicate FROM ingest_batches"


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    log_path: Path
    instance: dg.DagsterInstance  # the daemon's instance, opened by the test to read runs and ticks

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    @contextmanager
    def explained_on_failure(self) -> Iterator[None]:
        """On any failure inside, print the runs and the daemon's last output (pytest shows them)."""
        try:
            yield
        except BaseException:
            runs = [(r.run_id[:8], r.status.value, r.tags.get("dagster/run_key")) for r in self.instance.get_runs()]
            print(f"\n--- runs: {runs}")
            print(f"--- last lines of dagster-daemon output ({self.log_path}) ---\n{self.log_tail()}")
            raise


def write_instance_config(dagster_home: Path) -> None:
    """The repository's dagster.yaml, with every storage path absolute under this test's folder."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["storage"]["sqlite"]["base_dir"] = str(dagster_home / "storage")
    config["local_artifact_storage"]["config"]["base_dir"] = str(dagster_home)
    config["compute_logs"]["config"]["base_dir"] = str(dagster_home / "compute_logs")
    assert config["concurrency"]["pools"]["default_limit"] == 1  # duckdb_writer pool settings kept as they are
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def daemon_env(dagster_home: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DP_")}  # no developer overrides
    pythonpath = os.pathsep.join(p for p in (str(REPO / "platform"), env.get("PYTHONPATH")) if p)
    env.update(
        DAGSTER_HOME=str(dagster_home),
        DP_DATA_DIR=str(data_dir),
        DP_SENSOR_INTERVAL_SECONDS="1",
        DP_SETTLE_SECONDS="0",
        PYTHONPATH=pythonpath,
    )
    return env


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the daemon's process group (daemon, code server, run workers), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # start_new_session: the group id is the daemon's pid
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def daemon(tmp_path: Path, data_dir: Path) -> Iterator[Daemon]:
    dagster_home = tmp_path / "dagster_home"
    write_instance_config(dagster_home)
    (data_dir / "landing").mkdir(parents=True)
    log_path = tmp_path / "daemon.log"
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        # Create the SQLite storages here, so the daemon and the test never race to create them.
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(DAEMON), "run", "-w", str(REPO / "workspace.yaml")],
                cwd=tmp_path,
                env=daemon_env(dagster_home, data_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield Daemon(process, log_path, instance)
        finally:
            stop(process)


def wait_for(daemon: Daemon, what: str, ready: Callable[[], bool]) -> None:
    """Poll `ready` until it holds; fail (never hang) if the daemon dies or nothing happens for too long."""
    deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
    while not ready():
        if daemon.process.poll() is not None:
            pytest.fail(f"dagster-daemon exited with {daemon.process.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {POLL_TIMEOUT_SECONDS:.0f} s waiting for {what}")
        time.sleep(POLL_INTERVAL_SECONDS)


def sensor_ticked(instance: dg.DagsterInstance) -> bool:
    states = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR]
    return any(instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=1) for s in states)


def query(warehouse_path: Path, sql: str) -> list[tuple[Any, ...]] | None:
    """Rows of a read-only query, or None while the warehouse does not exist yet or a run holds its lock."""
    if not warehouse_path.exists():
        return None  # connect(read_only=True) would create it: leave that to the first run
    try:
        with warehouse.connect(warehouse_path, read_only=True, wait_seconds=2.0) as con:
            return con.sql(sql).fetchall()
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():
            return None
        raise


def file_statuses(warehouse_path: Path) -> dict[str, str]:
    return dict(query(warehouse_path, "SELECT source_file, status FROM ingested_files") or [])


def count(warehouse_path: Path, table: str) -> int:
    rows = query(warehouse_path, f"SELECT count(*) FROM {table}")
    assert rows is not None, f"warehouse not readable for {table}"
    return rows[0][0]


def test_daemon_ingests_dropped_files_and_recognizes_a_redelivery(daemon: Daemon, data_dir: Path) -> None:
    landing = data_dir / "landing"
    warehouse_path = data_dir / "warehouse" / "warehouse.duckdb"
    landed: dict[str, float] = {}
    queryable: dict[str, float] = {}

    def recorded(names: list[str]) -> Callable[[], bool]:
        def check() -> bool:
            statuses = file_statuses(warehouse_path)
            for name in (statuses.keys() & set(names)) - queryable.keys():
                queryable[name] = time.time()
            return set(names) <= statuses.keys()

        return check

    with daemon.explained_on_failure():
        wait_for(daemon, f"the daemon's first tick of {SENSOR}", lambda: sensor_ticked(daemon.instance))

        for name, data in FILES.items():
            landed[name] = time.time()
            write_landing(landing, name, data)  # `.name.tmp`, then os.replace
        wait_for(daemon, f"{len(FILES)} files in ingested_files", recorded(list(FILES)))

        assert file_statuses(warehouse_path) == dict.fromkeys(FILES, "ingested")
        assert count(warehouse_path, "events") == 15
        assert count(warehouse_path, "quarantine") == 5
        batches = query(warehouse_path, AUDIT_SQL)
        assert batches
        assert all(rows_in == valid + quarantined + dup for rows_in, valid, quarantined, dup in batches)
        assert [sum(column) for column in zip(*batches, strict=True)] == [20, 15, 5, 0]

        landed[REDELIVERY] = time.time()
        write_landing(landing, REDELIVERY, FILES["batch-1.jsonl"])
        wait_for(daemon, f"{REDELIVERY} in ingested_files", recorded([REDELIVERY]))

        assert file_statuses(warehouse_path)[REDELIVERY] == "redelivered"
        assert count(warehouse_path, "events") == 15
        assert count(warehouse_path, "quarantine") == 5
        # Rows become visible at commit, a moment before the run reports its end: wait for that too.
        wait_for(daemon, "every run to finish", lambda: all(run.is_finished for run in daemon.instance.get_runs()))
        assert {run.status for run in daemon.instance.get_runs()} == {dg.DagsterRunStatus.SUCCESS}

    print(f"\nfile landed -> recorded in the warehouse (polled every {POLL_INTERVAL_SECONDS} s; information only):")
    for name, at in landed.items():
        print(f"  {name}: {queryable[name] - at:.1f} s")
