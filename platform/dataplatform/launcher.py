"""The local instance's run launcher: Dagster's default launcher, plus a run worker health check.

Fix (found by `platform_tests/test_faults.py`, daemon killed with -9): the default launcher cannot tell
whether a run's worker still lives, so run monitoring never fails a run whose worker died with the daemon
(kill -9, OOM, reboot). Such a run stayed STARTED forever, and when it held the `duckdb_writer` pool slot,
every later run waited behind it: streaming ingestion stopped for good. Run workers of this launcher run
on this machine and report their pid when they start; a STARTED run whose worker process is gone is
reported FAILED, so run monitoring fails it (and `free_slots_after_run_end_seconds` frees its slot).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

STARTED_PROCESS = "Started process for run (pid: "  # the engine event a run worker reports first
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
PROC = Path("/proc")


def _process_gone(pid: int, reported_at: float) -> bool:
    """True when no process `pid` that started before `reported_at` is alive (a zombie counts as gone)."""
    if not (PROC / "self" / "stat").exists():  # no procfs (macOS): existence only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        fields = (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
        boot = next(int(line.split()[1]) for line in (PROC / "stat").read_text().splitlines() if line[:6] == "btime ")
    except (OSError, StopIteration):
        return True
    if fields[0] in {"Z", "X"}:
        return True
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started > reported_at + 2.0  # the pid was reused by a later process


class LocalRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` whose run workers (on this machine) can be health-checked by run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        grpc_info = json.loads(run.tags.get(GRPC_INFO_TAG) or "{}")
        if not grpc_info or not (grpc_info.get("socket") or grpc_info.get("host") in LOCAL_HOSTS):
            # Launched elsewhere (a remote code server): its processes are not ours to inspect.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker not on this machine; not checked")
        entries = self._instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        reports = [
            (e.timestamp, e.dagster_event.message)
            for e in entries
            if e.dagster_event and (e.dagster_event.message or "").startswith(STARTED_PROCESS)
        ]
        if not reports:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker has not reported its pid yet")
        reported_at, message = reports[-1]
        pid = int(str(message)[len(STARTED_PROCESS) :].split(")")[0])
        if _process_gone(pid, reported_at):
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone")
        return CheckRunHealthResult(WorkerStatus.RUNNING)
