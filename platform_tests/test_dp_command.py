"""`./dp` itself: every failure says what went wrong and what to do (never a silent exit status)."""

import os
import subprocess
from pathlib import Path

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
