"""Point-in-time correct features and labels for the purchase-prediction model.

An *example* is one ``view`` event (user and product known) on a requested day. Its label
says whether the same user purchased the same product within ``horizon`` after the view
(strictly after the view, at most ``view time + horizon``). Its features are computed only
from events with a timestamp in ``[example_time - history, example_time)``: strictly before
the example, so an event at exactly the example time (a tie) never counts, and nothing that
happens later can change a feature. The only exceptions are the example's own attributes
known at view time (its price, category, brand, hour, weekday).

Every windowed count is exact: DuckDB window aggregates over integer epoch microseconds with
``RANGE BETWEEN <window> PRECEDING AND 1 PRECEDING`` frames (1 µs being the timestamp
resolution), i.e. events with ``T - window <= t < T``. Windows longer than ``history`` are cut
to ``history``. Mean prices are summed as DECIMAL so results are bit-identical whatever the
row order or thread count.

The same SQL serves the warehouse snapshots (:func:`user_features`, :func:`product_features`):
they append a "probe" row per user/product at ``as_of`` and read the features the probe would
get as an example at that time, so training and serving features cannot drift apart.

Pure logic: no Dagster import.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Final

import duckdb
import polars as pl

from dataplatform.lib.contract import PRODUCER_COLUMNS

DAY: Final = dt.timedelta(days=1)
DEFAULT_HORIZON: Final = dt.timedelta(days=1)
DEFAULT_HISTORY: Final = dt.timedelta(days=28)

# Activity windows (cut to `history` when that is shorter).
WINDOWS: Final[dict[str, dt.timedelta]] = {
    "1h": dt.timedelta(hours=1),
    "1d": dt.timedelta(days=1),
    "7d": dt.timedelta(days=7),
    "28d": dt.timedelta(days=28),
}
_USER_EVENT_TYPES: Final = (("views", "view"), ("carts", "cart"), ("purchases", "purchase"))
# Product conversion rate over 7 days, smoothed towards PRIOR_PURCHASES / PRIOR_VIEWS (= 5 %).
PRIOR_PURCHASES: Final = 1.0
PRIOR_VIEWS: Final = 20.0
_MAX_PRICE_FOR_MEAN: Final = 1e20  # prices are clamped here before the exact DECIMAL sum

USER_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    *(f"user_{name}_{w}" for w in WINDOWS for name, _ in _USER_EVENT_TYPES),
    "user_seconds_since_prev_event",  # null when the user has no event in the history window
    "user_purchase_rate_28d",  # purchases / views over 28d, null when no views
)
USER_PRODUCT_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "user_product_views_28d",
    "user_product_carts_28d",
    "user_product_seconds_since_last_view",  # null when not viewed in the history window
)
USER_CATEGORY_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "user_category_view_share_28d",  # null when the category is null or the user has no views
)
PRODUCT_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "product_views_1d",
    "product_views_7d",
    "product_conversion_rate_7d",  # (purchases + 1) / (views + 20)
    "price",  # the view's own price
    "price_relative_to_product_mean_7d",  # price / mean price of the product's earlier 7d events
)
SESSION_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "session_position",  # events of the same session strictly earlier
    "session_age_seconds",  # seconds since the session's first event (within history)
)
CONTEXT_FEATURE_COLUMNS: Final[tuple[str, ...]] = ("hour_of_day", "day_of_week", "category", "brand")

FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    *USER_FEATURE_COLUMNS,
    *USER_PRODUCT_FEATURE_COLUMNS,
    *USER_CATEGORY_FEATURE_COLUMNS,
    *PRODUCT_FEATURE_COLUMNS,
    *SESSION_FEATURE_COLUMNS,
    *CONTEXT_FEATURE_COLUMNS,
)
CATEGORICAL_FEATURES: Final[tuple[str, ...]] = ("category", "brand")
NUMERIC_FEATURES: Final[tuple[str, ...]] = tuple(c for c in FEATURE_COLUMNS if c not in CATEGORICAL_FEATURES)

_COUNT_FEATURES: Final = frozenset(
    [c for c in USER_FEATURE_COLUMNS if c.startswith(("user_views", "user_carts", "user_purchases_"))]
    + ["user_product_views_28d", "user_product_carts_28d", "product_views_1d", "product_views_7d"]
    + ["session_position"]
)


def _feature_dtype(name: str) -> pl.DataType:
    if name in CATEGORICAL_FEATURES:
        return pl.String()
    if name in _COUNT_FEATURES:
        return pl.Int64()
    if name in ("hour_of_day", "day_of_week"):
        return pl.Int8()
    return pl.Float64()


UTC_US: Final = pl.Datetime("us", "UTC")
KEY_SCHEMA: Final[dict[str, pl.DataType]] = {
    "example_id": pl.String(),
    "user_id": pl.String(),
    "product_id": pl.Int64(),
    "example_time": UTC_US,
    "event_date": pl.Date(),
    "label": pl.Int8(),
}
# The exact schema of `build_training_examples`' output, in column order.
EXAMPLE_SCHEMA: Final[dict[str, pl.DataType]] = {**KEY_SCHEMA, **{c: _feature_dtype(c) for c in FEATURE_COLUMNS}}

REQUIRED_EVENT_COLUMNS: Final = PRODUCER_COLUMNS


# --------------------------------------------------------------------------------- time helpers


def _us(delta: dt.timedelta) -> int:
    """A duration in whole microseconds (the timestamp resolution)."""
    return delta // dt.timedelta(microseconds=1)


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _require_aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value!r}")
    return value.astimezone(dt.UTC)


def _require_positive(delta: dt.timedelta, name: str) -> int:
    micros = _us(delta)
    if micros <= 0:
        raise ValueError(f"{name} must be positive, got {delta!r}")
    return micros


def _normalize_days(days: dt.date | Iterable[dt.date]) -> list[dt.date]:
    items = [days] if isinstance(days, dt.date) else list(days)
    out = []
    for day in items:
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
            raise TypeError(f"days must be datetime.date values, got {day!r}")
        out.append(day)
    return sorted(set(out))


# ------------------------------------------------------------------------------- label maturity


def label_cutoff(days: dt.date | Sequence[dt.date], horizon: dt.timedelta = DEFAULT_HORIZON) -> dt.datetime:
    """The time up to which events must be available before the labels of `days` are final.

    A view at the very end of a day can be labelled by a purchase up to ``horizon`` later, so
    a day's labels are mature at ``next midnight (UTC) + horizon``; for several days, the
    latest of their cutoffs.
    """
    _require_positive(horizon, "horizon")
    wanted = _normalize_days(days)
    if not wanted:
        raise ValueError("label_cutoff needs at least one day")
    return _day_start(wanted[-1]) + DAY + horizon


def labelled_days(
    available_until: dt.datetime,
    days: Iterable[dt.date],
    horizon: dt.timedelta = DEFAULT_HORIZON,
    *,
    allowed_lateness: dt.timedelta = dt.timedelta(0),
) -> list[dt.date]:
    """The days among `days` (sorted, deduplicated) whose labels are mature, given that events
    up to `available_until` (e.g. the latest event time seen) are available.

    A day is labelled when ``label_cutoff(day, horizon) <= available_until - allowed_lateness``;
    `allowed_lateness` leaves room for events that arrive after later ones.
    """
    seen = _require_aware(available_until, "available_until") - allowed_lateness
    return [day for day in _normalize_days(days) if label_cutoff(day, horizon) <= seen]


# ------------------------------------------------------------------------------------ the SQL

_VIEW: Final = "event_type = 'view'"


def _frame(partition: str, preceding_us: int, *, include_current: bool = False) -> str:
    end = "CURRENT ROW" if include_current else "1 PRECEDING"
    return f"(PARTITION BY {partition} ORDER BY ts RANGE BETWEEN {preceding_us} PRECEDING AND {end})"


def _window_sql(groups: Sequence[str], history_us: int, horizon_us: int | None) -> str:
    """One query over the relation `ev` (ts = epoch µs, target = rows whose features we want).

    Inner select: window aggregates for every row; outer select: derived features for the
    target rows. Groups: user, user_product, user_category, product, session, label.
    """
    win = {name: min(_us(delta), history_us) for name, delta in WINDOWS.items()}
    inner: list[str] = []
    outer: list[str] = []
    if "user" in groups:
        for wname, micros in win.items():
            for name, etype in _USER_EVENT_TYPES:
                col = f"user_{name}_{wname}"
                inner.append(
                    f"count(*) FILTER (WHERE event_type = '{etype}') OVER {_frame('user_id', micros)} AS {col}"
                )
                outer.append(col)
        inner.append(f"max(ts) OVER {_frame('user_id', history_us)} AS _user_prev_ts")
        outer += [
            "(ts - _user_prev_ts) / 1e6 AS user_seconds_since_prev_event",
            "user_purchases_28d::DOUBLE / NULLIF(user_views_28d, 0) AS user_purchase_rate_28d",
        ]
    if "user_product" in groups:
        up = "user_id, product_id"
        inner += [
            f"count(*) FILTER (WHERE {_VIEW}) OVER {_frame(up, win['28d'])} AS user_product_views_28d",
            f"count(*) FILTER (WHERE event_type = 'cart') OVER {_frame(up, win['28d'])} AS user_product_carts_28d",
            f"max(ts) FILTER (WHERE {_VIEW}) OVER {_frame(up, history_us)} AS _up_last_view_ts",
        ]
        outer += [
            "user_product_views_28d",
            "user_product_carts_28d",
            "(ts - _up_last_view_ts) / 1e6 AS user_product_seconds_since_last_view",
        ]
    if "user_category" in groups:
        inner += [
            f"count(*) FILTER (WHERE {_VIEW}) OVER {_frame('user_id, category', win['28d'])} AS _uc_views",
            f"count(*) FILTER (WHERE {_VIEW}) OVER {_frame('user_id', win['28d'])} AS _u_views",
        ]
        outer.append(
            "CASE WHEN category IS NULL THEN NULL ELSE _uc_views::DOUBLE / NULLIF(_u_views, 0) END"
            " AS user_category_view_share_28d"
        )
    if "product" in groups:
        # (not LEAST: DuckDB's LEAST skips NULLs, and a null price must stay null)
        cap = _MAX_PRICE_FOR_MEAN
        dec = f"TRY_CAST(CASE WHEN price > {cap} THEN {cap} ELSE price END AS DECIMAL(38, 6))"
        inner += [
            f"count(*) FILTER (WHERE {_VIEW}) OVER {_frame('product_id', win['1d'])} AS _p_views_1d",
            f"count(*) FILTER (WHERE {_VIEW}) OVER {_frame('product_id', win['7d'])} AS _p_views_7d",
            f"count(*) FILTER (WHERE event_type = 'purchase') OVER {_frame('product_id', win['7d'])} AS _p_purch_7d",
            f"sum({dec}) OVER {_frame('product_id', win['7d'])} AS _p_price_sum_7d",
            f"count({dec}) OVER {_frame('product_id', win['7d'])} AS _p_price_n_7d",
        ]
        known = "CASE WHEN product_id IS NULL THEN NULL ELSE"
        mean = "(_p_price_sum_7d::DOUBLE / NULLIF(_p_price_n_7d, 0))"
        outer += [
            f"{known} _p_views_1d END AS product_views_1d",
            f"{known} _p_views_7d END AS product_views_7d",
            f"{known} _p_purch_7d END AS product_purchases_7d",
            f"{known} (_p_purch_7d + {PRIOR_PURCHASES}) / (_p_views_7d + {PRIOR_VIEWS}) END"
            " AS product_conversion_rate_7d",
            f"{known} {mean} END AS product_mean_price_7d",
            "price",
            f"{known} price / NULLIF({mean}, 0) END AS price_relative_to_product_mean_7d",
        ]
    if "session" in groups:
        inner += [
            f"count(*) OVER {_frame('session_id', history_us)} AS _s_position",
            f"min(ts) OVER {_frame('session_id', history_us, include_current=True)} AS _s_start",
        ]
        outer += [
            "CASE WHEN session_id IS NULL THEN NULL ELSE _s_position END AS session_position",
            "CASE WHEN session_id IS NULL THEN NULL ELSE (ts - _s_start) / 1e6 END AS session_age_seconds",
        ]
    if "label" in groups:
        assert horizon_us is not None
        inner.append(
            "count(*) FILTER (WHERE event_type = 'purchase') OVER (PARTITION BY user_id, product_id ORDER BY ts"
            f" RANGE BETWEEN 1 FOLLOWING AND {horizon_us} FOLLOWING) AS _later_purchases"
        )
        outer.append("(_later_purchases > 0)::TINYINT AS label")
    inner_sql = ",\n    ".join(inner)
    outer_sql = ",\n  ".join(outer)
    return f"""
