"""`./dp` itself: every failure says what went wrong and what to do (never a silent exit status), and `./dp up`
stops everything it started on Ctrl-C or SIGTERM."""

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from servers import (
    BIN,
    DagsterDev,
    free_port,
    platform_env,
    processes_with_env,
    start_session,
    wait_until,
    write_instance_config,
)

ROOT = Path(__file__).resolve().parents[1]


def run_dp(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "dp"), *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env}, check=False
    )


def test_a_history_folder_without_daily_folders_is_named_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "dump.jsonl").write_text("{}\n")
    for command in ("materialize", "up"):
        result = run_dp(command, DP_DATA_DIR=str(tmp_path))
        assert result.returncode == 2
        assert "holds no event_date=YYYY-MM-DD folders" in result.stderr
        assert f"{tmp_path}/history/event_date=YYYY-MM-DD/" in result.stderr  # where the files must go


def test_an_unknown_profile_and_an_unknown_command_are_explained() -> None:
    profile = run_dp("materialize", DP_PROFILE="staging")
    assert profile.returncode == 2 and "unknown DP_PROFILE='staging'" in profile.stderr
    unknown = run_dp("frobnicate")
    assert unknown.returncode == 2 and "Usage: ./dp <command>" in unknown.stdout


def test_any_other_failing_command_names_itself(tmp_path: Path) -> None:
    """The ERR trap: a command that fails under `set -e` is named, with its line, before ./dp stops."""
    script = tmp_path / "dp"
    body = (
        (ROOT / "dp")
        .read_text()
        .replace('case "${1:-help}" in', 'false_step() { false; }\nfalse_step\ncase "${1:-help}" in', 1)
    )
    script.write_text(body)
    script.chmod(0o755)
    result = subprocess.run([str(script), "help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "failed (exit 1) at dp line" in result.stderr and ": false" in result.stderr


UP_TIMEOUT_SECONDS = 300.0  # demo history, dagster dev and its code server: generous for a busy 2-core machine
# ./dp up sends TERM, then KILL 8 s of wall-clock time later (dp's up_stop): everything is gone within 10 s
# on a quiet machine. Tests assert behaviour, not time: on a loaded CI machine a killed process can take
# seconds to be reaped, so the test only requires that everything stops without help, and prints how long.
STOP_BOUND_SECONDS = 60.0
MARK = "DP_UP_TEST_MARK"  # every process ./dp up starts inherits its environment, so carries this


def dp_root(tmp_path: Path) -> Path:
    """A repository root for `./dp up` whose instance lives under it, not in the real data/ (dp sets DAGSTER_HOME
    to its root): the real code and virtualenv by symlink, its own dagster.yaml, and a dp that installs nothing
    (the virtualenv is the one running these tests; `-e .` from this root would point it here)."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("platform", "workspace.yaml", "requirements.txt", "pyproject.toml"):
        (root / name).symlink_to(ROOT / name)
    (root / ".venv").symlink_to(BIN.parent)
    write_instance_config(root)
    script = (ROOT / "dp").read_text()
    assert script.count("\ninstall() {\n") == 1, "dp's install() moved: update dp_root"
    (root / "dp").write_text(script.replace("\ninstall() {\n", "\ninstall() { return 0; }\n_install() {\n"))
    (root / "dp").chmod(0o755)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "to_group", "after_bootstrap"),
    [(signal.SIGINT, True, False), (signal.SIGTERM, True, False), (signal.SIGTERM, False, True)],
    ids=["ctrl-c", "sigterm-to-group", "sigterm-to-dp-after-bootstrap"],
)
def test_up_stops_everything_it_started_without_help(
    tmp_path: Path, signum: signal.Signals, to_group: bool, after_bootstrap: bool
) -> None:
    """SIGINT to the foreground process group (a terminal's Ctrl-C), SIGTERM to it, or SIGTERM to dp alone: the
    webserver, daemon, code server, run workers, demo generator and bootstrap all stop, none left for the test to
    kill (the time it took is printed). The bootstrap (3 demo days) usually still runs when the webserver answers;
    the last case waits for its end and the line that says so."""
    port, mark = free_port(), uuid.uuid4().hex
    demo = {"DP_DEMO_DAYS": "3", "DP_DEMO_INTERVAL": "2"}
    env = platform_env(tmp_path / "repo", tmp_path / "data", tmp_path / "home", DP_PORT=str(port), **demo)
    env[MARK] = mark
    root, log_path = dp_root(tmp_path), tmp_path / "up.log"
    process = start_session([str(root / "dp"), "up"], env, root, log_path)
    up = DagsterDev(process, port, log_path)
    try:
        try:
            wait_until("the webserver of ./dp up to answer", up.answers, UP_TIMEOUT_SECONDS, process)
            if after_bootstrap:
                line = wait_until("the bootstrap's end", lambda: _bootstrap_line(log_path), UP_TIMEOUT_SECONDS, process)
                assert f"http://127.0.0.1:{port}/assets" in line or f"{tmp_path}/data/logs/bootstrap.log" in line
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- ./dp up output ---\n{up.log_tail()}") from None
        assert processes_with_env(MARK, mark)
        signalled = time.monotonic()
        if to_group:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
        try:
            wait_until(
                f"every process of ./dp up to stop after {signum.name}",
                lambda: not processes_with_env(MARK, mark),
                STOP_BOUND_SECONDS,
                interval=0.1,
            )
            print(f"\n./dp up: every process gone {time.monotonic() - signalled:.1f} s after {signum.name}")
        except AssertionError as exc:
            left = "\n".join(f"{pid} {cmd[:160]}" for pid, cmd in processes_with_env(MARK, mark).items())
            raise AssertionError(f"{exc}; still running:\n{left}\n--- ./dp up output ---\n{up.log_tail()}") from None
        assert process.wait(timeout=5) == 128 + signum
    finally:
        for pid in processes_with_env(MARK, mark):  # a failed test leaves nothing behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)


def _bootstrap_line(log_path: Path) -> str | None:
    lines = log_path.read_text(errors="replace").splitlines()
    return next((line for line in lines if "bootstrap finished" in line or "bootstrap failed" in line), None)
