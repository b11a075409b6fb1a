"""Re-process quarantined records after a contract fix.

`python -m dataplatform.lib.replay --reason user_id:missing --since 2026-03-01` selects
quarantined records from the lake, writes their raw records (the producer's own fields) as
one JSONL file into the landing zone, and a manifest of what was replayed into
`lake/_replays/`. The landing sensor ingests the file like any other: records that now pass
land in `events`, the others are quarantined again with today's reasons, and the batch
reconciles as usual. The file name is a hash of its content, so replaying the same
selection twice is a redelivery (a no-op), and records already in `events` count as
duplicates, never as new rows.

Whole files that could not be read (`file:*` reasons) have no records to replay: fix and
re-deliver the file itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dataplatform.lib.lake import Lake
from dataplatform.lib.settings import Settings
from dataplatform.lib.storage import s3_client_from_env, write_atomically

REPLAY_DIR = "_replays"
REPLAY_PREFIX = "replay"


@dataclass(frozen=True)
class ReplayPlan:
    selected: pl.DataFrame  # quarantine rows chosen
    replayable: pl.DataFrame  # those with a record to replay
    file_name: str
    content: bytes


def select_quarantined(
    lake: Lake,
    *,
    reasons: list[str] | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    batch_ids: list[str] | None = None,
) -> pl.DataFrame:
    """Quarantine rows matching every given filter (a reason filter matches any of the reasons)."""
    keys = lake.quarantine_keys()
    if not keys:
        return pl.DataFrame()
    scan = lake.scan(keys)
    if reasons:
        scan = scan.filter(pl.col("reasons").list.eval(pl.element().is_in(reasons)).list.any())
    if since:
        scan = scan.filter(pl.col("event_date") >= since)
    if until:
        scan = scan.filter(pl.col("event_date") <= until)
    if batch_ids:
        scan = scan.filter(pl.col("batch_id").is_in(batch_ids))
    return scan.sort("batch_id", "source_file", "source_row").collect()


def replay_command(day: dt.date, reason: str | None = None) -> str:
    """The command that replays a day's quarantined records (of one reason), dry run first."""
    chosen = f" --reason {reason}" if reason else ""
    return f"python -m dataplatform.lib.replay{chosen} --since {day} --until {day} --dry-run"


def plan_replay(selected: pl.DataFrame) -> ReplayPlan:
    """The JSONL file to land: one raw record per line, in a stable order."""
    replayable = (
        selected.filter(pl.col("source_row").is_not_null() & pl.col("raw_record").str.starts_with("{"))
        if selected.height
        else selected
    )
    lines = replayable["raw_record"].to_list() if replayable.height else []
    content = ("\n".join(lines) + "\n").encode() if lines else b""
    name = f"{REPLAY_PREFIX}-{hashlib.sha256(content).hexdigest()[:20]}.jsonl"
    return ReplayPlan(selected, replayable, name, content)


def write_replay(plan: ReplayPlan, landing_dir: Path, lake: Lake) -> Path:
    """Land the replay file (atomically) and record the manifest next to the lake."""
    target = landing_dir / plan.file_name
    write_atomically(target, lambda tmp: tmp.write_bytes(plan.content))
    manifest = plan.replayable.select("batch_id", "source_file", "source_row", "reasons").with_columns(
        pl.lit(plan.file_name).alias("replay_file"),
        pl.lit(dt.datetime.now(dt.UTC), dtype=pl.Datetime("us", "UTC")).alias("replayed_at"),
    )
    lake.write_parquet(f"{REPLAY_DIR}/{Path(plan.file_name).stem}.parquet", manifest)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reason", action="append", help="reason code to replay (repeatable); default: all")
    parser.add_argument("--since", type=dt.date.fromisoformat, help="first day counted on (arrival or partition)")
    parser.add_argument("--until", type=dt.date.fromisoformat, help="last day counted on (YYYY-MM-DD)")
    parser.add_argument("--batch", action="append", help="only these batch ids (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be replayed, write nothing")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if settings.landing_uri.startswith("s3://"):
        print("replay writes into a local landing folder; with an S3 landing zone, upload the printed file")
    lake = Lake.open(settings.lake_uri, s3_client_from_env)
    selected = select_quarantined(lake, reasons=args.reason, since=args.since, until=args.until, batch_ids=args.batch)
    plan = plan_replay(selected)
    skipped = selected.height - plan.replayable.height
    print(f"{selected.height} quarantined records match; {plan.replayable.height} replayable, {skipped} whole files")
    if args.dry_run or plan.replayable.height == 0:
        return 0
    landing = (
        Path(settings.data_dir / "replays") if settings.landing_uri.startswith("s3://") else Path(settings.landing_uri)
    )
    path = write_replay(plan, landing, lake)
    print(f"wrote {path} ({plan.replayable.height} records); the landing sensor ingests it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