SELECT event_id, user_id, product_id, ts, category, brand,
  {outer_sql}
FROM (
  SELECT event_id, user_id, product_id, ts, category, brand, price, session_id, target,
    {inner_sql}
  FROM ev
) AS w
WHERE target
ORDER BY ts, event_id
"""


def _run(ev: pl.DataFrame, sql: str) -> pl.DataFrame:
    con = duckdb.connect()
    try:
        con.register("ev", ev)
        frame: pl.DataFrame = con.sql(sql).pl()
        return frame
    finally:
        con.close()


def _check_columns(events: pl.DataFrame) -> None:
    missing = [c for c in REQUIRED_EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack columns {missing}")


def _ev_frame(events: pl.LazyFrame, target: pl.Expr) -> pl.LazyFrame:
    return events.select(
        pl.col("event_id").cast(pl.String),
        pl.col("user_id").cast(pl.String),
        pl.col("timestamp").dt.epoch("us").alias("ts"),
        pl.col("event_type").cast(pl.String),
        pl.col("product_id").cast(pl.Int64),
        pl.col("category").cast(pl.String),
        pl.col("brand").cast(pl.String),
        pl.col("price").cast(pl.Float64),
        pl.col("session_id").cast(pl.String),
        target.alias("target"),
    )


def _with_times(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.from_epoch("ts", time_unit="us").dt.replace_time_zone("UTC").alias("example_time"))


# --------------------------------------------------------------------------- training examples


def build_training_examples(
    events: pl.DataFrame,
    *,
    days: Sequence[dt.date],
    horizon: dt.timedelta = DEFAULT_HORIZON,
    history: dt.timedelta = DEFAULT_HISTORY,
) -> pl.DataFrame:
    """One labelled example per view (user and product known) whose timestamp's UTC date is
    in `days`; schema :data:`EXAMPLE_SCHEMA`, sorted by (example_time, example_id).

    `events` must cover ``[first day - history, last day end + horizon]`` for exact features
    and labels (see :func:`labelled_days` for when labels are mature). Rows outside the
    needed ranges are ignored.
    """
    _check_columns(events)
    horizon_us = _require_positive(horizon, "horizon")
    history_us = _require_positive(history, "history")
    wanted = _normalize_days(days)
    if not wanted or events.is_empty():
        return pl.DataFrame(schema=EXAMPLE_SCHEMA)

    ts = pl.col("timestamp")
    needed = pl.any_horizontal(
        ts.is_between(_day_start(d) - history, _day_start(d) + DAY + horizon, closed="both") for d in wanted
    )
    is_example = (
        (pl.col("event_type") == "view")
        & pl.col("product_id").is_not_null()
        & pl.col("user_id").is_not_null()
        & ts.dt.date().is_in(wanted)
    )
    ev = _ev_frame(events.lazy().filter(needed), is_example).collect()
    groups = ("user", "user_product", "user_category", "product", "session", "label")
    raw = _run(ev, _window_sql(groups, history_us, horizon_us))
    return _finish_examples(raw)


def _finish_examples(raw: pl.DataFrame) -> pl.DataFrame:
    frame = _with_times(raw).with_columns(
        pl.col("example_time").dt.date().alias("event_date"),
        pl.col("example_time").dt.hour().alias("hour_of_day"),
        pl.col("example_time").dt.weekday().alias("day_of_week"),  # ISO: Monday = 1
        pl.col("event_id").alias("example_id"),
    )
    return frame.select(pl.col(name).cast(dtype) for name, dtype in EXAMPLE_SCHEMA.items())


# ----------------------------------------------------------------------------------- snapshots

USER_SNAPSHOT_SCHEMA: Final[dict[str, pl.DataType]] = {
    "as_of": UTC_US,
    "user_id": pl.String(),
    **{c: _feature_dtype(c) for c in USER_FEATURE_COLUMNS},
}
PRODUCT_SNAPSHOT_SCHEMA: Final[dict[str, pl.DataType]] = {
    "as_of": UTC_US,
    "product_id": pl.Int64(),
    "category": pl.String(),  # latest non-null value before as_of
    "brand": pl.String(),  # latest non-null value before as_of
    "last_price": pl.Float64(),  # latest non-null price before as_of
    "product_views_1d": pl.Int64(),
    "product_views_7d": pl.Int64(),
    "product_purchases_7d": pl.Int64(),
    "product_conversion_rate_7d": pl.Float64(),
    "product_mean_price_7d": pl.Float64(),
    "price_relative_to_product_mean_7d": pl.Float64(),  # last_price / product_mean_price_7d
}


def _snapshot_input(
    events: pl.DataFrame, as_of: dt.datetime, history: dt.timedelta, key: str
) -> tuple[pl.DataFrame, pl.DataFrame, dt.datetime]:
    """(events of the history window plus one probe row per key at as_of, past events, as_of)."""
    _check_columns(events)
    as_of = _require_aware(as_of, "as_of")
    _require_positive(history, "history")
    past = events.lazy().filter(pl.col("timestamp") < as_of)
    if key == "product_id":
        past = past.filter(pl.col("product_id").is_not_null())
    past_df = past.collect()
    window = _ev_frame(past_df.lazy().filter(pl.col("timestamp") >= as_of - history), pl.lit(False))
    probes = (
        past_df.lazy()
        .select(pl.col(key).unique())
        .with_columns(
            pl.lit(f"__probe__{key}").alias("event_id"),
            pl.lit(as_of, dtype=UTC_US).alias("timestamp"),
            pl.lit("__probe__").alias("event_type"),
            *(
                pl.lit(None).alias(c)
                for c in REQUIRED_EVENT_COLUMNS
                if c not in (key, "event_id", "event_type", "timestamp")
            ),
        )
    )
    ev = pl.concat([window, _ev_frame(probes.select(REQUIRED_EVENT_COLUMNS), pl.lit(True))]).collect()
    return ev, past_df, as_of


def user_features(events: pl.DataFrame, as_of: dt.datetime, *, history: dt.timedelta = DEFAULT_HISTORY) -> pl.DataFrame:
    """Snapshot of :data:`USER_FEATURE_COLUMNS` at `as_of` for every user with an event strictly
    before it: exactly what an example of that user at `as_of` would get. Sorted by user_id."""
    ev, _, as_of = _snapshot_input(events, as_of, history, "user_id")
    raw = _run(ev, _window_sql(("user",), _us(history), None))
    return (
        raw.with_columns(pl.lit(as_of, dtype=UTC_US).alias("as_of"))
        .select(pl.col(name).cast(dtype) for name, dtype in USER_SNAPSHOT_SCHEMA.items())
        .sort("user_id")
    )


def product_features(
    events: pl.DataFrame, as_of: dt.datetime, *, history: dt.timedelta = DEFAULT_HISTORY
) -> pl.DataFrame:
    """Snapshot of the product features at `as_of` for every product with an event strictly
    before it (schema :data:`PRODUCT_SNAPSHOT_SCHEMA`, sorted by product_id). Popularity,
    conversion and mean price are what an example at `as_of` would get; the price is the
    latest known one."""
    ev, past, as_of = _snapshot_input(events, as_of, history, "product_id")
    raw = _run(ev, _window_sql(("product",), _us(history), None)).drop("category", "brand", "price")
    latest = (
        past.lazy()
        .sort("timestamp", "event_id")
        .group_by("product_id")
        .agg(
            pl.col("category").drop_nulls().last(),
            pl.col("brand").drop_nulls().last(),
            pl.col("price").drop_nulls().last().alias("last_price"),
        )
        .collect()
    )
    return (
        raw.join(latest, on="product_id", how="left")
        .with_columns(
            pl.lit(as_of, dtype=UTC_US).alias("as_of"),
            (pl.col("last_price") / pl.col("product_mean_price_7d").replace(0.0, None)).alias(
                "price_relative_to_product_mean_7d"
            ),
        )
        .select(pl.col(name).cast(dtype) for name, dtype in PRODUCT_SNAPSHOT_SCHEMA.items())
        .sort("product_id")
    )


# ------------------------------------------------------------------------------------ sessions

SESSION_SCHEMA: Final[dict[str, pl.DataType]] = {
    "session_id": pl.String(),
    "user_id": pl.String(),  # the user of the session's earliest event
    "start": UTC_US,
    "end": UTC_US,
    "duration_s": pl.Float64(),
    "n_events": pl.Int64(),
    "n_views": pl.Int64(),
    "n_carts": pl.Int64(),
    "n_purchases": pl.Int64(),
    "converted": pl.Boolean(),  # at least one purchase
}


def sessions(events: pl.DataFrame) -> pl.DataFrame:
    """One row per non-null session_id (schema :data:`SESSION_SCHEMA`), sorted by start, session_id."""
    etype = pl.col("event_type")
    return (
        events.lazy()
        .filter(pl.col("session_id").is_not_null())
        .group_by("session_id")
        .agg(
            pl.col("user_id").sort_by("timestamp", "user_id").first(),
            pl.col("timestamp").min().alias("start"),
            pl.col("timestamp").max().alias("end"),
            pl.len().alias("n_events"),
            (etype == "view").sum().alias("n_views"),
            (etype == "cart").sum().alias("n_carts"),
            (etype == "purchase").sum().alias("n_purchases"),
        )
        .with_columns(
            ((pl.col("end") - pl.col("start")).dt.total_microseconds() / 1e6).alias("duration_s"),
            (pl.col("n_purchases") > 0).alias("converted"),
        )
        .select(pl.col(name).cast(dtype) for name, dtype in SESSION_SCHEMA.items())
        .sort("start", "session_id")
        .collect()
    )


# ------------------------------------------------------------------------------ feature summaries

QUANTILES: Final[dict[str, float]] = {
    "p01": 0.01,
    "p05": 0.05,
    "p10": 0.10,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p90": 0.90,
    "p95": 0.95,
    "p99": 0.99,
}
TOP_CATEGORIES: Final = 50

# One row per feature. Numeric rows leave n_distinct/top_values null; categorical rows leave
# the moments and quantiles null.
#   day          the examples' day (as passed; null when not given)
#   feature      column name; kind "numeric" | "categorical"
#   n_rows       rows summarized; count: non-null (and, for floats, non-NaN) values
#   null_share   1 - count / n_rows (null when n_rows = 0)
#   mean, std    std with ddof = 1 (null below 2 values)
#   min, max, p01..p99   quantiles with linear interpolation (NumPy's default)
#   n_distinct   distinct non-null categories
#   top_values   JSON list of {"value": str, "count": int}, the TOP_CATEGORIES most frequent
#                non-null categories by count desc, then value asc
SUMMARY_SCHEMA: Final[dict[str, pl.DataType]] = {
    "day": pl.Date(),
    "feature": pl.String(),
    "kind": pl.String(),
    "n_rows": pl.Int64(),
    "count": pl.Int64(),
    "null_share": pl.Float64(),
    "mean": pl.Float64(),
    "std": pl.Float64(),
    "min": pl.Float64(),
    **{name: pl.Float64() for name in QUANTILES},
    "max": pl.Float64(),
    "n_distinct": pl.Int64(),
    "top_values": pl.String(),
}
_NUMERIC_STATS: Final = ("count", "mean", "std", "min", *QUANTILES, "max")


def feature_summaries(
    examples: pl.DataFrame,
    columns: Sequence[str] = FEATURE_COLUMNS,
    *,
    categorical: Sequence[str] = CATEGORICAL_FEATURES,
    day: dt.date | None = None,
) -> pl.DataFrame:
    """Per-feature summary rows (schema :data:`SUMMARY_SCHEMA`, in the order of `columns`)
    that drift detection can read instead of rescanning the examples."""
    missing = [c for c in columns if c not in examples.columns]
    if missing:
        raise ValueError(f"examples lack columns {missing}")
    n_rows = examples.height
    numeric = [c for c in columns if c not in categorical]
    rows: dict[str, dict[str, object]] = {}
    if numeric:
        values = examples.lazy().select(_clean_numeric(examples, c) for c in numeric)
        exprs = []
        for c in numeric:
            col = pl.col(c)
            exprs += [
                col.count().alias(f"{c}\x00count"),
                col.mean().alias(f"{c}\x00mean"),
                col.std().alias(f"{c}\x00std"),
                col.min().alias(f"{c}\x00min"),
                col.max().alias(f"{c}\x00max"),
                *(col.quantile(q, "linear").alias(f"{c}\x00{name}") for name, q in QUANTILES.items()),
            ]
        stats = values.select(exprs).collect().row(0, named=True)
        for c in numeric:
            rows[c] = {"kind": "numeric", **{s: stats[f"{c}\x00{s}"] for s in _NUMERIC_STATS}}
    for c in columns:
        if c in categorical:
            rows[c] = {"kind": "categorical", **_categorical_stats(examples.get_column(c))}
    out = [
        {
            "day": day,
            "feature": c,
            "n_rows": n_rows,
            "null_share": None if n_rows == 0 else 1.0 - int(rows[c]["count"]) / n_rows,  # type: ignore[call-overload]
            **rows[c],
        }
        for c in columns
    ]
    return pl.DataFrame(out, schema=SUMMARY_SCHEMA) if out else pl.DataFrame(schema=SUMMARY_SCHEMA)


def _clean_numeric(examples: pl.DataFrame, column: str) -> pl.Expr:
    dtype = examples.schema[column]
    col = pl.col(column)
    if dtype == pl.Boolean:
        col = col.cast(pl.Int8)
    col = col.cast(pl.Float64)
    if dtype.is_float():
        col = col.fill_nan(None)
    return col.alias(column)


def _categorical_stats(series: pl.Series) -> dict[str, object]:
    values = series.cast(pl.String).drop_nulls()
    counts = values.value_counts(name="count").sort(["count", values.name], descending=[True, False])
    top = [{"value": v, "count": n} for v, n in counts.head(TOP_CATEGORIES).iter_rows()]
    return {"count": values.len(), "n_distinct": counts.height, "top_values": json.dumps(top, ensure_ascii=False)}
