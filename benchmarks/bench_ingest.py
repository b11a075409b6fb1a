"""Benchmark the micro-batch ingest path against plain Polars and a per-record Python validator.

Run: PYTHONPATH=platform .venv/bin/python benchmarks/bench_ingest.py [--events 2000000] [--files 40]
     [--format jsonl|parquet|both] [--corruption-rate 0.01] [--workdir DIR]

N demo events (generator time reported apart, not part of any figure) are written as F landing
files. Each measured path then runs in its own child process (its peak RSS, VmHWM, is its own) into
a fresh output folder:
  ours       `ingest_batch` over the files in the sensor's default batches (<= 200 files,
             <= 256 MiB), into a fresh lake + DuckDB file;
  baseline   plain Polars, same batches: read the files, derive a date from the timestamp
             with an explicit format, write date-partitioned zstd Parquet; no validation;
  validator  a per-record Python validator of the same rules in the seed's style (json.loads per
             line, dict checks, the first failed rule as the reason), valid records and quarantined
             ones with their reason written with `pl.DataFrame(rows).write_parquet` at the end;
             run on the first files up to --validator-rows rows;
  subset     ours again on exactly the validator's files, so the two compare on the same rows: its
             read + transform phases (parse, contract, reasons, in-batch dedup) are the validation
             the validator does, the rest (lake write, warehouse merge, audit) is work it does not.
JSONL files carry every corruption kind (including cut-off lines); Parquet files carry the
kinds a typed file can hold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from _common import load_line, machine_line, peak_rss_mib
from dataplatform.lib import warehouse
from dataplatform.lib.batching import group_into_batches
from dataplatform.lib.contract import EARLIEST_EVENT_TIME, EVENT_TYPES, MAX_FUTURE_SKEW
from dataplatform.lib.demo import (
    EVENT_COLUMNS,
    TIMESTAMP_FORMAT,
    DemoConfig,
    OutputFormat,
    generate_events,
    supported_kinds,
    write_events_file,
)
from dataplatform.lib.ingest import batch_id_for, ingest_batch
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LandingFile, LocalLanding

# The landing sensor's default bounds (DP_BATCH_MAX_FILES, DP_BATCH_MAX_BYTES in settings.py).
BATCH_MAX_FILES = 200
BATCH_MAX_BYTES = 256 * 1024 * 1024
PATHS = ("ours", "baseline", "validator", "subset")  # subset runs after validator: it reads its files
PLATFORM_DIR = Path(__file__).resolve().parents[1] / "platform"
# The generator's days have different volumes; generate this much more and keep the first N.
GENERATION_HEADROOM = 1.25
GENERATION_DAYS = 7


# ---------------------------------------------------------------------------------------------
# Landing files
# ---------------------------------------------------------------------------------------------


def make_landing(landing: Path, fmt: OutputFormat, events: int, files: int, corruption_rate: float) -> dict[str, Any]:
    """Generate `events` demo events and write them as `files` landing files; returns timings."""
    start = time.perf_counter()
    config = DemoConfig(
        days=GENERATION_DAYS,
        users=50_000,
        products=5_000,
        events_per_day=math.ceil(events * GENERATION_HEADROOM / GENERATION_DAYS),
        seed=11,
        corruption_rate=corruption_rate,
        corrupt_kinds=supported_kinds(fmt),
    )
    frame = generate_events(config).frame
    if frame.height < events:
        raise SystemExit(f"generator gave {frame.height} rows, fewer than --events {events}")
    frame = frame.head(events)
    generated = time.perf_counter() - start
    bounds = np.linspace(0, frame.height, files + 1).round().astype(int)
    for i in range(files):
        write_events_file(frame[int(bounds[i]) : int(bounds[i + 1])], landing / f"events-{i:04d}.{fmt}", fmt)
    injected = frame["corruption"].drop_nulls().value_counts().sort("corruption")
    return {
        "generate_seconds": generated,
        "write_seconds": time.perf_counter() - start - generated,
        "bytes": sum(p.stat().st_size for p in landing.iterdir()),
        "injected": dict(zip(injected["corruption"].cast(pl.String), injected["count"], strict=True)),
    }


def landing_batches(landing: Path, only: set[str] | None = None) -> tuple[LocalLanding, list[list[LandingFile]]]:
    store = LocalLanding(landing)
    files = [f for f in store.list_files(1_000_000) if only is None or f.key in only]
    return store, group_into_batches(files, BATCH_MAX_FILES, BATCH_MAX_BYTES)


# ---------------------------------------------------------------------------------------------
# The measured paths (each runs in a child process)
# ---------------------------------------------------------------------------------------------


def run_ours(landing: Path, out: Path, only: set[str] | None = None) -> dict[str, Any]:
    store, batches = landing_batches(landing, only)
    lake = Lake.local(out / "lake")
    warehouse_path = out / "warehouse" / "warehouse.duckdb"
    phases = dict.fromkeys(("read", "transform", "write", "merge"), 0.0)
    totals = dict.fromkeys(("rows_in", "rows_valid", "rows_quarantined", "rows_duplicate"), 0)
    reasons: dict[str, int] = {}
    start = time.perf_counter()
    for group in batches:
        report = ingest_batch(
            store=store,
            files=group,
            lake=lake,
            warehouse_path=warehouse_path,
            batch_id=batch_id_for("stream", group),
            mode="stream",
        )
        for name in phases:
            phases[name] += report.seconds.get(name, 0.0)
        for name in totals:
            totals[name] += getattr(report, name)
        for reason, count in report.top_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    seconds = time.perf_counter() - start
    with warehouse.connect(warehouse_path, read_only=True) as con:
        tables = warehouse.table_counts(con)
    return {
        "rows": totals["rows_in"],
        "seconds": seconds,
        "batches": len(batches),
        "phases": phases,
        "totals": totals,
        "tables": tables,
        "reasons": reasons,
    }


def _plain_jsonl(paths: list[Path]) -> pl.DataFrame:
    """What plain Polars needs for these files: `pl.read_ndjson` aborts on a cut-off line, so
    lines that are not complete objects are dropped first (a cheap ends-with-'}' filter)."""
    text = "".join(path.read_text() for path in paths)
    lines = pl.DataFrame({"line": text.split("\n")}).filter(pl.col("line").str.ends_with("}"))
    body = "\n".join(lines["line"]).encode()
    # Text schema: inferred types fail on the files' mixed values (e.g. product_id "SKU-123").
    frame = pl.read_ndjson(io.BytesIO(body), schema=dict.fromkeys(EVENT_COLUMNS, pl.String))
    return frame.with_columns(
        pl.col("timestamp").str.to_datetime(TIMESTAMP_FORMAT, strict=False, time_zone="UTC"),
        pl.col("product_id").cast(pl.Int64, strict=False),
        pl.col("price").cast(pl.Float64, strict=False),
    )


def run_baseline(landing: Path, out: Path, fmt: str) -> dict[str, Any]:
    _, batches = landing_batches(landing)
    rows = 0
    start = time.perf_counter()
    for number, group in enumerate(batches):
        paths = [landing / f.key for f in group]
        frame = pl.read_parquet(paths) if fmt == "parquet" else _plain_jsonl(paths)
        frame = frame.with_columns(pl.col("timestamp").dt.date().alias("event_date"))
        # One folder per batch: a second partitioned write into the same folder replaces files.
        frame.write_parquet(out / f"batch-{number:04d}", partition_by="event_date", compression="zstd", mkdir=True)
        rows += frame.height
    return {"rows": rows, "seconds": time.perf_counter() - start, "batches": len(batches)}


EVENT_TYPE_SET = frozenset(EVENT_TYPES)


def _parse_time(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        number = float(value)
        if not math.isfinite(number):
            return None
        seconds = number if abs(number) < 1e11 else number / 1e3 if abs(number) < 1e14 else number / 1e6
        try:
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def check_record(record: Any, seen: set[str], latest: dt.datetime) -> tuple[dict[str, Any] | None, str | None]:
    """The contract's rules, one record at a time: (valid record, None), (None, first failed rule), or
    (None, None) for a repeated event id."""
    if not isinstance(record, dict):
        return None, "record:not_an_object"
    for name in ("user_id", "timestamp", "event_type"):
        if record.get(name) is None:
            return None, f"{name}:missing"
    user_id = record["user_id"]
    if not isinstance(user_id, str) or not user_id.strip():
        return None, "user_id:bad_length"
    timestamp = _parse_time(record["timestamp"])
    if timestamp is None:
        return None, "timestamp:unparseable"
    if not EARLIEST_EVENT_TIME <= timestamp <= latest:
        return None, "timestamp:out_of_range"
    event_type = record["event_type"]
    if not isinstance(event_type, str) or event_type.strip().lower() not in EVENT_TYPE_SET:
        return None, "event_type:not_allowed"
    price = record.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, int | float | str):
            return None, "price:unparseable"
        try:
            price = float(price)
        except ValueError:
            return None, "price:unparseable"
        if not math.isfinite(price) or price < 0:
            return None, "price:out_of_range"
    product_id = record.get("product_id")
    if product_id is not None:
        if isinstance(product_id, str) and product_id.strip().isdigit():
            product_id = int(product_id)
        if isinstance(product_id, bool) or not isinstance(product_id, int) or product_id < 0:
            return None, "product_id:unparseable"
    event_id = record.get("event_id")
    if event_id is not None:
        if event_id in seen:
            return None, None
        seen.add(event_id)
    valid = {
        **record,
        "user_id": user_id.strip(),
        "timestamp": timestamp,
        "event_type": event_type.strip().lower(),
        "price": price,
        "product_id": product_id,
    }
    return valid, None


def run_validator(landing: Path, out: Path, fmt: str, max_rows: int) -> dict[str, Any]:
    paths = sorted(p for p in landing.iterdir() if not p.name.startswith("."))
    latest = dt.datetime.now(dt.UTC) + MAX_FUTURE_SKEW
    seen: set[str] = set()
    valid: list[dict[str, Any]] = []
    quarantined: list[dict[str, str]] = []
    read: list[str] = []
    rows = 0
    start = time.perf_counter()
    for path in paths:
        if rows >= max_rows:
            break
        read.append(path.name)
        if fmt == "parquet":
            records: Any = pl.read_parquet(path).iter_rows(named=True)
        else:
            records = (line for line in path.read_text().split("\n") if line.strip())
        for item in records:
            rows += 1
            if fmt == "parquet":
                record = item
            else:
                try:
                    record = json.loads(item)
                except ValueError:
                    quarantined.append(
                        {"source_file": path.name, "raw_record": item, "reason": "record:malformed_json"}
                    )
                    continue
            checked, reason = check_record(record, seen, latest)
            if checked is not None:
                valid.append(checked)
            elif reason is not None:
                raw = item if isinstance(item, str) else json.dumps(item, default=str)
                quarantined.append({"source_file": path.name, "raw_record": raw, "reason": reason})
    pl.DataFrame(valid, infer_schema_length=None).write_parquet(out / "events.parquet", compression="zstd")
    pl.DataFrame(quarantined, schema=dict.fromkeys(("source_file", "raw_record", "reason"), pl.String)).write_parquet(
        out / "quarantine.parquet", compression="zstd"
    )
    seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "seconds": seconds,
        "files": len(read),
        "file_names": read,
        "valid": len(valid),
        "quarantined": len(quarantined),
    }


def run_child(args: argparse.Namespace) -> None:
    landing, out = Path(args.landing), Path(args.out)
    if args.only == "ours":
        result = run_ours(landing, out)
    elif args.only == "subset":
        validator = json.loads((Path(args.result).parent / "result-validator.json").read_text())
        result = run_ours(landing, out, set(validator["file_names"]))
    elif args.only == "baseline":
        result = run_baseline(landing, out, args.format)
    else:
        result = run_validator(landing, out, args.format, args.validator_rows)
    result["peak_mib"] = peak_rss_mib()
    Path(args.result).write_text(json.dumps(result))


def measure(path: str, fmt: str, landing: Path, root: Path, validator_rows: int) -> dict[str, Any]:
    """Run one path in a fresh child process and output folder."""
    out = root / f"out-{path}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result_file = root / f"result-{path}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLATFORM_DIR), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, __file__, "--only", path, "--format", fmt, "--landing", str(landing)]
    command += ["--out", str(out), "--result", str(result_file), "--validator-rows", str(validator_rows)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{path} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(result_file.read_text())


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def report(fmt: str, events: int, landing_info: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    rate = {name: r["rows"] / r["seconds"] for name, r in results.items()}
    ours, validator = results["ours"], results["validator"]
    print(
        f"\n== {fmt}: {events:,} events in {len(list(Path(landing_info['landing']).iterdir()))} files,"
        f" {landing_info['bytes'] / 2**20:,.0f} MiB; {ours['batches']} batch(es) of <= {BATCH_MAX_FILES} files"
        f" / {BATCH_MAX_BYTES // 2**20} MiB"
    )
    print(
        f"generation (not in any figure): generate {landing_info['generate_seconds']:.1f} s,"
        f" encode + write files {landing_info['write_seconds']:.1f} s"
    )
    print(f"{'path':<12}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'ratio vs baseline':>19}{'peak MiB':>10}")
    for name in PATHS:
        r = results[name]
        print(
            f"{name:<12}{r['rows']:>12,}{r['seconds']:>10.2f}{rate[name]:>12,.0f}"
            f"{rate[name] / rate['baseline']:>19.3f}{r['peak_mib']:>10,.0f}"
        )
    phases = ours["phases"]
    print(
        "ours, per phase (s): "
        + ", ".join(f"{name} {seconds:.2f}" for name, seconds in phases.items())
        + f"; other (listing, ledger, connect) {ours['seconds'] - sum(phases.values()):.2f}"
    )
    subset = results["subset"]
    validation = subset["phases"]["read"] + subset["phases"]["transform"]
    print(
        f"validator and subset ran on the first {validator['files']} files ({validator['rows']:,} rows) only;"
        f" their peak MiB is for that subset. On those rows: validation (read + transform) {validation:.2f} s,"
        f" whole ingest {subset['seconds']:.2f} s, per-record validator {validator['seconds']:.2f} s:"
        f" ours validates {validator['seconds'] / validation:.2f}x and ingests"
        f" {rate['subset'] / rate['validator']:.2f}x as fast"
    )
    t = ours["totals"]
    ok = t["rows_in"] == t["rows_valid"] + t["rows_quarantined"] + t["rows_duplicate"]
    print(
        f"check (ours): rows in {t['rows_in']:,} = valid {t['rows_valid']:,} + quarantined {t['rows_quarantined']:,}"
        f" + duplicates {t['rows_duplicate']:,}: {'OK' if ok else 'MISMATCH'}; rows in == events generated:"
        f" {t['rows_in'] == events}; DuckDB events {ours['tables']['events']:,},"
        f" quarantine {ours['tables']['quarantine']:,}"
    )
    injected = landing_info["injected"]
    not_dup = sum(n for kind, n in injected.items() if kind != "duplicate")
    print(
        f"injected by the generator: {not_dup:,} bad records + {injected.get('duplicate', 0):,} duplicates;"
        f" ours quarantine reasons: {json.dumps(ours['reasons'])}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--format", choices=("jsonl", "parquet", "both"), default="both")
    parser.add_argument("--corruption-rate", type=float, default=0.01)
    parser.add_argument("--workdir", help="kept when given; default: a temp dir removed afterwards")
    parser.add_argument("--validator-rows", type=int, default=200_000, help="rows the slow validator runs on")
    parser.add_argument("--only", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--landing", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Measure every format; print each report and return {format: {"landing": ..., "results": {path: ...}}}."""
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_ingest-"))
    measured: dict[str, dict[str, Any]] = {}
    try:
        for fmt in ("jsonl", "parquet") if args.format == "both" else (args.format,):
            root = workdir / fmt
            landing = root / "landing"
            shutil.rmtree(root, ignore_errors=True)
            landing.mkdir(parents=True)
            info = make_landing(landing, fmt, args.events, args.files, args.corruption_rate)
            info["landing"] = str(landing)
            results = {path: measure(path, fmt, landing, root, args.validator_rows) for path in PATHS}
            report(fmt, args.events, info, results)
            measured[fmt] = {"landing": info, "results": results}
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return measured


def main() -> None:
    args = build_parser().parse_args()
    if args.only:
        run_child(args)
        return

    print(machine_line())
    print(load_line())
    started = time.perf_counter()
    run(args)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
