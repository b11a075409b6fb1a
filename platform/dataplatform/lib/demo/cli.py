"""Command line for the demo event generator (console script `dataplatform-demo`).

    dataplatform-demo history --out data/history --days 14 --start 2026-03-01
    dataplatform-demo trickle --out data/landing --interval 5

Run `dataplatform-demo <command> --help` for every option.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from dataplatform.lib.demo.generator import (
    ALL_KINDS,
    DRIFT_KINDS,
    FORMATS,
    CorruptionKind,
    CorruptionReport,
    DemoConfig,
    OutputFormat,
    generate_events,
    supported_kinds,
    trickle,
    write_atomic,
    write_history,
)

DEFAULT_REPORT_NAME = "_demo_report.json"  # leading "_": hive-style readers skip it


# ---------------------------------------------------------------------------------------------
# Argument types (argparse turns ArgumentTypeError into a usage error)
# ---------------------------------------------------------------------------------------------


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _kinds(text: str) -> tuple[CorruptionKind, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {str(k) for k in ALL_KINDS}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown corruption kind(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}"
        )
    return tuple(CorruptionKind(name) for name in names)


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except where there is none or the help text already explains it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action) or text


def _realism_options() -> argparse.ArgumentParser:
    """Options shared by both commands: world size, seed, corruption, drift, output."""
    common = argparse.ArgumentParser(add_help=False)
    world = common.add_argument_group("world")
    world.add_argument("--users", type=_positive_int, metavar="N", default=2_000, help="number of simulated users")
    world.add_argument(
        "--products", type=_positive_int, metavar="N", default=500, help="number of products in the catalogue"
    )
    world.add_argument(
        "--events-per-day",
        metavar="N",
        type=_positive_int,
        default=20_000,
        help="average events per day over a week (weekends get more, early weekdays fewer); the trickle "
        "sends a day's events as their time comes, so give both commands the same world options",
    )
    world.add_argument(
        "--seed",
        type=_non_negative_int,
        metavar="SEED",
        default=42,
        help="random seed; same seed and options → identical output",
    )

    bad = common.add_argument_group("corruption (records that downstream validation must catch)")
    bad.add_argument(
        "--corruption-rate",
        metavar="RATE",
        type=_fraction,
        default=0.0,
        help="fraction of records to corrupt on corrupt days, 0..1 (duplicates add extra records)",
    )
    bad.add_argument(
        "--corrupt-kinds",
        metavar="KINDS",
        type=_kinds,
        default=None,
        help="comma-separated kinds, spread evenly: "
        + ", ".join(str(k) for k in ALL_KINDS)
        + " (default: every kind the --format can represent; malformed_json needs JSONL, "
        "bad_timestamp and bad_product_id cannot be typed into Parquet)",
    )
    bad.add_argument(
        "--corrupt-from", type=_date, metavar="DATE", help="first day to corrupt, YYYY-MM-DD (default: first day)"
    )
    bad.add_argument(
        "--corrupt-to", type=_date, metavar="DATE", help="last day to corrupt, inclusive (default: last day)"
    )

    drift = common.add_argument_group("drift (a gradual change in behaviour that drift detection should flag)")
    drift.add_argument(
        "--drift-start",
        metavar="DATE",
        type=_date,
        help="first drifted day, YYYY-MM-DD: prices rise, the category mix, funnel rates, session "
        "lengths and the purchase relationship shift",
    )
    drift.add_argument(
        "--drift-strength",
        metavar="X",
        type=_fraction,
        default=0.0,
        help="drift size at full ramp, 0 (none) .. 1 (strong)",
    )
    drift.add_argument(
        "--drift-ramp-days",
        metavar="N",
        type=_non_negative_int,
        default=7,
        help="days from drift start to full strength (0 = a sudden step)",
    )
    drift.add_argument(
        "--drift-kind",
        choices=DRIFT_KINDS,
        default="mixed",
        help="mixed: prices, category mix, sessions and the purchase relation; concept: the purchase relation only",
    )

    out = common.add_argument_group("output")
    out.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    out.add_argument(
        "--report",
        metavar="PATH",
        type=Path,
        help="write the JSON report of rows and injected corruptions here (history default: "
        f"OUT/{DEFAULT_REPORT_NAME}; trickle: only when given)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataplatform-demo",
        description="Generate realistic, seeded user-interaction events (view, cart, remove_from_cart, "
        "purchase) for the recommendation engine: history dumps for the batch path, or a live trickle "
        "of micro-files into a landing folder.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{history,trickle}")
    common = _realism_options()
    formatter = _HelpFormatter

    history = commands.add_parser(
        "history",
        parents=[common],
        formatter_class=formatter,
        help="write N days of events, one folder per day",
        description="Write OUT/event_date=YYYY-MM-DD/events-NNNN.<format> for each day, plus a report "
        f"(OUT/{DEFAULT_REPORT_NAME}) of rows and injected corruptions per day.",
    )
    history.add_argument("--out", type=Path, metavar="DIR", required=True, help="output folder (e.g. data/history)")
    history.add_argument("--days", type=_positive_int, metavar="N", default=7, help="number of days")
    history.add_argument(
        "--start", type=_date, metavar="DATE", default=dt.date(2026, 3, 1), help="first day, YYYY-MM-DD (UTC)"
    )
    history.add_argument("--format", choices=FORMATS, default="jsonl.gz", help="file format")
    history.add_argument(
        "--files-per-day", type=_positive_int, metavar="N", default=1, help="files each day is split into"
    )
    history.set_defaults(handler=_run_history)

    live = commands.add_parser(
        "trickle",
        parents=[common],
        formatter_class=formatter,
        help="drop live micro-files into a landing folder",
        description="Every --interval seconds write one file into --out holding the events of the history's "
        "world (the same --seed, --users, --products, --events-per-day, corruption and drift options give "
        "the same users, products, prices, volume per day, hour-of-day profile and corruption as `history`) "
        "whose timestamps came due since the last file; no file when none did. The first file catches up "
        "from the newest trickle file in --out (at most a day back), or from today's midnight (UTC). Files "
        "are written under a dot-name, then renamed, so a watcher never sees partial files. Runs until "
        "--files files are written, or until Ctrl-C / SIGTERM.",
    )
    live.add_argument("--out", type=Path, metavar="DIR", required=True, help="landing folder (e.g. data/landing)")
    live.add_argument(
        "--events-per-file",
        type=_positive_int,
        metavar="N",
        default=None,
        help="instead, N fresh events in every file whatever the hour (a load test: not the history's volume, "
        "so the drift monitoring flags it)",
    )
    live.add_argument(
        "--interval", type=_non_negative_float, metavar="SECONDS", default=5.0, help="seconds between files"
    )
    live.add_argument(
        "--files",
        metavar="N",
        type=_positive_int,
        default=None,
        help="stop after this many files (default: run forever)",
    )
    live.add_argument("--format", choices=FORMATS, default="jsonl", help="file format")
    live.set_defaults(handler=_run_trickle)
    return parser


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> DemoConfig:
    fmt: OutputFormat = args.format
    kinds = args.corrupt_kinds or supported_kinds(fmt)
    unsupported = [str(k) for k in kinds if k not in supported_kinds(fmt)]
    if unsupported:
        parser.error(f"--format {fmt} cannot represent corruption kind(s): {', '.join(unsupported)}")
    try:
        return DemoConfig(
            start=getattr(args, "start", DemoConfig.start),
            days=getattr(args, "days", DemoConfig.days),
            users=args.users,
            products=args.products,
            events_per_day=getattr(args, "events_per_day", DemoConfig.events_per_day),
            seed=args.seed,
            corruption_rate=args.corruption_rate,
            corrupt_kinds=kinds,
            corrupt_from=args.corrupt_from,
            corrupt_to=args.corrupt_to,
            drift_start=args.drift_start,
            drift_strength=args.drift_strength,
            drift_ramp_days=args.drift_ramp_days,
            drift_kind=args.drift_kind,
        )
    except ValueError as exc:
        parser.error(str(exc))


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _write_report(path: Path, command: str, config: DemoConfig, report: CorruptionReport, files: int) -> None:
    body = {"command": command, "config": config.to_dict(), "files": files, **report.to_dict()}
    write_atomic(path, (json.dumps(body, indent=2) + "\n").encode("utf-8"))


def _summary(command: str, out: Path, files: int, report: CorruptionReport) -> str:
    injected = ", ".join(f"{k}={n}" for k, n in report.counts.items() if n) or "none"
    return f"{command}: wrote {report.total_rows:,} events in {files} file(s) to {out}; corruption: {injected}"


def _run_history(args: argparse.Namespace, config: DemoConfig) -> int:
    progress = _progress(args)
    events = generate_events(config, progress=progress)
    paths = write_history(events.frame, args.out, fmt=args.format, files_per_day=args.files_per_day, progress=progress)
    _write_report(args.report or args.out / DEFAULT_REPORT_NAME, "history", config, events.report, len(paths))
    if not args.quiet:
        print(_summary("history", args.out, len(paths), events.report))
    return 0


def _run_trickle(args: argparse.Namespace, config: DemoConfig) -> int:
    stop = threading.Event()
    with _stop_on_signals(stop):
        result = trickle(
            config,
            args.out,
            events_per_file=args.events_per_file,
            interval=args.interval,
            files=args.files,
            fmt=args.format,
            stop=stop,
            progress=_progress(args),
        )
    if args.report:
        _write_report(args.report, "trickle", config, result.report, len(result.files))
    if not args.quiet:
        print(_summary("trickle", args.out, len(result.files), result.report))
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn Ctrl-C and SIGTERM into a graceful stop: the file in progress is finished and
    renamed, then the loop ends. Handlers can only be set from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = _config(args, parser)
    return int(args.handler(args, config))


if __name__ == "__main__":
    sys.exit(main())
