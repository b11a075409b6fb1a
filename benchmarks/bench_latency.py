"""Benchmark file-landed to rows-queryable latency under the real `dagster-daemon`.

Run: PYTHONPATH=platform .venv/bin/python benchmarks/bench_latency.py [--files 20] [--interval 4]
     [--events-per-file 500] [--skip-floor]

Starts `dagster-daemon run -w workspace.yaml` with a throw-away DAGSTER_HOME (the repository's
dagster.yaml with its storage paths moved into it) and data folder, waits for a warm-up file
to be ingested, then lands one demo JSONL file every --interval seconds (dot-named temp file,
then os.replace) and polls the DuckDB warehouse read-only every 0.2 s for the file's row in
`ingested_files`. Latency = first poll that sees the file - the time it landed.

Then, unless --skip-floor, it measures Dagster's own floor in this run the way the stack
findings did: a second daemon (same dagster.yaml, fresh home) loads a throw-away code location
(a file in the temp folder, not platform code) whose sensor (minimum_interval_seconds=1) starts
an in-process one-op job per landed file; the op records the time it ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import yaml

from _common import load_line, machine_line, percentile
from dataplatform.lib.demo import DemoConfig, build_world, encode_events, generate_batch, write_atomic

REPO = Path(__file__).resolve().parents[1]
DAEMON = Path(sys.executable).parent / "dagster-daemon"
POLL_SECONDS = 0.2
WARMUP_TIMEOUT = 240.0
STOP_GRACE_SECONDS = 20.0
# An earlier measurement of the floor on a 2-core machine (20 files, a one-op in-process job started by
# a 1-second sensor under dagster-daemon), printed beside this run's for comparison.
RECORDED_FLOOR = {"p50": 7.2, "p95": 9.7, "min": 2.9}

FLOOR_DEFS = '''
"""Throw-away code location: one sensor, one in-process job whose only op records the time."""
import os
import time
from pathlib import Path

import dagster as dg

WATCH = Path(os.environ["FLOOR_WATCH_DIR"])
OUT = Path(os.environ["FLOOR_OUT_DIR"])


@dg.op(config_schema={"name": str})
def record_time(context) -> None:
    (OUT / (context.op_config["name"] + ".t")).write_text(repr(time.time()))


@dg.job(executor_def=dg.in_process_executor)
def floor_job() -> None:
    record_time()


@dg.sensor(job=floor_job, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def floor_sensor(context):
    for name in sorted(os.listdir(WATCH)):
        if not name.startswith("."):
            yield dg.RunRequest(run_key=name, run_config={"ops": {"record_time": {"config": {"name": name}}}})


defs = dg.Definitions(jobs=[floor_job], sensors=[floor_sensor])
'''


# ---------------------------------------------------------------------------------------------
# Daemon
# ---------------------------------------------------------------------------------------------


def make_home(home: Path) -> None:
    """The repository's dagster.yaml with every relative storage path moved under `home`."""

    def moved(value: str) -> str:
        relative = Path(value)
        if relative.is_absolute():
            return value
        if relative.is_relative_to("data/dagster"):
            relative = relative.relative_to("data/dagster")
        return str(home / relative)

    def rewrite(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        return {
            key: moved(value) if key == "base_dir" and isinstance(value, str) else rewrite(value)
            for key, value in node.items()
        }

    config = rewrite(yaml.safe_load((REPO / "dagster.yaml").read_text()))
    config["telemetry"] = {"enabled": False}
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@contextmanager
def daemon(workspace: Path, home: Path, env_extra: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DP_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), PYTHONPATH=str(REPO / "platform"), HOME=str(home), **env_extra)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(DAEMON), "run", "-w", str(workspace)],
            env=env,
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the daemon's process group, SIGKILL after the grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Run workers started by the daemon live in the same group; make sure none outlives it.
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# Observation
# ---------------------------------------------------------------------------------------------


def poll_warehouse(path: Path) -> dict[str, float] | None:
    """source_file -> commit time (epoch s) of every ingested file, or None when the file is locked."""
    if not path.exists():
        return {}
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:  # the writer holds the lock (or is creating the file): try again next poll
        return None
    try:
        rows = con.sql("SELECT source_file, epoch(min(recorded_at)) FROM ingested_files GROUP BY 1").fetchall()
    except duckdb.CatalogException:
        return {}
    finally:
        con.close()
    return {name: float(at) for name, at in rows}


