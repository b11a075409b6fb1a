"""Data-quality logic shared by the asset checks: contract conformance, bands learned from
history, daily profiles, and readable failure tables. No Dagster import.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pandera.polars as pa
import polars as pl

from dataplatform.lib.contract import EVENT_TYPES, EventRecord
from dataplatform.lib.drift import MAD_TO_SD, ColumnDrift
from dataplatform.lib.transform import ROW, contract_reasons, contract_schema

# Volume bands never narrower than 5% of the median day.
VOLUME_MIN_RELATIVE_SPREAD = 0.05


class BandStatus(Enum):
    NO_HISTORY = "no_history"
    OK = "ok"
    LOW = "low"
    HIGH = "high"
    FAR_HIGH = "far_high"


@dataclass(frozen=True)
class Band:
    """What is normal for a daily figure, learned from its own recent history.

    `low`..`high` is median ± k robust standard deviations; `far_high` (median + far_k sd)
    separates "unusual" from "broken". `min_width` keeps a band from collapsing to a point
    when history is almost constant (for example a quarantine rate of exactly 0 every day).
    """

    center: float
    low: float
    high: float
    far_high: float
    spread: float
    n_history: int

    def status(self, value: float) -> BandStatus:
        if value > self.far_high:
            return BandStatus.FAR_HIGH
        if value > self.high:
            return BandStatus.HIGH
        if value < self.low:
            return BandStatus.LOW
        return BandStatus.OK


def as_float(aggregate: Any) -> float:
    """A Polars aggregate of a numeric column (its median, mean, max: a number, or None when nothing was
    aggregated) as a float, 0.0 for None."""
    return float(aggregate or 0.0)


def learned_band(
    history: Sequence[float],
    *,
    k: float = 3.0,
    far_k: float = 6.0,
    min_history: int = 5,
    min_width: float = 0.0,
    floor: float | None = None,
) -> Band | None:
    """A robust band from past values (NaN ignored); None until `min_history` values exist."""
    values = np.asarray([v for v in history if v is not None and math.isfinite(v)], dtype=float)
    if values.size < min_history:
        return None
    center = float(np.median(values))
    spread = max(MAD_TO_SD * float(np.median(np.abs(values - center))), min_width)
    low = center - k * spread
    return Band(
        center=center,
        low=low if floor is None else max(low, floor),
        high=center + k * spread,
        far_high=center + far_k * spread,
        spread=spread,
        n_history=int(values.size),
    )


# A weekday's own level needs this many past days of that weekday (two weeks of history).
MIN_DAYS_PER_WEEKDAY = 2


def weekday_factors(days: Sequence[dt.date], values: Sequence[float]) -> dict[int, float]:
    """Each weekday's typical level relative to all days (median of the weekday / median of all).

    Interaction volume has a weekly cycle (weekends 15% busier, say); a band learned on raw daily
    volume flags every weekend. Dividing by the weekday's factor leaves the variation a band should
    judge. A weekday with fewer than MIN_DAYS_PER_WEEKDAY past days, or no positive level, keeps 1.
    """
    frame = pl.DataFrame({"day": list(days), "value": list(values)}, schema={"day": pl.Date, "value": pl.Float64})
    overall = as_float(frame["value"].median())
    if frame.height == 0 or not overall > 0:
        return {}
    per_day = (
        frame.group_by(pl.col("day").dt.weekday().alias("weekday"))
        .agg(pl.col("value").median().alias("median"), pl.len().alias("days"))
        .filter((pl.col("days") >= MIN_DAYS_PER_WEEKDAY) & (pl.col("median") > 0))
    )
    return {int(w): float(m) / overall for w, m in zip(per_day["weekday"], per_day["median"], strict=True)}


def weekday_adjusted_band(
    days: Sequence[dt.date], values: Sequence[float], day: dt.date, *, min_relative_width: float, counts: bool = False
) -> tuple[Band | None, float]:
    """(band for `day`'s weekday-adjusted value, `day`'s weekday factor): judge value / factor against it.

    The band's spread never falls below `min_relative_width` of the adjusted median, nor, for `counts`,
    below their Poisson noise (the square root of the median): a few days of a rare event type would
    otherwise learn a band that its own chance variation leaves.
    """
    factors = weekday_factors(days, values)
    adjusted = [v / factors.get(d.isoweekday(), 1.0) for d, v in zip(days, values, strict=True)]
    median = float(np.median(adjusted)) if adjusted else 0.0
    min_width = max(min_relative_width * median, math.sqrt(median) if counts else 0.0)
    band = learned_band(adjusted, min_width=min_width, floor=0.0)
    return band, factors.get(day.isoweekday(), 1.0)


def volume_table(
    profile: Mapping[str, Any], history: pl.DataFrame, day: dt.date, *, min_relative_width: float
) -> pl.DataFrame:
    """Each volume measure of `day` (profile keys `events*`) against its weekday-adjusted band learned
    from `history` (daily profiles): value, low, high, weekday_factor, status and score, the distance
    from the band's centre in half-widths of the band (1 at its edge; null without a band)."""
    rows = []
    for measure in [c for c in profile if c.startswith("events")]:
        past = history[measure].cast(pl.Float64).to_list() if history.height else []
        days = history["event_date"].to_list() if history.height else []
        band, factor = weekday_adjusted_band(days, past, day, min_relative_width=min_relative_width, counts=True)
        adjusted = profile[measure] / factor
        half_width = band.high - band.center if band else 0.0
        rows.append(
            {
                "measure": measure,
                "value": profile[measure],
                "low": band.low * factor if band else None,
                "high": band.high * factor if band else None,
                "weekday_factor": factor,
                "status": (band.status(adjusted) if band else BandStatus.NO_HISTORY).value,
                "score": abs(adjusted - band.center) / half_width if band and half_width > 0 else None,
            }
        )
    schema = {"measure": pl.String, "value": pl.Float64, "low": pl.Float64, "high": pl.Float64,
              "weekday_factor": pl.Float64, "status": pl.String, "score": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


@dataclass(frozen=True)
class ContractReport:
    rows: int
    failing_rows: int
    reasons: pl.DataFrame  # reason, records, share, examples

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0


def check_contract(
    frame: pl.DataFrame,
    *,
    model: type[pa.DataFrameModel] | pa.DataFrameSchema = EventRecord,
    examples: int = 3,
    id_column: str = "event_id",
) -> ContractReport:
    """Validate stored rows against a contract again (a schema or a writer regression shows here)."""
    columns = list(contract_schema(model).columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        reasons = pl.DataFrame(
            {"reason": [f"{c}:column_missing" for c in missing], "records": [frame.height] * len(missing)}
        )
        return ContractReport(frame.height, frame.height, reasons.with_columns(share=1.0, examples=pl.lit("")))
    typed = frame.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    failures = contract_reasons(typed, model)
    table = failure_table(
        failures.join(typed.select(ROW, pl.col(id_column).cast(pl.String).alias("example")), on=ROW, how="left"),
        rows=frame.height,
        examples=examples,
    )
    return ContractReport(frame.height, failures[ROW].n_unique(), table)


def failure_table(failures: pl.DataFrame, *, rows: int, examples: int = 3) -> pl.DataFrame:
    """Reason, record count, share of rows and a few example values, most frequent first.

    `failures` has one row per (record, reason) with columns `reason` and `example`.
    """
    if failures.height == 0:
        return pl.DataFrame(
            schema={"reason": pl.String, "records": pl.Int64, "share": pl.Float64, "examples": pl.String}
        )
    return (
        failures.group_by("reason")
        .agg(
            pl.len().cast(pl.Int64).alias("records"),
            pl.col("example").cast(pl.String).head(examples).str.join(", ").alias("examples"),
        )
        .with_columns((pl.col("records") / max(rows, 1)).alias("share"))
        .sort(["records", "reason"], descending=[True, False])
        .select("reason", "records", "share", "examples")
    )


def percent_shares(reasons: pl.DataFrame) -> pl.DataFrame:
    """A failure_table with its share in percent (share_percent, 2 decimals), as the UI shows rates."""
    return reasons.with_columns((100 * pl.col("share")).round(2).alias("share_percent")).drop("share")


def quarantine_failures(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows (with a `reasons` list) as one row per (record, reason) with an example."""
    return quarantine.select(
        pl.col("reasons").alias("reason"),
        pl.concat_str(pl.col("source_file"), pl.lit("#"), pl.col("source_row").cast(pl.String).fill_null("file")).alias(
            "example"
        ),
    ).explode("reason")


def markdown_table(frame: pl.DataFrame, *, limit: int = 10) -> str:
    """A small Markdown table for check metadata; floats to 4 significant digits."""
    if frame.height == 0:
        return "_none_"
    shown = frame.head(limit)
    header = "| " + " | ".join(shown.columns) + " |\n| " + " | ".join("---" for _ in shown.columns) + " |\n"

    def cell(value: object) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")[:120]

    body = "\n".join("| " + " | ".join(cell(v) for v in row) + " |" for row in shown.iter_rows())
    more = f"\n\n…and {frame.height - limit} more" if frame.height > limit else ""
    return header + body + more


def day_profile(events: pl.DataFrame, quarantined: int) -> dict[str, float | int]:
    """Daily figures whose history the bands learn from."""
    rows = events.height
    counts = dict.fromkeys(EVENT_TYPES, 0)
    if rows:
        for event_type, n in events.group_by("event_type").len().iter_rows():
            counts[event_type] = n
    total = rows + quarantined
    return {
        "events": rows,
        "quarantined": quarantined,
        "quarantine_rate": quarantined / total if total else 0.0,
        "users": events["user_id"].n_unique() if rows else 0,
        **{f"events_{name}": n for name, n in counts.items()},
    }


DRIFT_TABLE_COLUMNS = {
    "method": pl.String, "statistic": pl.Float64, "p_value": pl.Float64, "effect_metric": pl.String,
    "effect_size": pl.Float64, "threshold": pl.Float64, "drifted": pl.Boolean, "null_share_shift": pl.Float64,
    "unseen_categories": pl.Float64, "n_reference": pl.Int64, "n_current": pl.Int64, "reason": pl.String,
}  # fmt: skip


def drift_table(results: Sequence[ColumnDrift], **context: object) -> pl.DataFrame:
    """Drift results as warehouse rows (`distribution_drift`), each with the given context columns."""
    rows = [
        {**context, "column_name": r.column, **{k: v for k, v in r.to_dict().items() if k in DRIFT_TABLE_COLUMNS}}
        for r in results
    ]
    frame = pl.DataFrame(rows, schema_overrides=DRIFT_TABLE_COLUMNS, infer_schema_length=None)
    return frame.with_columns(pl.lit(dt.datetime.now(dt.UTC), dtype=pl.Datetime("us", "UTC")).alias("computed_at"))
