"""Today so far: a day that is still filling, judged against the same hours of the days before it.

A partial day compared with whole days always looks low. Each past day is cut at the time of day
it is now, so the band learns what "by 14:20" usually holds, weekday rhythm included
(lib/quality.volume_table), and a stream that stalled at 9:00 shows as low by noon.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from dataplatform.lib.contract import EVENT_TYPES
from dataplatform.lib.quality import VOLUME_MIN_RELATIVE_SPREAD, BandStatus, volume_table

VOLUME_MEASURES = ("events", *(f"events_{t}" for t in EVENT_TYPES))


def counts_until(events: pl.DataFrame, days: list[dt.date], until: dt.time) -> pl.DataFrame:
    """Per day of `days` that holds events: its events, and its events per type, with a UTC time of day
    before `until` (the volume measures of lib/quality.day_profile). A day with events, none of them
    before `until`, has zeros; a day with no events at all is left out: it was not loaded (before the
    history began), and fourteen such zeros once stretched a band from 0 to three times the usual."""
    if events.height == 0:
        return pl.DataFrame(schema={"event_date": pl.Date, **dict.fromkeys(VOLUME_MEASURES, pl.Int64)})
    held = events.filter(pl.col("event_date").is_in(days))["event_date"].unique()
    frame = pl.DataFrame({"event_date": held}, schema={"event_date": pl.Date})
    counts = (
        events.filter(pl.col("timestamp").dt.convert_time_zone("UTC").dt.time() < until)
        .group_by("event_date")
        .agg(
            pl.len().cast(pl.Int64).alias("events"),
            *((pl.col("event_type") == t).sum().cast(pl.Int64).alias(f"events_{t}") for t in EVENT_TYPES),
        )
    )
    return frame.join(counts, on="event_date", how="left").fill_null(0).sort("event_date")


def reason_counts(reasons: pl.Series) -> pl.DataFrame:
    """Records per reason code, most frequent first, from a column of reason lists."""
    if reasons.len() == 0:
        return pl.DataFrame(schema={"reason": pl.String, "records": pl.Int64})
    return (
        reasons.rename("reason")
        .explode()
        .drop_nulls()
        .value_counts(name="records")
        .with_columns(pl.col("records").cast(pl.Int64))
        .sort(["records", "reason"], descending=[True, False])
    )


@dataclass(frozen=True)
class TodaySoFar:
    day: dt.date
    as_of: dt.datetime
    events: int
    quarantined: int
    suspect: int
    volumes: pl.DataFrame  # lib/quality.volume_table, the past days cut at `as_of`'s time of day
    quarantine_reasons: pl.DataFrame  # reason, records
    suspect_reasons: pl.DataFrame  # reason, records

    @property
    def quarantine_rate(self) -> float:
        total = self.events + self.quarantined
        return self.quarantined / total if total else 0.0

    @property
    def volumes_outside(self) -> list[str]:
        outside = (BandStatus.LOW.value, BandStatus.HIGH.value, BandStatus.FAR_HIGH.value)
        return self.volumes.filter(pl.col("status").is_in(outside))["measure"].to_list()

    @property
    def summary(self) -> str:
        """One line an analyst reads first."""
        volume = (
            f"volume outside its band for this time of day: {', '.join(self.volumes_outside)}"
            if self.volumes_outside
            else "volume as usual for this time of day"
        )
        return (
            f"{self.events:,} events so far, {self.quarantined:,} quarantined ({self.quarantine_rate:.2%}), "
            f"{self.suspect:,} suspect; {volume}"
        )


def today_so_far(
    *,
    now: dt.datetime,
    events: pl.DataFrame,
    quarantine_reasons: pl.Series,
    suspect_reasons: pl.Series,
    history: pl.DataFrame,
    history_days: list[dt.date],
) -> TodaySoFar:
    """Today's figures as of `now`: `events` (valid events of today), the reason lists of today's
    quarantined and suspect records, and the volume so far against `history` (valid events of
    `history_days`) cut at the same time of day."""
    day = now.astimezone(dt.UTC).date()
    cut = now.astimezone(dt.UTC).time()
    today = counts_until(events, [day], dt.time.max)
    so_far = today.row(0, named=True) if today.height else dict.fromkeys(VOLUME_MEASURES, 0)
    past = counts_until(history, history_days, cut)
    volumes = volume_table(
        {m: so_far[m] for m in VOLUME_MEASURES}, past, day, min_relative_width=VOLUME_MIN_RELATIVE_SPREAD
    )
    return TodaySoFar(
        day=day,
        as_of=now,
        events=events.height,
        quarantined=quarantine_reasons.len(),
        suspect=suspect_reasons.len(),
        volumes=volumes,
        quarantine_reasons=reason_counts(quarantine_reasons),
        suspect_reasons=reason_counts(suspect_reasons),
    )
