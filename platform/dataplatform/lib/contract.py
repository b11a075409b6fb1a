"""The event contract: one Pandera (polars) model that every part of the platform uses.

The model states the rules once. Ingestion parses raw strings into the model's dtypes
(`dataplatform.lib.transform`), validates whole batches with it, and turns Pandera's
failure cases into per-record reason codes; the asset checks and the UI's column
schemas are generated from the same model.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import pandera.polars as pa
import polars as pl

EVENT_TYPES: Final = ("view", "cart", "remove_from_cart", "purchase")

# Accepted timestamps must fall in this window (relative to the time of validation for the
# upper bound): anything else is a clock or unit error upstream, not an event.
EARLIEST_EVENT_TIME: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_FUTURE_SKEW: Final = dt.timedelta(days=1)

UTC_DATETIME: Final = pl.Datetime("us", "UTC")


class EventRecord(pa.DataFrameModel):
    """One user interaction, after parsing. Column order is the warehouse's column order."""

    event_id: str = pa.Field(nullable=False, str_length={"min_value": 1, "max_value": 256})
    user_id: str = pa.Field(nullable=False, str_length={"min_value": 1, "max_value": 256})
    timestamp: UTC_DATETIME = pa.Field(nullable=False, ge=EARLIEST_EVENT_TIME)  # type: ignore[valid-type]
    event_type: str = pa.Field(nullable=False, isin=list(EVENT_TYPES))
    product_id: pl.Int64 = pa.Field(nullable=True, ge=0)
    category: str = pa.Field(nullable=True, str_length={"max_value": 512})
    brand: str = pa.Field(nullable=True, str_length={"max_value": 256})
    price: float = pa.Field(nullable=True, ge=0)
    session_id: str = pa.Field(nullable=True, str_length={"max_value": 256})
    extras: str = pa.Field(nullable=True, description="JSON object of input columns the contract does not know")

    @pa.check("price", name="finite")
    def price_is_finite(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_finite())

    @pa.check("timestamp", name="not_in_future")
    def timestamp_not_in_future(cls, data: pa.PolarsData) -> pl.LazyFrame:
        latest = dt.datetime.now(dt.UTC) + MAX_FUTURE_SKEW
        return data.lazyframe.select(pl.col(data.key) <= pl.lit(latest, dtype=UTC_DATETIME))

    class Config:
        strict = "filter"  # lineage columns ride along during validation and are ignored
        coerce = False


# Hardening fix: digits allowed after the colon, since the documented `file:invalid_utf8` failed the
# quarantine contract (`quarantine_conforms`) whenever a file with invalid UTF-8 was rejected.
REASON_CODE_PATTERN: Final = r"^[a-z_]+:[a-z0-9_]+$"


class QuarantineRecord(pa.DataFrameModel):
    """A record that did not pass the contract, kept with its reasons (never dropped)."""

    batch_id: str = pa.Field(nullable=False, str_length={"min_value": 1})
    source_file: str = pa.Field(nullable=False, str_length={"min_value": 1})
    source_row: pl.Int64 = pa.Field(nullable=True, ge=1)  # null: the whole file
    reasons: pl.List(pl.String) = pa.Field(nullable=False)  # type: ignore[valid-type]
    raw_record: str = pa.Field(nullable=False)
    event_date: pl.Date = pa.Field(nullable=False)  # the day it counts on
    claimed_date: pl.Date = pa.Field(nullable=True)  # its timestamp's day
    detail: str = pa.Field(nullable=True)

    @pa.check("reasons", name="named_reasons")
    def reasons_are_codes(cls, data: pa.PolarsData) -> pl.LazyFrame:
        codes = pl.col(data.key)
        return data.lazyframe.select(
            (codes.list.len() > 0) & codes.list.eval(pl.element().str.contains(REASON_CODE_PATTERN)).list.all()
        )

    class Config:
        strict = "filter"


CONTRACT_COLUMNS: Final[tuple[str, ...]] = tuple(EventRecord.to_schema().columns)
# The fields a producer sends: the contract's, but `extras`, which ingestion fills with the rest.
PRODUCER_COLUMNS: Final[tuple[str, ...]] = tuple(c for c in CONTRACT_COLUMNS if c != "extras")
REQUIRED_COLUMNS: Final = ("user_id", "timestamp", "event_type")

# Input column names accepted as the contract's names. The right-hand names are the public
# REES46 e-commerce behaviour dataset's (https://rees46.com, "eCommerce behavior data"),
# so its CSV files can be dropped into the landing zone as they are.
COLUMN_ALIASES: Final[dict[str, str]] = {
    "event_time": "timestamp",
    "ts": "timestamp",
    "time": "timestamp",
    "user_session": "session_id",
    "session": "session_id",
    "category_code": "category",
    "id": "event_id",
}


def event_dtypes() -> pl.Schema:
    """The contract's columns and their Polars dtypes, in order."""
    return pl.Schema({name: col.dtype.type for name, col in EventRecord.to_schema().columns.items()})


# Typed input (Parquet) whose values convert exactly to the contract's dtype is used as it is: reading it
# as text and parsing it back gave the same values, at about a third of a Parquet file's transform
# (700k rows: 290 of 891 ms). Float32 is not here: as text it reads back as the shortest decimal (0.1),
# as a cast as 0.10000000149.
_EXACT_INPUT_DTYPES: Final[dict[str, tuple[type[pl.DataType], ...]]] = {
    "product_id": (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32),
    "price": (pl.Float64,),
}


def keeps_type(name: str, dtype: pl.DataType) -> bool:
    """Whether an input column of this contract name and dtype needs no parsing (see `typed_value`).

    Timestamps qualify in micro- or milliseconds, with or without a time zone (none reads as UTC,
    as for text); nanoseconds go through text, which keeps microseconds as the text path always did.
    """
    if name == "timestamp":
        return isinstance(dtype, pl.Datetime) and dtype.time_unit in ("us", "ms")
    return any(dtype == exact for exact in _EXACT_INPUT_DTYPES.get(name, ()))


def typed_value(name: str, dtype: pl.DataType) -> pl.Expr:
    """An input column that `keeps_type` accepted, as the contract's dtype."""
    if isinstance(dtype, pl.Datetime):
        return in_utc(name, dtype).cast(UTC_DATETIME)
    return pl.col(name).cast(event_dtypes()[name])


def in_utc(name: str, dtype: pl.Datetime) -> pl.Expr:
    """A datetime column in UTC; one without a time zone reads as UTC, as text without an offset does."""
    column = pl.col(name)
    return column.dt.replace_time_zone("UTC") if dtype.time_zone is None else column.dt.convert_time_zone("UTC")


def column_descriptions() -> dict[str, str]:
    """Human descriptions for the UI's column schema."""
    return {
        "event_id": "Unique event id; derived from the record's content when the producer sends none",
        "user_id": "User who acted (non-empty)",
        "timestamp": "When the event happened, UTC",
        "event_type": "One of " + ", ".join(EVENT_TYPES),
        "product_id": "Product acted on",
        "category": "Product category path (REES46: category_code)",
        "brand": "Product brand",
        "price": "Price at the time of the event, finite and >= 0",
        "session_id": "Browsing session (REES46: user_session)",
        "extras": "JSON object of input columns the contract does not name",
    }