def batch_summary(path: Path) -> str:
    """The committed micro-batches (read after the daemon stopped, so nothing holds the lock)."""
    if not path.exists():
        return "no warehouse file"
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.sql(
            "SELECT len(files), epoch(committed_at) - epoch(started_at), epoch(committed_at)"
            " FROM ingest_batches ORDER BY committed_at"
        ).fetchall()
    if not rows:
        return "no batches committed"
    files = [r[0] for r in rows]
    inside = [r[1] for r in rows]
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(rows)]
    gap = f"{percentile(gaps, 50):.1f} s" if gaps else "n/a"
    return (
        f"{len(rows)} micro-batch runs committed, {sum(files) / len(rows):.2f} files each on average;"
        f" median ingest_batch time inside a run {percentile(inside, 50):.2f} s;"
        f" median time between consecutive commits {gap}"
    )


def poll_floor(folder: Path) -> dict[str, float]:
    seen: dict[str, float] = {}
    for path in folder.glob("*.t"):
        try:
            seen[path.name.removesuffix(".t")] = float(path.read_text())
        except ValueError:  # being written
            continue
    return seen


class Series:
    """Land files on a schedule and record when each is first seen by `poll`."""

    def __init__(self, poll: Callable[[], dict[str, float] | None]) -> None:
        self.poll = poll
        self.landed: dict[str, float] = {}
        self.first_seen: dict[str, float] = {}
        self.recorded: dict[str, float] = {}  # the time the pipeline itself recorded, when it has one
        self.lock_misses = 0

    def observe(self) -> None:
        seen = self.poll()
        now = time.time()
        if seen is None:
            self.lock_misses += 1
            return
        for name, at in seen.items():
            if name in self.landed and name not in self.first_seen:
                self.first_seen[name] = now
                self.recorded[name] = at

    def land(self, folder: Path, name: str, data: bytes) -> None:
        write_atomic(folder / name, data)
        self.landed[name] = time.time()

    def wait_for(self, name: str, timeout: float, alive: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            self.observe()
            if name in self.first_seen:
                return True
            time.sleep(POLL_SECONDS)
        return False

    def run(
        self, folder: Path, files: list[tuple[str, bytes]], interval: float, timeout: float, alive: Callable[[], bool]
    ) -> None:
        start = time.monotonic()
        deadline = start + timeout
        index = 0
        while time.monotonic() < deadline and alive():
            if index < len(files) and time.monotonic() >= start + index * interval:
                self.land(folder, *files[index])
                index += 1
            self.observe()
            if index == len(files) and all(name in self.first_seen for name, _ in files):
                return
            next_land = start + index * interval if index < len(files) else float("inf")
            time.sleep(max(0.0, min(POLL_SECONDS, next_land - time.monotonic())))

    def latencies(self, names: list[str], use_recorded: bool = False) -> list[float]:
        source = self.recorded if use_recorded else self.first_seen
        return [source[n] - self.landed[n] for n in names if n in source]


def stats_row(label: str, values: list[float], expected: int) -> str:
    if not values:
        return f"{label:<46}{0:>4}/{expected:<4} (nothing seen)"
    return (
        f"{label:<46}{len(values):>4}/{expected:<4}{percentile(values, 50):>7.2f}{percentile(values, 95):>7.2f}"
        f"{min(values):>7.2f}{max(values):>7.2f}"
    )


# ---------------------------------------------------------------------------------------------
# The two measurements
# ---------------------------------------------------------------------------------------------


def demo_files(prefix: str, count: int, events: int) -> list[tuple[str, bytes]]:
    config = DemoConfig(users=2_000, products=500, seed=5, corruption_rate=0.01)
    world = build_world(config)
    now = dt.datetime.now(dt.UTC)
    return [
        (
            f"{prefix}-{i:04d}.jsonl",
            encode_events(generate_batch(config, world, end=now, n_events=events, sequence=i).frame, "jsonl"),
        )
        for i in range(count)
    ]


def measure(
    label: str,
    tmp: Path,
    workspace: Path,
    env_extra: dict[str, str],
    landing: Path,
    poll: Callable[[], dict[str, float] | None],
    args: argparse.Namespace,
) -> tuple[Series, list[str], float | None, float | None]:
    """Warm up, then land the timed series; returns (series, timed names, warm-up s, first-file s)."""
    files = demo_files(label, args.files + 1, args.events_per_file)
    warmup, timed = files[0], files[1:]
    series = Series(poll)
    home = tmp / f"home-{label}"
    make_home(home)
    with daemon(workspace, home, env_extra, tmp / f"daemon-{label}.log") as proc:
        started = time.time()

        def alive() -> bool:
            return proc.poll() is None

        series.land(landing, *warmup)
        if not series.wait_for(warmup[0], WARMUP_TIMEOUT, alive):
            print(
                f"[{label}] warm-up file not seen within {WARMUP_TIMEOUT:.0f} s (daemon alive: {alive()});"
                f" log: {(tmp / f'daemon-{label}.log').read_text()[-2000:]}"
            )
            return series, [n for n, _ in timed], None, None
        warm = series.first_seen[warmup[0]] - started
        first = series.first_seen[warmup[0]] - series.landed[warmup[0]]
        series.run(landing, timed, args.interval, args.files * args.interval + args.timeout_extra, alive)
    return series, [n for n, _ in timed], warm, first


def platform_run(tmp: Path, args: argparse.Namespace) -> tuple[Series, list[str], float | None, float | None, Path]:
    data = tmp / "data"
    (data / "landing").mkdir(parents=True)
    warehouse_path = data / "warehouse" / "warehouse.duckdb"
    env = {"DP_DATA_DIR": str(data), "DP_SENSOR_INTERVAL_SECONDS": "1", "DP_SETTLE_SECONDS": "0"}
    result = measure(
        "platform", tmp, REPO / "workspace.yaml", env, data / "landing", lambda: poll_warehouse(warehouse_path), args
    )
    return (*result, warehouse_path)


def floor_run(tmp: Path, args: argparse.Namespace) -> tuple[Series, list[str], float | None, float | None]:
    watch, out = tmp / "floor-landing", tmp / "floor-out"
    watch.mkdir()
    out.mkdir()
    (tmp / "floor_defs.py").write_text(FLOOR_DEFS.lstrip())
    workspace = tmp / "floor-workspace.yaml"
    workspace.write_text(
        textwrap.dedent(f"""\
        load_from:
          - python_file:
              relative_path: floor_defs.py
              working_directory: {tmp}
              location_name: latency_floor
        """)
    )
    env = {"FLOOR_WATCH_DIR": str(watch), "FLOOR_OUT_DIR": str(out)}
    return measure("floor", tmp, workspace, env, watch, lambda: poll_floor(out), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--interval", type=float, default=4.0)
    parser.add_argument("--events-per-file", type=int, default=500)
    parser.add_argument("--timeout-extra", type=float, default=180.0, help="give up files*interval + this")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (daemon logs, data)")
    parser.add_argument("--skip-floor", action="store_true", help="do not measure Dagster's floor in this run")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the platform (and the floor unless skipped), print the table, return the latencies (s)."""
    print(
        f"{args.files} files, one every {args.interval:g} s, {args.events_per_file} events each (JSONL, 1% corrupt);"
        f" sensor interval 1 s, settle 0 s, poll every {POLL_SECONDS} s"
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench_latency-"))
    try:
        series, names, warm, first, warehouse_path = platform_run(tmp, args)
        batches = batch_summary(warehouse_path)
        floor = floor_run(tmp, args) if not args.skip_floor else None
        print(f"\n{'seconds from file landed to ...':<46}{'files':>9}{'p50':>7}{'p95':>7}{'min':>7}{'max':>7}")
        print(stats_row("platform: rows queryable (first poll seeing it)", series.latencies(names), len(names)))
        print(stats_row("platform: commit time recorded in ingested_files", series.latencies(names, True), len(names)))
        if floor is not None:
            print(stats_row("floor, this run: one-op job ran", floor[0].latencies(floor[1], True), len(floor[1])))
        else:
            print("floor, this run: skipped (--skip-floor)")
        recorded = RECORDED_FLOOR
        print(
            f"{'floor, earlier measurement (not this run)':<46}{20:>4}/{20:<4}{recorded['p50']:>7.2f}"
            f"{recorded['p95']:>7.2f}{recorded['min']:>7.2f}{'n/a':>7}"
        )
        if warm is not None:
            print(
                f"\nwarm-up (platform): daemon start to first file queryable {warm:.1f} s"
                f" (that file: {first:.1f} s after landing); not in the figures above"
            )
        if floor is not None and floor[2] is not None:
            print(
                f"warm-up (floor): daemon start to first op {floor[2]:.1f} s"
                f" (that file: {floor[3]:.1f} s after landing)"
            )
        print(f"platform: {batches}")
        print(f"platform: read-only polls that met the writer's lock: {series.lock_misses}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "files": len(names),
        "queryable": series.latencies(names),
        "committed": series.latencies(names, True),
        "floor": floor[0].latencies(floor[1], True) if floor is not None else None,
        "floor_files": len(floor[1]) if floor is not None else 0,
        "recorded_floor": RECORDED_FLOOR,
        "warmup_seconds": warm,
        "batches": batches,
    }


def main() -> None:
    args = build_parser().parse_args()
    print(machine_line())
    print(load_line())
    run(args)


if __name__ == "__main__":
    main()
