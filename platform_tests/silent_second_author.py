"""Silent corruptions written by a second author: records that pass every per-record schema rule
(ids present, event_type allowed, price finite and >= 0, sane timestamps) but are still wrong.

`inject` corrupts whole days, one kind per day, and labels every changed or added record in a
``silent`` column. The kinds, and the real producer failure each one models:

``local_time_as_utc`` some users' events carry local time (UTC-4..-8) stamped as UTC: an SDK timezone bug.
``price_minor_units`` prices of a block of products arrive x100: a catalogue feed switched to cents.
``catalog_join_skew`` category/brand of some products are another product's: enrichment joined a re-keyed catalogue.
``view_as_cart``      all views of some sessions arrive as ``cart``: a release wired page views to the cart tracker.
``crawler_views``     added scraper records: views only, catalogue walked in id order, steady cadence round the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from dataplatform.lib.demo import EVENT_COLUMNS

LOCAL_TIME_AS_UTC: Final = "local_time_as_utc"
PRICE_MINOR_UNITS: Final = "price_minor_units"
CATALOG_JOIN_SKEW: Final = "catalog_join_skew"
VIEW_AS_CART: Final = "view_as_cart"
CRAWLER_VIEWS: Final = "crawler_views"

KINDS: Final[tuple[str, ...]] = (
    LOCAL_TIME_AS_UTC,
    PRICE_MINOR_UNITS,
    CATALOG_JOIN_SKEW,
    VIEW_AS_CART,
    CRAWLER_VIEWS,
)

BoolArray = npt.NDArray[np.bool_]

_POS: Final = "_silent_pos"  # original stream position, so the output keeps the input's order
_HIT: Final = "_silent_hit"
_EARLIEST: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_DAY_US: Final = 86_400_000_000
# Columns a crawler record gets values for; any other input column (meta) is null on added rows.
_CRAWLER_SET: Final = frozenset({*EVENT_COLUMNS, "event_date", "silent", _POS})


def inject(
    frame: pl.DataFrame,
    days: Sequence[dt.date],
    *,
    kinds: Sequence[str] = KINDS,
    share: float = 0.15,
    seed: int = 0,
) -> pl.DataFrame:
    """`frame` with the records of each day in `days` silently corrupted, one kind per day (cycling
    through `kinds` in date order), about `share` of the day's records affected, and a ``silent``
    column naming the kind that changed or added a record (null for untouched records)."""
    if "silent" in frame.columns:
        raise ValueError("frame already has a 'silent' column")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown silent corruption kinds: {', '.join(unknown)}")
    if days and not kinds:
        raise ValueError("kinds is empty")
    if not 0.0 < share < 1.0:
        raise ValueError("share must be in (0, 1)")

    targets = sorted(set(days))
    work = frame.with_columns(
        pl.lit(None, dtype=pl.String).alias("silent"),
        pl.int_range(pl.len(), dtype=pl.Int64).cast(pl.Float64).alias(_POS),
    )
    parts = [work.filter(~pl.col("event_date").is_in(targets))]
    for i, day in enumerate(targets):  # a loop over days, not rows
        kind = kinds[i % len(kinds)]
        rows = work.filter(pl.col("event_date") == day)
        if rows.height:
            rng = np.random.default_rng([seed, day.toordinal(), KINDS.index(kind)])
            parts.append(_CORRUPTERS[kind](rows, share, rng))
    return pl.concat(parts).sort(_POS, maintain_order=True).drop(_POS)


# ---------------------------------------------------------------------------------------------
# The kinds
# ---------------------------------------------------------------------------------------------


def _local_time_as_utc(rows: pl.DataFrame, share: float, rng: np.random.Generator) -> pl.DataFrame:
    """All events of some users (one device locale) shifted back by a whole number of hours."""
    hours = int(rng.integers(4, 9))
    shifted = pl.col("timestamp") - pl.duration(hours=hours)
    hit = _whole_groups(rows["user_id"], np.ones(rows.height, dtype=bool), share * rows.height, rng)
    return (
        rows.with_columns(pl.Series(_HIT, hit) & (shifted >= _EARLIEST))
        .with_columns(pl.when(pl.col(_HIT)).then(shifted).otherwise(pl.col("timestamp")).alias("timestamp"))
        .with_columns(
            pl.when(pl.col(_HIT))
            .then(pl.col("timestamp").dt.date())
            .otherwise(pl.col("event_date"))
            .alias("event_date")
        )
        .pipe(_label, LOCAL_TIME_AS_UTC)
    )


def _price_minor_units(rows: pl.DataFrame, share: float, rng: np.random.Generator) -> pl.DataFrame:
    """Every price of some products multiplied by 100."""
    priced = rows["price"].fill_null(0.0).to_numpy() > 0
    hit = _whole_groups(rows["product_id"], priced, share * rows.height, rng) & priced
    return (
        rows.with_columns(pl.Series(_HIT, hit))
        .with_columns(
            pl.when(pl.col(_HIT)).then((pl.col("price") * 100).round(2)).otherwise(pl.col("price")).alias("price")
        )
        .pipe(_label, PRICE_MINOR_UNITS)
    )


def _catalog_join_skew(rows: pl.DataFrame, share: float, rng: np.random.Generator) -> pl.DataFrame:
    """Category and brand of some products replaced by those of a product half the catalogue away
    (in category order), so the new category is almost always a different one."""
    catalogue = (
        rows.filter(pl.col("product_id").is_not_null())
        .unique("product_id", keep="first")
        .sort("category", "product_id", nulls_last=True)
    )
    shift = catalogue.height // 2
    donors = pl.DataFrame(
        {
            "product_id": catalogue["product_id"],
            "_donor_category": _rolled(catalogue["category"], shift),
            "_donor_brand": _rolled(catalogue["brand"], shift),
        }
    )
    joined = rows.join(donors, on="product_id", how="left", maintain_order="left")
    changes = (
        joined.select(
            pl.col("_donor_category").is_not_null()
            & (
                pl.col("_donor_category").ne_missing(pl.col("category"))
                | pl.col("_donor_brand").ne_missing(pl.col("brand"))
            )
        )
        .to_series()
        .to_numpy()
    )
    hit = _whole_groups(rows["product_id"], changes, share * rows.height, rng) & changes
    return (
        joined.with_columns(pl.Series(_HIT, hit))
        .with_columns(
            pl.when(pl.col(_HIT)).then(pl.col("_donor_category")).otherwise(pl.col("category")).alias("category"),
            pl.when(pl.col(_HIT)).then(pl.col("_donor_brand")).otherwise(pl.col("brand")).alias("brand"),
        )
        .drop("_donor_category", "_donor_brand")
        .pipe(_label, CATALOG_JOIN_SKEW)
    )


def _view_as_cart(rows: pl.DataFrame, share: float, rng: np.random.Generator) -> pl.DataFrame:
    """In some sessions every view becomes a cart event."""
    views = (rows["event_type"] == "view").fill_null(False).to_numpy()
    hit = _whole_groups(rows["session_id"], views, share * rows.height, rng) & views
    return (
        rows.with_columns(pl.Series(_HIT, hit))
        .with_columns(pl.when(pl.col(_HIT)).then(pl.lit("cart")).otherwise(pl.col("event_type")).alias("event_type"))
        .pipe(_label, VIEW_AS_CART)
    )


def _crawler_views(rows: pl.DataFrame, share: float, rng: np.random.Generator) -> pl.DataFrame:
    """Added view records of 1-3 crawlers, each walking the day's catalogue in product-id order
    at a steady cadence over the whole day, with a new session every few hundred requests; the
    added records make up `share` of the day afterwards."""
    n_added = round(share * rows.height / (1.0 - share))
    catalogue = (
        rows.filter(pl.col("product_id").is_not_null())
        .unique("product_id", keep="last", maintain_order=True)
        .sort("product_id")
        .select("product_id", "category", "brand", "price")
    )
    if n_added == 0 or catalogue.height == 0:
        return rows
    n_bots = int(rng.integers(1, 4))
    bot = np.arange(n_added) % n_bots
    step = np.arange(n_added) // n_bots  # the request number within its crawler
    per_bot = np.bincount(bot, minlength=n_bots)

    cadence_us = _DAY_US / per_bot  # one request every cadence, all day long
    phase_us = rng.integers(0, _DAY_US, n_bots)
    jitter = rng.uniform(-0.05, 0.05, n_added)
    offset_us = (phase_us[bot] + (step + jitter) * cadence_us[bot]).astype(np.int64) % _DAY_US
    day = rows["event_date"][0]
    midnight_us = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) * 1_000_000
    ts = pl.from_epoch(pl.Series(midnight_us + offset_us), time_unit="us").dt.replace_time_zone("UTC")

    restart = rng.integers(150, 400, n_bots)  # requests per crawler session (cookies dropped)
    session_no = step // restart[bot]
    session_key = bot * (int(session_no.max()) + 1) + session_no
    session_ids = _uuid_strings(rng, int(session_key.max()) + 1)
    known_users = set(rows["user_id"].drop_nulls().to_list())
    candidates = rng.choice(900_000_000, size=n_bots + 8, replace=False) + 100_000_000
    bot_users = [u for u in map(str, candidates) if u not in known_users][:n_bots]  # a handful of ids
    product = (rng.integers(0, catalogue.height, n_bots)[bot] + step) % catalogue.height

    added = pl.DataFrame(
        {
            "event_id": _uuid_strings(rng, n_added),
            "user_id": pl.Series(bot_users).gather(bot),
            "timestamp": ts,
            "session_id": session_ids.gather(session_key),
        }
    ).with_columns(catalogue.select(pl.all().gather(product)))
    added = added.with_columns(
        pl.lit("view").alias("event_type"),
        pl.col("timestamp").dt.date().alias("event_date"),
        pl.lit(CRAWLER_VIEWS, dtype=pl.String).alias("silent"),
        _positions(rows, added["timestamp"]).alias(_POS),
    )
    added = added.select(
        pl.col(c).cast(t) if c in _CRAWLER_SET else pl.lit(None, dtype=t).alias(c) for c, t in rows.schema.items()
    ).sort("timestamp")
    return pl.concat([rows, added])


_CORRUPTERS: Final[dict[str, Callable[[pl.DataFrame, float, np.random.Generator], pl.DataFrame]]] = {
    LOCAL_TIME_AS_UTC: _local_time_as_utc,
    PRICE_MINOR_UNITS: _price_minor_units,
    CATALOG_JOIN_SKEW: _catalog_join_skew,
    VIEW_AS_CART: _view_as_cart,
    CRAWLER_VIEWS: _crawler_views,
}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _whole_groups(key: pl.Series, counted: BoolArray, target: float, rng: np.random.Generator) -> BoolArray:
    """Rows of randomly chosen whole groups of `key` (users, sessions, products) whose `counted`
    rows add up to about `target`: groups are taken in random order while the running total, up
    to the middle of the group, stays below the target."""
    codes = key.rank("dense").fill_null(0).to_numpy().astype(np.int64)  # nulls form group 0
    weight = np.bincount(codes, weights=counted, minlength=int(codes.max(initial=0)) + 1)
    order = rng.permutation(len(weight))
    before = np.cumsum(weight[order]) - weight[order] / 2
    chosen = np.zeros(len(weight), dtype=bool)
    chosen[order[before < target]] = True
    chosen[0] &= key.null_count() == 0  # never the null group
    return chosen[codes]


def _label(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.col(_HIT)).then(pl.lit(kind)).otherwise(pl.col("silent")).alias("silent")
    ).drop(_HIT)


def _rolled(values: pl.Series, by: int) -> pl.Series:
    """`values` rotated by `by` places (each row gets the value `by` rows further down, wrapping)."""
    return pl.concat([values.slice(by), values.slice(0, by)])


def _positions(rows: pl.DataFrame, timestamps: pl.Series) -> pl.Series:
    """Stream positions for added records: just after the day's last record at or before them."""
    ordered = rows.select("timestamp", _POS).drop_nulls("timestamp").sort("timestamp", maintain_order=True)
    ts = ordered["timestamp"].dt.epoch("us").to_numpy()
    pos = ordered[_POS].to_numpy()
    first = float(rows[_POS].min())  # type: ignore[arg-type]
    k = np.searchsorted(ts, timestamps.dt.epoch("us").to_numpy(), side="right")
    return pl.Series(np.where(k > 0, pos[np.maximum(k - 1, 0)] + 0.5, first - 0.5))


def _uuid_strings(rng: np.random.Generator, n: int) -> pl.Series:
    """`n` random UUID-shaped ids (8-4-4-4-12 hex) from the seeded stream."""
    hex32 = pl.Series(np.frombuffer(rng.bytes(16 * n).hex().encode("ascii"), dtype="S32").astype("U32"))
    return (
        pl.DataFrame({"h": hex32})
        .select(
            pl.concat_str(
                [pl.col("h").str.slice(a, w) for a, w in ((0, 8), (8, 4), (12, 4), (16, 4), (20, 12))], separator="-"
            )
        )
        .to_series()
    )
