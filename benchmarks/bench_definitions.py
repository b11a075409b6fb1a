"""Benchmark how long a fresh process takes to load the platform's code location.

Run: PYTHONPATH=platform .venv/bin/python benchmarks/bench_definitions.py [--repeats 5]

Every Dagster run process (an ingestion micro-batch too), the code server and `dagster definitions
validate` load the code location in a fresh interpreter, so its load time is part of the latency from a
file landing to its rows being queryable. Ours: `import dataplatform.definitions; defs()` (every asset,
check, sensor and schedule built). Baseline, in the same run: importing what any code location using
these integrations imports, `dagster` and `dagster_aws.s3`. Median of the repeats; each in its own process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import load_line, machine_line

PLATFORM_DIR = Path(__file__).resolve().parents[1] / "platform"
TIMED = "import time; t = time.perf_counter(); {body}; print(time.perf_counter() - t)"
PATHS = {
    "ours": "import dataplatform.definitions as d; d.defs()",
    "baseline": "import dagster, dagster_aws.s3",
}


def _seconds(body: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", TIMED.format(body=body)], cwd=PLATFORM_DIR, capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    print(machine_line())
    print(load_line())
    times = {name: [_seconds(body) for _ in range(args.repeats)] for name, body in PATHS.items()}
    result = {f"{name}_s": statistics.median(values) for name, values in times.items()} | {"repeats": args.repeats}
    print(
        f"code location load {result['ours_s']:.2f} s (median of {args.repeats}); "
        f"import dagster + dagster_aws.s3 {result['baseline_s']:.2f} s"
    )
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    return parser


if __name__ == "__main__":
    run(build_parser().parse_args())
