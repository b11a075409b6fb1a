"""Helpers shared by the benchmark scripts: what machine a figure was measured on."""

from __future__ import annotations

import os
import platform
import resource
import sys

import duckdb
import polars as pl


def machine_line() -> str:
    """CPU count, Python, Polars and DuckDB versions in one line."""
    return (
        f"machine: {os.cpu_count()} cpus, {platform.machine()}, python {sys.version.split()[0]},"
        f" polars {pl.__version__}, duckdb {duckdb.__version__}"
    )


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average at start: {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def peak_rss_mib() -> float:
    """This process's RSS high-water mark. On Linux `ru_maxrss` keeps the parent's RSS across
    fork + exec (a child of a 800 MiB parent reports >= 800 MiB), so read VmHWM, which starts
    afresh at exec; ru_maxrss is the fallback elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
