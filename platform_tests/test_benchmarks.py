"""`./dp bench` keeps working: every benchmark runs at its quick size and the report carries its figures.

Nothing here looks at a time or a ratio (a busy CI machine would fail it); it only checks that each
benchmark still runs against the current code and reports. A benchmark that nothing runs breaks
silently: the blast-radius one did, when the warehouse began creating every declared table itself.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# One headline figure of each benchmark, as the report names it.
FIGURES = {
    "ingest": "ingest rows/s (20,000 events, jsonl",
    "drift": "drift: 10k batch vs cached reference summary",
    "training": "train_model s (30,000 examples",
    "latency": "latency p50 s, file landed -> rows queryable",
    "blast_radius": "blast radius s, one batch (200,000 events",
    "definitions": "code location load",
}


@pytest.mark.slow
def test_every_benchmark_runs_at_its_quick_size_and_reports(tmp_path: Path) -> None:
    report = tmp_path / "REPORT.quick.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform")}
    done = subprocess.run(
        [sys.executable, "benchmarks/report.py", "--quick", "--out", str(report)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report.read_text()
    missing = [name for name, figure in FIGURES.items() if figure not in text]
    assert not missing, f"no figure for {missing} in the report"
    assert "check (ours): rows in 20,000 = " in done.stdout and ": OK;" in done.stdout  # ingest's own count check
