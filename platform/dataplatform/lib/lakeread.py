"""Lock-free reads of the lake for quality and feature work.

The lake holds the same rows as the warehouse's `events` and `quarantine` tables, so
readers that only need data never open the single-writer DuckDB file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from dataplatform.lib.lake import Lake, batch_of_file
from dataplatform.lib.transform import QUARANTINE_SCHEMA


def events_for_days(lake: Lake, days: Sequence[dt.date | str]) -> pl.DataFrame:
    """Valid events of the given days (empty frame with no columns if none exist)."""
    keys = [key for day in days for key in lake.event_keys(day)]
    if not keys:
        return pl.DataFrame()
    return lake.scan(keys).with_columns(pl.col("timestamp").dt.date().alias("event_date")).collect()


def batch_ids_for_day(lake: Lake, day: dt.date | str) -> list[str]:
    """Batches that wrote events of `day` (lake file names are batch ids)."""
    return sorted({batch_of_file(key) for key in lake.event_keys(day)})


def quarantine_for_days(lake: Lake, days: Sequence[dt.date | str]) -> pl.DataFrame:
    """Quarantined records counted on the given days (their partition or arrival day; see `claimed_date`)."""
    keys = lake.quarantine_keys()
    wanted = [dt.date.fromisoformat(str(d)) for d in days]
    if not keys:
        return pl.DataFrame(schema=pl.Schema({**QUARANTINE_SCHEMA, "batch_id": pl.String()}))
    return lake.scan(keys).filter(pl.col("event_date").is_in(wanted)).collect()


def days_before(day: dt.date | str, count: int) -> list[dt.date]:
    end = dt.date.fromisoformat(str(day))
    return [end - dt.timedelta(days=i) for i in range(count, 0, -1)]
