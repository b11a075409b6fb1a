"""Seeded, realistic demo events for the recommendation engine's user-interaction stream.

The generator simulates a small shop: a product catalogue (category, brand, log-normal base
price, heavy-tailed popularity) and users with habits (heavy-tailed activity, preferred
categories, price sensitivity and budget). Each session picks a category from the user's
preferences, views a few products and runs each through a view → cart → remove/purchase
funnel whose odds depend on those habits and product features, so the purchase label is
learnable. Daily and weekly seasonality shape the volume; an optional drift gradually changes
prices, the category mix, funnel rates, session lengths and the purchase relationship (taste
matters less and users trade up: the price effect reverses, so a model trained before the drift
ranks worse), or with `drift_kind="concept"` the purchase relationship alone; an optional
corruption step injects a known number of bad records of documented kinds.

Everything is vectorized with NumPy / Polars (loops run over days, files or a handful of
categories only) and every random draw comes from a stream keyed by (seed, purpose, day), so
the same seed and options give byte-identical output and a day does not change when more
days are generated around it.

Pure logic: no Dagster import. The CLI lives in `dataplatform.lib.demo.cli`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import itertools
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal, NamedTuple, get_args

import numpy as np
import numpy.typing as npt
import polars as pl
from tqdm import tqdm

from dataplatform.lib.contract import EVENT_TYPES, PRODUCER_COLUMNS, UTC_DATETIME

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# ---------------------------------------------------------------------------------------------
# Public constants
# ---------------------------------------------------------------------------------------------

# The columns a generated file holds: what a producer sends.
EVENT_COLUMNS: Final[tuple[str, ...]] = PRODUCER_COLUMNS
# Bookkeeping columns of the generated frame (never written to files):
#   event_date  the day the record belongs to (its folder in history dumps), even when the
#               timestamp itself was corrupted;
#   corruption  the injected CorruptionKind, null for clean records;
#   raw_value   the text written instead of a typed value the column cannot hold
#               (bad_timestamp → timestamp text, bad_product_id → product_id text).
META_COLUMNS: Final[tuple[str, ...]] = ("event_date", "corruption", "raw_value")

OutputFormat = Literal["jsonl", "jsonl.gz", "csv", "csv.gz", "parquet"]
FORMATS: Final[tuple[str, ...]] = get_args(OutputFormat)
DriftKind = Literal["mixed", "concept"]
CONCEPT_OFFSET: Final = 1.0
DRIFT_KINDS: Final[tuple[str, ...]] = get_args(DriftKind)

# ISO-8601 UTC with milliseconds and an explicit offset, e.g. 2026-03-01T10:15:02.123+00:00.
TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.3f+00:00"


class CorruptionKind(StrEnum):
    """Kinds of bad record the generator injects, and how each one looks.

    ``missing_user_id``     user_id absent: key left out of the JSONL object, empty CSV cell,
                            null in Parquet and in the frame.
    ``empty_user_id``       user_id is "" (CSV writes a quoted ``""``, unlike a missing one).
    ``bad_timestamp``       timestamp is an unparseable string (e.g. ``0000-00-00 00:00:00``,
                            ``2026-02-30T12:00:00+00:00``); null in the frame, text in raw_value.
    ``future_timestamp``    timestamp 30 to 80 years after the real one (a clock error).
    ``negative_price``      price is the negated price (< 0).
    ``nan_price``           price is NaN: the JSON string ``"NaN"`` in JSONL, ``NaN`` in CSV and
                            a float NaN in Parquet and in the frame.
    ``unknown_event_type``  event_type outside the contract (``click``, ``wishlist``, ``VIEW`` ...).
    ``bad_product_id``      product_id is a non-numeric string (``SKU-1004856``, ``n/a`` ...);
                            null in the frame, text in raw_value.
    ``duplicate``           an extra, identical copy (same event_id) of a clean record of the
                            same day, re-emitted later in the stream. Only the copy is marked.
    ``malformed_json``      JSONL only: the record's line is cut off and is not valid JSON; the
                            frame keeps the record the line was meant to hold.
    """

    MISSING_USER_ID = "missing_user_id"
    EMPTY_USER_ID = "empty_user_id"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    NEGATIVE_PRICE = "negative_price"
    NAN_PRICE = "nan_price"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    BAD_PRODUCT_ID = "bad_product_id"
    DUPLICATE = "duplicate"
    MALFORMED_JSON = "malformed_json"


ALL_KINDS: Final[tuple[CorruptionKind, ...]] = tuple(CorruptionKind)
# Kinds a typed Parquet file cannot carry (a typed column has no room for a bad string).
_TEXT_ONLY_KINDS: Final = frozenset(
    {CorruptionKind.BAD_TIMESTAMP, CorruptionKind.BAD_PRODUCT_ID, CorruptionKind.MALFORMED_JSON}
)


def supported_kinds(fmt: OutputFormat) -> tuple[CorruptionKind, ...]:
    """The corruption kinds a file format can represent."""
    if fmt.startswith("jsonl"):
        return ALL_KINDS
    if fmt.startswith("csv"):
        return tuple(k for k in ALL_KINDS if k is not CorruptionKind.MALFORMED_JSON)
    return tuple(k for k in ALL_KINDS if k not in _TEXT_ONLY_KINDS)


# ---------------------------------------------------------------------------------------------
# Simulation constants (why these numbers: they give REES46-like proportions, about 92 % views,
# 4.5 % carts, 1 % removals and 2.5 % purchases, about 4 events per session, 80 % of sessions
# view only)
# ---------------------------------------------------------------------------------------------

# (category code, median price, log-sd of price, global popularity weight, brands by share)
_TAXONOMY: Final[tuple[tuple[str, float, float, float, tuple[str, ...]], ...]] = (
    ("electronics.smartphone", 320.0, 0.60, 0.20, ("samsung", "apple", "xiaomi", "huawei", "oppo")),
    ("electronics.audio.headphone", 60.0, 0.80, 0.07, ("sony", "jbl", "apple", "sennheiser", "xiaomi")),
    ("electronics.video.tv", 480.0, 0.60, 0.06, ("samsung", "lg", "sony", "philips", "tcl")),
    ("computers.notebook", 750.0, 0.50, 0.07, ("lenovo", "hp", "asus", "acer", "apple", "dell")),
    ("computers.peripherals.mouse", 25.0, 0.70, 0.04, ("logitech", "razer", "a4tech", "hp")),
    ("appliances.kitchen.refrigerators", 520.0, 0.50, 0.05, ("lg", "samsung", "bosch", "indesit", "beko")),
    ("appliances.kitchen.washer", 380.0, 0.50, 0.05, ("bosch", "lg", "samsung", "indesit", "beko")),
    ("appliances.environment.vacuum", 150.0, 0.70, 0.05, ("dyson", "samsung", "philips", "bosch", "xiaomi")),
    ("apparel.shoes", 70.0, 0.60, 0.08, ("nike", "adidas", "puma", "reebok", "asics")),
    ("apparel.shirt", 30.0, 0.50, 0.05, ("levis", "zara", "tommy", "lacoste")),
    ("furniture.living_room.sofa", 420.0, 0.60, 0.03, ("ikea", "hoff", "askona")),
    ("kids.toys", 20.0, 0.80, 0.06, ("lego", "hasbro", "mattel", "playmobil")),
    ("sport.bicycle", 350.0, 0.60, 0.03, ("stels", "merida", "trek", "giant")),
    ("beauty.skincare", 18.0, 0.70, 0.06, ("nivea", "loreal", "garnier", "vichy")),
    ("auto.accessories.videoregister", 90.0, 0.60, 0.02, ("xiaomi", "neoline", "playme")),
    ("construction.tools.drill", 110.0, 0.60, 0.03, ("bosch", "makita", "dewalt", "metabo")),
)

# Volume multipliers Monday..Sunday (mean 1, so events_per_day is the weekly average):
# a weekend uplift and a slightly busier Friday.
_WEEKDAY_SHAPE: Final = np.array([0.95, 0.93, 0.94, 0.96, 1.02, 1.12, 1.08])
_WEEKDAY_FACTORS: Final = _WEEKDAY_SHAPE / _WEEKDAY_SHAPE.mean()
_DAY_NOISE_SD: Final = 0.02  # day-to-day volume wobble around the weekday profile


def _hour_weights() -> FloatArray:
    """Share of sessions starting in each UTC hour: quiet night, lunch bump, evening peak ~20h."""
    hours = np.arange(24) + 0.5
    shape = 0.12 + 0.55 * np.exp(-(((hours - 12.5) / 3.0) ** 2)) + 1.00 * np.exp(-(((hours - 20.0) / 2.2) ** 2))
    weights: FloatArray = shape / shape.sum()
    return weights


_HOUR_WEIGHTS: Final = _hour_weights()

_MAX_PRODUCTS_PER_SESSION: Final = 25
_VIEW_REPEAT_MEAN: Final = 0.3  # extra views of the same product (Poisson mean)
_INTENT_NOISE_SD: Final = 0.6  # what no feature explains; keeps the label from being trivial
# Sessions browse categories their users like, so raw intent runs high; this centres it near 0.
_INTENT_OFFSET: Final = -1.4
# Median gap before an event of each type (view, cart, remove, purchase), seconds.
_GAP_MEDIAN_S: Final = np.array([35.0, 15.0, 25.0, 60.0])
_GAP_LOG_SD: Final = 0.8
_GAP_MIN_MS: Final = 200
_GAP_MAX_MS: Final = 15 * 60 * 1000
_DAY_MS: Final = 86_400_000

_VIEW, _CART, _REMOVE, _PURCHASE = range(4)  # indices into EVENT_TYPES

# Independent random streams: changing one option (say, corruption) leaves the others' draws alone.
_WORLD_STREAM: Final = 1
_DAY_STREAM: Final = 2
_CORRUPT_STREAM: Final = 3
_DRIFT_STREAM: Final = 4
_BATCH_STREAM: Final = 5
_BATCH_CORRUPT_STREAM: Final = 6
_VOLUME_STREAM: Final = 7

_BAD_TIMESTAMP_FIXED: Final = ("not-a-timestamp", "0000-00-00 00:00:00", "{{event_time}}")
_UNKNOWN_EVENT_TYPES: Final = ("click", "wishlist", "add_to_cart", "VIEW", "refund")
_FUTURE_YEARS: Final = (30, 80)


# ---------------------------------------------------------------------------------------------
# Configuration, report, results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """What to generate. Dates are UTC days; `corrupt_from`/`corrupt_to` are inclusive and
    default to the first/last day generated; drift ramps linearly from `drift_start` to full
    `drift_strength` over `drift_ramp_days` days (0 = a step)."""

    start: dt.date = dt.date(2026, 3, 1)
    days: int = 7
    users: int = 2_000
    products: int = 500
    events_per_day: int = 20_000
    seed: int = 42
    corruption_rate: float = 0.0
    corrupt_kinds: tuple[CorruptionKind, ...] = ALL_KINDS
    corrupt_from: dt.date | None = None
    corrupt_to: dt.date | None = None
    drift_start: dt.date | None = None
    drift_strength: float = 0.0
    drift_ramp_days: int = 7
    drift_kind: DriftKind = "mixed"

    def __post_init__(self) -> None:
        # Accept plain strings for kinds (CLI, tests) and drop repeats, keeping the order.
        kinds = tuple(dict.fromkeys(CorruptionKind(k) for k in self.corrupt_kinds))
        object.__setattr__(self, "corrupt_kinds", kinds)
        _require(self.days >= 1, "days must be >= 1")
        _require(self.users >= 1, "users must be >= 1")
        _require(self.products >= 1, "products must be >= 1")
        _require(self.events_per_day >= 1, "events_per_day must be >= 1")
        _require(self.seed >= 0, "seed must be >= 0")
        _require(0.0 <= self.corruption_rate <= 1.0, "corruption_rate must be in [0, 1]")
        _require(bool(kinds) or self.corruption_rate == 0, "corrupt_kinds is empty but corruption_rate > 0")
        _require(0.0 <= self.drift_strength <= 1.0, "drift_strength must be in [0, 1]")
        _require(self.drift_ramp_days >= 0, "drift_ramp_days must be >= 0")
        _require(self.drift_kind in DRIFT_KINDS, f"drift_kind must be one of {', '.join(DRIFT_KINDS)}")
        if self.corrupt_from and self.corrupt_to:
            _require(self.corrupt_from <= self.corrupt_to, "corrupt_from is after corrupt_to")

    @property
    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]

    def drift_level(self, day: dt.date) -> float:
        """Drift strength in effect on `day` (0 before drift_start)."""
        if self.drift_start is None or self.drift_strength == 0 or day < self.drift_start:
            return 0.0
        if self.drift_ramp_days == 0:
            return self.drift_strength
        elapsed = (day - self.drift_start).days + 1
        return self.drift_strength * min(1.0, elapsed / self.drift_ramp_days)

    def corrupts(self, day: dt.date) -> bool:
        """Whether records of `day` get corruption injected."""
        return (
            self.corruption_rate > 0
            and (self.corrupt_from is None or day >= self.corrupt_from)
            and (self.corrupt_to is None or day <= self.corrupt_to)
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (dates as ISO strings)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, dt.date):
                out[key] = value.isoformat()
        out["corrupt_kinds"] = [str(k) for k in self.corrupt_kinds]
        return out


def _rng(seed: int, stream: int, *parts: int) -> np.random.Generator:
    """The random stream for one purpose. The key goes in the spawn key with its length, because
    SeedSequence pads short entropy with zeros: [s, 2, d] and [s, 2, d, 0] would be one stream."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, len(parts), *parts)))


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class CorruptionReport:
    """Rows produced and corruptions injected, per day (the day a record belongs to).

    A duplicate adds a row, so `rows_by_day` includes the copies."""

    rows_by_day: dict[dt.date, int] = field(default_factory=dict)
    injected_by_day: dict[dt.date, dict[CorruptionKind, int]] = field(default_factory=dict)

    def add(self, day: dt.date, rows: int, injected: Mapping[CorruptionKind, int]) -> None:
        self.rows_by_day[day] = self.rows_by_day.get(day, 0) + rows
        per_day = self.injected_by_day.setdefault(day, {})
        for kind, count in injected.items():
            if count:
                per_day[kind] = per_day.get(kind, 0) + count

    def merge(self, other: CorruptionReport) -> None:
        for day, rows in other.rows_by_day.items():
            self.add(day, rows, other.injected_by_day.get(day, {}))

    @property
    def counts(self) -> dict[CorruptionKind, int]:
        """Injected records per kind over all days; every kind is present (0 if none)."""
        totals = dict.fromkeys(ALL_KINDS, 0)
        for per_day in self.injected_by_day.values():
            for kind, count in per_day.items():
                totals[kind] += count
        return totals

    @property
    def total_rows(self) -> int:
        return sum(self.rows_by_day.values())

    @property
    def total_injected(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "total_rows": self.total_rows,
            "total_injected": self.total_injected,
            "counts": {str(k): v for k, v in self.counts.items()},
            "rows_by_day": {d.isoformat(): n for d, n in sorted(self.rows_by_day.items())},
            "injected_by_day": {
                d.isoformat(): {str(k): v for k, v in sorted(per_day.items())}
                for d, per_day in sorted(self.injected_by_day.items())
                if per_day
            },
        }


class GeneratedEvents(NamedTuple):
    """A typed event frame (EVENT_COLUMNS + META_COLUMNS) and what was injected into it."""

    frame: pl.DataFrame
    report: CorruptionReport


class TrickleResult(NamedTuple):
    files: list[Path]
    report: CorruptionReport


# ---------------------------------------------------------------------------------------------
# The world: catalogue and users
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class World:
    """Catalogue and users, as frames for people and as arrays for the simulation.

    Products are ordered by category so each category's products form one contiguous block."""

    products: pl.DataFrame  # product_id, category, brand, base_price, popularity
    users: pl.DataFrame  # user_id, activity, price_sensitivity, budget, favourite_category
    category_median: FloatArray  # (C,) median base price per category
    product_category: IntArray  # (P,)
    product_price: FloatArray  # (P,) base price
    product_pop_z: FloatArray  # (P,) standardized log popularity
    product_key: FloatArray  # (P,) category index + cumulative popularity share within category
    user_activity_cum: FloatArray  # (U,) cumulative activity share, for sampling users
    user_pref: FloatArray  # (U, C) category preference, rows sum to 1
    user_sensitivity: FloatArray  # (U,) how strongly price above budget puts the user off
    user_budget: FloatArray  # (U,) log price level the user is comfortable with, vs category median
    drift_boost: FloatArray  # (C,) log-multiplier of each category's share at full drift

    @property
    def n_categories(self) -> int:
        return len(self.category_median)


def build_world(config: DemoConfig) -> World:
    """The catalogue and the users, fixed by the seed (the same for every day)."""
    rng = _rng(config.seed, _WORLD_STREAM)
    # Small catalogues use the most popular categories only, so every category has products.
    taxonomy = sorted(_TAXONOMY, key=lambda row: -row[3])[: min(len(_TAXONOMY), config.products)]
    products, product_category = _build_products(rng, taxonomy, config.products)
    n_cat = len(taxonomy)
    cat_weight = np.array([row[3] for row in taxonomy])
    cat_weight /= cat_weight.sum()
    users, pref = _build_users(rng, config.users, cat_weight, [row[0] for row in taxonomy])

    popularity = products["popularity"].to_numpy()
    log_pop = np.log(popularity)
    within = _cumulative_share_within(product_category, popularity, n_cat)
    activity = users["activity"].to_numpy()
    category_median = np.array([row[1] for row in taxonomy])
    drift_rng = _rng(config.seed, _DRIFT_STREAM)
    return World(
        products=products,
        users=users,
        category_median=category_median,
        product_category=product_category,
        product_price=products["base_price"].to_numpy(),
        product_pop_z=(log_pop - log_pop.mean()) / (log_pop.std() or 1.0),
        product_key=product_category + within,
        user_activity_cum=np.cumsum(activity) / activity.sum(),
        user_pref=pref,
        user_sensitivity=users["price_sensitivity"].to_numpy(),
        user_budget=users["budget"].to_numpy(),
        drift_boost=_drift_boost(drift_rng, category_median),
    )


def _build_products(
    rng: np.random.Generator,
    taxonomy: list[tuple[str, float, float, float, tuple[str, ...]]],
    n_products: int,
) -> tuple[pl.DataFrame, IntArray]:
    n_cat = len(taxonomy)
    weights = np.array([row[3] for row in taxonomy])
    # One product per category first, so no category is empty; the rest by category weight.
    extra = rng.choice(n_cat, size=n_products - n_cat, p=weights / weights.sum())
    category = np.sort(np.concatenate([np.arange(n_cat), extra]))
    counts = np.bincount(category, minlength=n_cat)

    brands: list[str] = []
    prices = np.empty(n_products)
    for c, (_, median, sigma, _, brand_names) in enumerate(taxonomy):  # loop over categories only
        block = slice(int(counts[:c].sum()), int(counts[: c + 1].sum()))
        share = 1.0 / np.arange(1, len(brand_names) + 1)  # Zipf-like brand shares
        brands.extend(rng.choice(brand_names, size=counts[c], p=share / share.sum()).tolist())
        prices[block] = rng.lognormal(math.log(median), sigma, size=counts[c])

    product_ids = np.sort(rng.choice(59_000_000, size=n_products, replace=False)) + 1_000_000
    rng.shuffle(product_ids)  # ids carry no hint of the category order
    frame = pl.DataFrame(
        {
            "product_id": product_ids.astype(np.int64),
            "category": pl.Series([row[0] for row in taxonomy]).gather(category),
            "brand": brands,
            "base_price": np.maximum(np.round(prices, 2), 0.99),
            "popularity": rng.lognormal(0.0, 1.0, size=n_products),
        }
    )
    return frame, category.astype(np.int64)


def _build_users(
    rng: np.random.Generator, n_users: int, cat_weight: FloatArray, cat_names: list[str]
) -> tuple[pl.DataFrame, FloatArray]:
    # A low Dirichlet concentration: most users care about two or three categories.
    pref = rng.dirichlet(3.0 * cat_weight, size=n_users) + 1e-4
    pref /= pref.sum(axis=1, keepdims=True)
    user_ids = rng.choice(900_000_000, size=n_users, replace=False) + 100_000_000
    frame = pl.DataFrame(
        {
            "user_id": user_ids.astype(np.int64),
            "activity": rng.lognormal(0.0, 1.1, size=n_users),  # heavy tail: a few very active users
            "price_sensitivity": rng.lognormal(0.0, 0.5, size=n_users),
            "budget": rng.normal(0.0, 0.35, size=n_users),
            "favourite_category": pl.Series(cat_names).gather(pref.argmax(axis=1)),
        }
    ).with_columns(pl.col("user_id").cast(pl.String))
    return frame, pref


def _cumulative_share_within(category: IntArray, weight: FloatArray, n_cat: int) -> FloatArray:
    """Per product, the cumulative share of its category's weight up to and including it."""
    cum = np.cumsum(weight)
    totals = np.bincount(category, weights=weight, minlength=n_cat)
    before = np.concatenate([[0.0], np.cumsum(totals)[:-1]])
    share = (cum - before[category]) / totals[category]
    # The last product of each category must hit exactly 1 so sampling never spills over.
    last = np.concatenate([np.flatnonzero(np.diff(category)), [len(category) - 1]])
    share[last] = 1.0
    shares: FloatArray = share
    return shares


def _drift_boost(rng: np.random.Generator, category_median: FloatArray) -> FloatArray:
    """Log-multipliers of category shares at full drift: three of the pricier categories trend up,
    two of the cheaper ones down (a premium shift, so it adds to the price rise, not against it)."""
    by_price = np.argsort(category_median)
    cheap, pricey = by_price[: len(by_price) // 2], by_price[len(by_price) // 2 :]
    boost = np.zeros(len(category_median))
    boost[rng.permutation(pricey)[:3]] = 1.2
    boost[rng.permutation(cheap)[:2]] = -1.0
    return boost


# ---------------------------------------------------------------------------------------------
# Behaviour and drift
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Behaviour:
    """Simulation parameters at a drift level `s` in [0, 1] (s = 0: the reference behaviour).

    `mixed` drift moves what users see and do (prices, category mix, session length, funnel rates)
    and why they buy; `concept` drift moves only why they buy (taste matters less, the price effect
    reverses): the features' distributions stay, the label's relation to them changes."""

    s: float
    category_tilt: float  # how far the category mix leans towards the drift's categories
    price_factor: float  # prices rise with drift
    mean_products: float  # longer sessions
    w_affinity: float  # category preference matters less ...
    w_price: float  # ... and the price effect reverses (users trade up), which a fixed model gets wrong
    w_popularity: float
    cart_bias: float  # more carts ...
    buy_bias: float  # ... but fewer of them bought

    @classmethod
    def at(cls, s: float, kind: DriftKind = "mixed") -> _Behaviour:
        seen = s if kind == "mixed" else 0.0  # the part of the drift the features can see
        return cls(
            s=s,
            category_tilt=seen,
            price_factor=1.0 + 0.35 * seen,
            mean_products=3.0 * (1.0 + 0.6 * seen),
            w_affinity=0.8 * (1.0 - 0.5 * s),
            w_price=1.3 * (1.0 - 1.5 * s),
            w_popularity=0.5 * (1.0 + 0.5 * seen),
            # Concept drift keeps the funnel's overall rates: the biases offset what the new weights do to
            # the average intent (measured: cart and purchase shares within 10% of the reference's).
            cart_bias=-3.5 + 0.5 * seen + CONCEPT_OFFSET * (s - seen),
            buy_bias=-0.3 - 0.6 * seen + CONCEPT_OFFSET * (s - seen),
        )


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def _intent(world: World, b: _Behaviour, user: IntArray, product: IntArray, noise: FloatArray) -> FloatArray:
    """Latent purchase intent of a user for a viewed product (log-odds scale).

    High when the category is one the user likes, the price is within the user's budget
    (weighted by their price sensitivity) and the product is popular. This is the
    relationship a purchase model can learn; drift re-weights it."""
    cat = world.product_category[product]
    affinity = np.clip(np.log(world.user_pref[user, cat] * world.n_categories), -3.0, 3.0)
    price = world.product_price[product] * b.price_factor
    over_budget = np.log(price / world.category_median[cat]) - world.user_budget[user]
    return (
        _INTENT_OFFSET
        + b.w_affinity * affinity
        - b.w_price * world.user_sensitivity[user] * over_budget
        + b.w_popularity * world.product_pop_z[product]
        + noise
    )


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sessions:
    """Events of consecutive sessions, ordered by (session, time); offsets from session start."""

    session: IntArray  # per event
    user: IntArray  # per event
    product: IntArray  # per event
    event_type: IntArray  # per event, index into EVENT_TYPES
    offset_ms: IntArray  # per event
    duration_ms: IntArray  # per session

    @property
    def n_sessions(self) -> int:
        return len(self.duration_ms)


def _simulate(world: World, rng: np.random.Generator, n_events: int, b: _Behaviour) -> _Sessions:
    """Exactly `n_events` events from whole sessions (the last one may be cut short, which
    keeps the funnel valid because a session's events are in funnel order)."""
    per_session = b.mean_products * (1.0 + _VIEW_REPEAT_MEAN) * 1.1
    n_sessions = math.ceil(n_events / per_session * 1.3) + 5
    while True:  # almost always one pass; draw more if the estimate fell short
        drawn = _draw_sessions(world, rng, n_sessions, b)
        if len(drawn.session) >= n_events:
            return _trim(drawn, n_events)
        n_sessions *= 2


def _draw_sessions(world: World, rng: np.random.Generator, n_sessions: int, b: _Behaviour) -> _Sessions:
    users = np.searchsorted(world.user_activity_cum, rng.random(n_sessions), side="right")
    users = np.minimum(users, len(world.user_activity_cum) - 1)
    category = _session_categories(world, rng, users, b)
    n_products = np.minimum(rng.geometric(1.0 / b.mean_products, n_sessions), _MAX_PRODUCTS_PER_SESSION)

    # One "slot" per product a session looks at.
    slot_session = np.repeat(np.arange(n_sessions), n_products)
    slot_pos = _rank_within(n_products)
    slot_user = users[slot_session]
    slot_product = np.searchsorted(
        world.product_key, category[slot_session] + rng.random(len(slot_session)), side="right"
    )
    slot_product = np.minimum(slot_product, len(world.product_key) - 1)
    n_views, carted, removed, purchased = _funnel(world, rng, b, slot_user, slot_product)

    ev_slot, ev_type = _funnel_events(n_views, carted, removed, purchased, slot_session, slot_pos)
    ev_session = slot_session[ev_slot]
    offset = _session_offsets(rng, ev_session, ev_type)
    counts = np.bincount(ev_session, minlength=n_sessions)
    return _Sessions(
        session=ev_session,
        user=slot_user[ev_slot],
        product=slot_product[ev_slot],
        event_type=ev_type,
        offset_ms=offset,
        duration_ms=offset[np.cumsum(counts) - 1],
    )


def _session_categories(world: World, rng: np.random.Generator, users: IntArray, b: _Behaviour) -> IntArray:
    """Each session browses one category, drawn from its user's preferences (tilted by drift)."""
    pref = world.user_pref[users] * np.exp(b.category_tilt * world.drift_boost)
    cum = np.cumsum(pref, axis=1)
    cum /= cum[:, -1:]
    picked = (cum < rng.random((len(users), 1))).sum(axis=1)
    categories: IntArray = np.minimum(picked, world.n_categories - 1)
    return categories


def _funnel(
    world: World, rng: np.random.Generator, b: _Behaviour, user: IntArray, product: IntArray
) -> tuple[IntArray, BoolArray, BoolArray, BoolArray]:
    """Per slot: number of views, and whether the product was carted, removed, purchased."""
    n = len(user)
    intent = _intent(world, b, user, product, rng.normal(0.0, _INTENT_NOISE_SD, n))
    n_views = 1 + rng.poisson(_VIEW_REPEAT_MEAN, n)
    carted = rng.random(n) < _sigmoid(intent + b.cart_bias)
    # Second thoughts are likelier when intent was weak.
    removed = carted & (rng.random(n) < _sigmoid(-0.7 - 0.5 * intent))
    purchased = carted & ~removed & (rng.random(n) < _sigmoid(0.8 * intent + b.buy_bias))
    return n_views, carted, removed, purchased


def _funnel_events(
    n_views: IntArray,
    carted: BoolArray,
    removed: BoolArray,
    purchased: BoolArray,
    slot_session: IntArray,
    slot_pos: IntArray,
) -> tuple[IntArray, IntArray]:
    """Events (slot, type) in session order: per product its views then its cart; at the end
    of the session the removals, then the purchases (checkout)."""
    browse = n_views + carted
    a_slot = np.repeat(np.arange(len(n_views)), browse)
    a_rank = _rank_within(browse)
    a_type = np.where(a_rank < n_views[a_slot], _VIEW, _CART)
    r_slot = np.flatnonzero(removed)
    p_slot = np.flatnonzero(purchased)

    slot = np.concatenate([a_slot, r_slot, p_slot])
    etype = np.concatenate([a_type, np.full(len(r_slot), _REMOVE), np.full(len(p_slot), _PURCHASE)])
    phase = np.concatenate([np.zeros(len(a_slot)), np.ones(len(r_slot)), np.full(len(p_slot), 2)])
    rank = np.concatenate([a_rank, np.zeros(len(r_slot) + len(p_slot), dtype=np.int64)])
    order = np.lexsort((rank, slot_pos[slot], phase, slot_session[slot]))
    return slot[order], etype[order].astype(np.int64)


def _rank_within(sizes: IntArray) -> IntArray:
    """0..size-1 for each group of consecutive items, e.g. sizes [2, 3] → [0, 1, 0, 1, 2]."""
    starts = np.cumsum(sizes) - sizes
    return np.arange(int(sizes.sum())) - np.repeat(starts, sizes)


def _session_offsets(rng: np.random.Generator, session: IntArray, event_type: IntArray) -> IntArray:
    """Milliseconds since session start; gaps are log-normal, typical for their event type."""
    median = _GAP_MEDIAN_S[event_type] * 1000.0
    gap = np.clip(median * np.exp(rng.normal(0.0, _GAP_LOG_SD, len(session))), _GAP_MIN_MS, _GAP_MAX_MS)
    gap = gap.astype(np.int64)
    first = np.concatenate([[True], session[1:] != session[:-1]])
    gap[first] = 0
    cum = np.cumsum(gap)
    counts = np.bincount(session)
    offsets: IntArray = cum - np.repeat(cum[first], counts[counts > 0])
    return offsets


def _trim(s: _Sessions, n_events: int) -> _Sessions:
    n_sessions = int(s.session[n_events - 1]) + 1
    offset = s.offset_ms[:n_events]
    counts = np.bincount(s.session[:n_events], minlength=n_sessions)
    return _Sessions(
        session=s.session[:n_events],
        user=s.user[:n_events],
        product=s.product[:n_events],
        event_type=s.event_type[:n_events],
        offset_ms=offset,
        duration_ms=offset[np.cumsum(counts) - 1],
    )


# ---------------------------------------------------------------------------------------------
# Placing sessions in time
# ---------------------------------------------------------------------------------------------


def _place_in_day(rng: np.random.Generator, day: dt.date, s: _Sessions) -> IntArray:
    """Epoch milliseconds of each event, sessions starting by the hour-of-day profile and
    ending before midnight (so a day's folder holds only that day's clean events)."""
    hours = rng.choice(24, size=s.n_sessions, p=_HOUR_WEIGHTS)
    start = hours * 3_600_000 + rng.integers(0, 3_600_000, s.n_sessions)
    start = np.clip(start, 0, np.maximum(_DAY_MS - 1 - s.duration_ms, 0))
    midnight = _epoch_ms(dt.datetime.combine(day, dt.time(), dt.UTC))
    times: IntArray = midnight + start[s.session] + s.offset_ms
    return times


def _place_before(rng: np.random.Generator, end: dt.datetime, window: dt.timedelta, s: _Sessions) -> IntArray:
    """Epoch milliseconds of each event, every session ending within `window` before `end`."""
    window_ms = max(int(window.total_seconds() * 1000), 1)
    start = _epoch_ms(end) - s.duration_ms - rng.integers(0, window_ms, s.n_sessions)
    return start[s.session] + s.offset_ms


def _epoch_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


# ---------------------------------------------------------------------------------------------
# Assembling the frame
# ---------------------------------------------------------------------------------------------


def _uuid_strings(rng: np.random.Generator, n: int) -> pl.Series:
    """`n` random UUID-shaped ids (8-4-4-4-12 hex), drawn from the seeded stream."""
    hex32 = np.frombuffer(rng.bytes(16 * n).hex().encode("ascii"), dtype="S32").astype("U32")
    parts = [(0, 8), (8, 4), (12, 4), (16, 4), (20, 12)]
    return (
        pl.DataFrame({"h": pl.Series(hex32, dtype=pl.String)})
        .select(pl.concat_str([pl.col("h").str.slice(a, width) for a, width in parts], separator="-"))
        .to_series()
    )


def _assemble(world: World, rng: np.random.Generator, s: _Sessions, ts_ms: IntArray, b: _Behaviour) -> pl.DataFrame:
    """The typed frame of clean events, in time order."""
    order = np.argsort(ts_ms, kind="stable")  # concurrent sessions interleave
    session_ids = _uuid_strings(rng, s.n_sessions)
    product = s.product[order]
    products = world.products
    frame = pl.DataFrame(
        {
            "event_id": _uuid_strings(rng, len(order)),
            "user_id": world.users["user_id"].gather(s.user[order]),
            "timestamp": pl.from_epoch(pl.Series(ts_ms[order]), time_unit="ms"),
            "event_type": pl.Series(EVENT_TYPES).gather(s.event_type[order]),
            "product_id": products["product_id"].gather(product),
            "category": products["category"].gather(product),
            "brand": products["brand"].gather(product),
            "price": np.round(world.product_price[product] * b.price_factor, 2),
            "session_id": session_ids.gather(s.session[order]),
        }
    )
    return frame.with_columns(
        pl.col("timestamp").dt.replace_time_zone("UTC").dt.cast_time_unit("us"),
    ).with_columns(
        pl.col("timestamp").dt.date().alias("event_date"),
        pl.lit(None, dtype=pl.String).alias("corruption"),
        pl.lit(None, dtype=pl.String).alias("raw_value"),
    )


_CORRUPTION_DTYPE: Final = pl.Enum([str(k) for k in ALL_KINDS])


def _finish(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        *EVENT_COLUMNS[:2],
        pl.col("timestamp").cast(UTC_DATETIME),
        *EVENT_COLUMNS[3:],
        "event_date",
        pl.col("corruption").cast(_CORRUPTION_DTYPE),
        "raw_value",
    )


# ---------------------------------------------------------------------------------------------
# Corruption
# ---------------------------------------------------------------------------------------------


def _inject(
    frame: pl.DataFrame, rng: np.random.Generator, rate: float, kinds: tuple[CorruptionKind, ...]
) -> tuple[pl.DataFrame, dict[CorruptionKind, int]]:
    """Corrupt rate × rows records, spread evenly over `kinds`. The count is rounded up or down
    at random (by the fraction), so small trickle batches still get their share on average."""
    n = frame.height
    expected = rate * n
    n_bad = min(n, int(expected) + int(rng.random() < expected - int(expected)))
    rows = rng.choice(n, size=n_bad, replace=False)
    kind_of_row = (rng.permutation(n_bad) + rng.integers(len(kinds))) % len(kinds)

    labels = pl.Series([str(k) for k in kinds] + [None], dtype=pl.String)
    code = np.full(n, len(kinds), dtype=np.int64)  # len(kinds) → null label (clean)
    code[rows] = kind_of_row
    dup_code = kinds.index(CorruptionKind.DUPLICATE) if CorruptionKind.DUPLICATE in kinds else -1
    dup_source = np.flatnonzero(code == dup_code)
    code[dup_source] = len(kinds)  # the source stays clean; its later copy carries the label

    frame = frame.with_columns(labels.gather(code).alias("corruption"))
    frame = _corrupt_values(frame, rng)
    frame = _append_duplicates(frame, rng, dup_source)

    injected = dict.fromkeys(kinds, 0)
    for kind, count in frame["corruption"].drop_nulls().value_counts().iter_rows():
        injected[CorruptionKind(kind)] = count
    return frame, injected


def _corrupt_values(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Rewrite the fields of the rows labelled in `corruption` (duplicates are done apart)."""
    n = frame.height
    k = pl.col("corruption")
    K = CorruptionKind
    frame = frame.with_columns(
        pl.Series("_pick", rng.integers(0, 1 << 30, n)),
        pl.Series("_future_days", rng.integers(_FUTURE_YEARS[0] * 365, _FUTURE_YEARS[1] * 365, n)),
    )
    return frame.with_columns(
        pl.when(k == K.MISSING_USER_ID)
        .then(None)
        .when(k == K.EMPTY_USER_ID)
        .then(pl.lit(""))
        .otherwise(pl.col("user_id"))
        .alias("user_id"),
        pl.when(k == K.BAD_TIMESTAMP)
        .then(None)
        .when(k == K.FUTURE_TIMESTAMP)
        .then(pl.col("timestamp") + pl.duration(days=pl.col("_future_days")))
        .otherwise(pl.col("timestamp"))
        .alias("timestamp"),
        pl.when(k == K.UNKNOWN_EVENT_TYPE)
        .then(_pick(_UNKNOWN_EVENT_TYPES))
        .otherwise(pl.col("event_type"))
        .alias("event_type"),
        pl.when(k == K.BAD_PRODUCT_ID).then(None).otherwise(pl.col("product_id")).alias("product_id"),
        pl.when(k == K.NEGATIVE_PRICE)
        .then(-pl.col("price"))
        .when(k == K.NAN_PRICE)
        .then(float("nan"))
        .otherwise(pl.col("price"))
        .alias("price"),
        pl.when(k == K.BAD_TIMESTAMP)
        .then(_bad_timestamp_text())
        .when(k == K.BAD_PRODUCT_ID)
        .then(_bad_product_id_text())
        .otherwise(pl.col("raw_value"))
        .alias("raw_value"),
    ).drop("_pick", "_future_days")


def _pick(options: Iterable[str | pl.Expr]) -> pl.Expr:
    """One of `options` per row, chosen by the row's random `_pick` column."""
    exprs = [pl.lit(o) if isinstance(o, str) else o for o in options]
    choice = pl.col("_pick") % len(exprs)
    expr = exprs[-1]
    for i, option in enumerate(exprs[:-1]):  # loop over a handful of options, not rows
        expr = pl.when(choice == i).then(option).otherwise(expr)
    return expr


def _bad_timestamp_text() -> pl.Expr:
    """Unparseable timestamps seen in the wild: placeholders, zero dates, impossible values."""
    day = pl.col("event_date").dt.strftime("%Y-%m-%d")
    year = pl.col("event_date").dt.strftime("%Y")
    return _pick(
        [
            *_BAD_TIMESTAMP_FIXED,
            pl.concat_str([day, pl.lit("T25:61:00+00:00")]),
            pl.concat_str([year, pl.lit("-02-30T12:00:00+00:00")]),
        ]
    )


def _bad_product_id_text() -> pl.Expr:
    """Non-numeric product ids: SKU codes, suffixed ids, placeholders."""
    pid = pl.col("product_id").cast(pl.String)
    return _pick(
        [
            pl.concat_str([pl.lit("SKU-"), pid]),
            pl.concat_str([pid, pl.lit("-A")]),
            pl.concat_str([pl.lit("#"), pid]),
            "n/a",
        ]
    )


def _append_duplicates(frame: pl.DataFrame, rng: np.random.Generator, source: IntArray) -> pl.DataFrame:
    """Re-emit the `source` rows (same event_id), each at a random later place in the stream."""
    if len(source) == 0:
        return frame
    n = frame.height
    position = np.arange(n, dtype=np.float64)
    later = source + 0.5 + rng.random(len(source)) * (n - 1 - source)
    copies = frame[source].with_columns(pl.lit(str(CorruptionKind.DUPLICATE)).alias("corruption"))
    return (
        pl.concat([frame, copies])
        .with_columns(pl.Series("_position", np.concatenate([position, later])))
        .sort("_position", maintain_order=True)
        .drop("_position")
    )


# ---------------------------------------------------------------------------------------------
# Public generation API
# ---------------------------------------------------------------------------------------------


def day_volume(config: DemoConfig, day: dt.date) -> int:
    """Number of (clean) events generated for `day`: the weekly average scaled by the
    weekday profile, with a small seeded day-to-day wobble."""
    rng = _rng(config.seed, _VOLUME_STREAM, day.toordinal())
    factor = _WEEKDAY_FACTORS[day.weekday()] * math.exp(rng.normal(0.0, _DAY_NOISE_SD))
    return max(1, round(config.events_per_day * float(factor)))


def generate_day(config: DemoConfig, world: World, day: dt.date) -> GeneratedEvents:
    """One day of events (with corruption if the day is in the corruption range)."""
    rng = _rng(config.seed, _DAY_STREAM, day.toordinal())
    b = _Behaviour.at(config.drift_level(day), config.drift_kind)
    sessions = _simulate(world, rng, day_volume(config, day), b)
    frame = _assemble(world, rng, sessions, _place_in_day(rng, day, sessions), b)
    return _corrupt_and_report(config, frame, day, _rng(config.seed, _CORRUPT_STREAM, day.toordinal()))


def generate_events(config: DemoConfig, *, world: World | None = None, progress: bool = False) -> GeneratedEvents:
    """All days of `config`: the typed frame (EVENT_COLUMNS + META_COLUMNS, ordered by day and
    time; timestamp is a UTC datetime) and the report of injected corruptions."""
    world = world or build_world(config)
    frames: list[pl.DataFrame] = []
    report = CorruptionReport()
    for day in tqdm(config.dates, desc="generating", unit="day", disable=not progress):
        day_events = generate_day(config, world, day)
        frames.append(day_events.frame)
        report.merge(day_events.report)
    return GeneratedEvents(pl.concat(frames), report)


def generate_batch(
    config: DemoConfig,
    world: World,
    *,
    end: dt.datetime,
    n_events: int,
    window: dt.timedelta = dt.timedelta(minutes=1),
    sequence: int = 0,
) -> GeneratedEvents:
    """A live micro-batch: `n_events` events from sessions that ended within `window` before
    `end` (so timestamps are near "now"). Drift and corruption follow `end`'s date. The random
    stream is keyed by `end` and `sequence`, so a restarted stream does not repeat event ids."""
    _require(n_events >= 1, "n_events must be >= 1")
    end = end.astimezone(dt.UTC)
    key = (int(end.timestamp() * 1_000_000), sequence)
    rng = _rng(config.seed, _BATCH_STREAM, *key)
    b = _Behaviour.at(config.drift_level(end.date()), config.drift_kind)
    sessions = _simulate(world, rng, n_events, b)
    frame = _assemble(world, rng, sessions, _place_before(rng, end, window, sessions), b)
    return _corrupt_and_report(config, frame, end.date(), _rng(config.seed, _BATCH_CORRUPT_STREAM, *key))


def _corrupt_and_report(
    config: DemoConfig, frame: pl.DataFrame, day: dt.date, rng: np.random.Generator
) -> GeneratedEvents:
    injected: dict[CorruptionKind, int] = {}
    if config.corrupts(day):
        frame, injected = _inject(frame, rng, config.corruption_rate, config.corrupt_kinds)
    report = CorruptionReport()
    report.add(day, frame.height, injected)
    return GeneratedEvents(_finish(frame), report)


# ---------------------------------------------------------------------------------------------
# Encoding and writing
# ---------------------------------------------------------------------------------------------


def _json_field(name: str, value: pl.Expr) -> pl.Expr:
    """`"name":<value as JSON>`; Polars does the escaping and number formatting."""
    return pl.struct(value.alias(name)).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}")


def _timestamp_text() -> pl.Expr:
    return (
        pl.when(pl.col("corruption") == CorruptionKind.BAD_TIMESTAMP)
        .then(pl.col("raw_value"))
        .otherwise(pl.col("timestamp").dt.strftime(TIMESTAMP_FORMAT))
    )


def _product_id_text() -> pl.Expr:
    return (
        pl.when(pl.col("corruption") == CorruptionKind.BAD_PRODUCT_ID)
        .then(pl.col("raw_value"))
        .otherwise(pl.col("product_id").cast(pl.String))
    )


def json_lines(frame: pl.DataFrame) -> pl.Series:
    """One JSON object per record (compact, contract key order), corruptions rendered as
    documented in CorruptionKind."""
    k = pl.col("corruption")
    K = CorruptionKind
    fragments = [
        _json_field("event_id", pl.col("event_id")),
        pl.when(k == K.MISSING_USER_ID).then(None).otherwise(_json_field("user_id", pl.col("user_id"))),
        _json_field("timestamp", _timestamp_text()),
        _json_field("event_type", pl.col("event_type")),
        pl.when(k == K.BAD_PRODUCT_ID)
        .then(_json_field("product_id", pl.col("raw_value")))
        .otherwise(_json_field("product_id", pl.col("product_id"))),
        _json_field("category", pl.col("category")),
        _json_field("brand", pl.col("brand")),
        pl.when(k == K.NAN_PRICE).then(pl.lit('"price":"NaN"')).otherwise(_json_field("price", pl.col("price"))),
        _json_field("session_id", pl.col("session_id")),
    ]
    line = pl.concat_str([pl.lit("{"), pl.concat_str(fragments, separator=",", ignore_nulls=True), pl.lit("}")])
    # A cut-off line, as left by a producer that died mid-write: never valid JSON.
    broken = line.str.slice(0, line.str.len_chars() * 2 // 3)
    return frame.select(pl.when(k == K.MALFORMED_JSON).then(broken).otherwise(line).alias("line")).to_series()


def _csv_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """All-text view for CSV: ISO timestamps, bad strings in place, NaN as "NaN"."""
    return frame.select(
        "event_id",
        "user_id",
        _timestamp_text().alias("timestamp"),
        "event_type",
        _product_id_text().alias("product_id"),
        "category",
        "brand",
        pl.col("price").cast(pl.String),
        "session_id",
    )


def _check_supported(frame: pl.DataFrame, fmt: OutputFormat) -> None:
    present = {CorruptionKind(k) for k in frame["corruption"].drop_nulls().unique().to_list()}
    unsupported = present - set(supported_kinds(fmt))
    if unsupported:
        names = ", ".join(sorted(unsupported))
        raise ValueError(f"format {fmt!r} cannot represent corruption kinds: {names}")


def encode_events(frame: pl.DataFrame, fmt: OutputFormat) -> bytes:
    """The bytes of one file holding `frame` in format `fmt` (deterministic: gzip without mtime)."""
    _require(fmt in FORMATS, f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    _check_supported(frame, fmt)
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.select(EVENT_COLUMNS).write_parquet(buffer, compression="zstd")
        return buffer.getvalue()
    if fmt.startswith("jsonl"):
        lines = json_lines(frame)
        data = (lines.str.join("\n").item() + "\n" if len(lines) else "").encode("utf-8")
    else:
        data = _csv_frame(frame).write_csv().encode("utf-8")
    return gzip.compress(data, compresslevel=6, mtime=0) if fmt.endswith(".gz") else data


def format_of(path: Path) -> OutputFormat:
    """The output format named by a file's extension."""
    for fmt in sorted(get_args(OutputFormat), key=len, reverse=True):
        if path.name.endswith("." + fmt):
            chosen: OutputFormat = fmt
            return chosen
    raise ValueError(f"cannot tell the format of {path.name}; expected one of {', '.join(FORMATS)}")


def write_atomic(path: Path, data: bytes) -> Path:
    """Write to a dot-named temp file in the same folder, then rename: a watcher never sees a
    partial file, and the rename is atomic because it stays on one file system."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the renamed file must not turn up empty after a crash
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_events_file(frame: pl.DataFrame, path: Path, fmt: OutputFormat | None = None) -> Path:
    """Write `frame` atomically to `path` (format from the extension unless given)."""
    return write_atomic(path, encode_events(frame, fmt or format_of(path)))


def write_history(
    frame: pl.DataFrame,
    out: Path,
    *,
    fmt: OutputFormat = "jsonl.gz",
    files_per_day: int = 1,
    progress: bool = False,
) -> list[Path]:
    """History dump for the batch path: `<out>/event_date=YYYY-MM-DD/events-NNNN.<fmt>`, the
    day's records split in stream order over `files_per_day` files. Older `events-NNNN.*` files
    in a written day folder are removed so a re-run leaves exactly what it wrote."""
    _require(files_per_day >= 1, "files_per_day must be >= 1")
    _require(fmt in FORMATS, f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    _check_supported(frame, fmt)
    written: list[Path] = []
    days = frame.partition_by("event_date", maintain_order=True, as_dict=True)
    for (day,), day_frame in tqdm(days.items(), desc="writing", unit="day", disable=not progress):
        folder = out / f"event_date={day.isoformat()}"
        paths = [
            write_events_file(chunk, folder / f"events-{i:04d}.{fmt}", fmt)
            for i, chunk in enumerate(_chunks(day_frame, files_per_day))
        ]
        for stale in set(folder.glob("events-[0-9][0-9][0-9][0-9].*")) - set(paths):
            stale.unlink()
        written.extend(paths)
    return written


def _chunks(frame: pl.DataFrame, parts: int) -> list[pl.DataFrame]:
    parts = max(1, min(parts, frame.height))
    bounds = np.linspace(0, frame.height, parts + 1).round().astype(int)
    return [frame[int(a) : int(b)] for a, b in itertools.pairwise(bounds)]


def trickle_file_name(moment: dt.datetime, sequence: int, fmt: OutputFormat) -> str:
    """Unique, lexically sortable name: events-<UTC stamp to the microsecond>-<sequence>.<fmt>."""
    stamp = moment.astimezone(dt.UTC).strftime(_TRICKLE_STAMP)
    return f"events-{stamp}-{sequence:06d}.{fmt}"


_TRICKLE_STAMP: Final = "%Y%m%dT%H%M%S%fZ"
_TRICKLE_NAME: Final = re.compile(r"events-(\d{8}T\d{12}Z)-\d{6}\.")
_MAX_CATCH_UP: Final = dt.timedelta(days=1)  # a stream restarted after a longer pause skips the rest


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _corrupt_time() -> pl.Expr:
    return pl.col("corruption").is_in([str(CorruptionKind.BAD_TIMESTAMP), str(CorruptionKind.FUTURE_TIMESTAMP)])


class LiveDays:
    """The live stream of the history's world: each day is `generate_day`'s day (same users, products,
    prices, volume, hour-of-day profile, corruption and drift), sent as its timestamps come due.

    A record is due at its timestamp; a record whose timestamp was corrupted (unparseable or in the
    future) at the timestamp of the record before it in the day's time order."""

    def __init__(self, config: DemoConfig, world: World | None = None) -> None:
        self.config = config
        self.world = world or build_world(config)
        self._days: dict[dt.date, pl.DataFrame] = {}

    def _day(self, day: dt.date) -> pl.DataFrame:
        if day not in self._days:
            frame = generate_day(self.config, self.world, day).frame
            due = pl.when(_corrupt_time()).then(None).otherwise(pl.col("timestamp"))
            self._days[day] = frame.with_columns(due.forward_fill().backward_fill().alias("_due"))
        return self._days[day]

    def between(self, start: dt.datetime, end: dt.datetime) -> GeneratedEvents:
        """The records due in (start, end], in the days' order."""
        start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
        _require(start < end, "start must be before end")
        days = [start.date() + dt.timedelta(days=i) for i in range((end.date() - start.date()).days + 1)]
        for old in [d for d in self._days if d < start.date()]:
            del self._days[old]  # days already sent are not needed again
        report = CorruptionReport()
        frames = []
        for day in days:  # one or two days per call, more only when catching up
            part = self._day(day).filter(pl.col("_due") > start, pl.col("_due") <= end).drop("_due")
            counts = part["corruption"].drop_nulls().value_counts().iter_rows()
            report.add(day, part.height, {CorruptionKind(kind): n for kind, n in counts})
            frames.append(part)
        return GeneratedEvents(pl.concat(frames), report)


def resume_point(out: Path, now: dt.datetime) -> dt.datetime:
    """Where a live stream into `out` starts: after the newest trickle file there, at most a day back
    (a restart neither repeats records nor skips a short pause), else at today's midnight (UTC), so
    today is whole, as the history's days are."""
    stamps = [
        dt.datetime.strptime(match.group(1), _TRICKLE_STAMP).replace(tzinfo=dt.UTC)
        for path in (out.iterdir() if out.is_dir() else [])  # one entry per file, not per record
        if (match := _TRICKLE_NAME.match(path.name))
    ]
    now = now.astimezone(dt.UTC)
    midnight = dt.datetime.combine(now.date(), dt.time(), dt.UTC)
    return max(max(stamps), now - _MAX_CATCH_UP) if stamps else midnight


def trickle(
    config: DemoConfig,
    out: Path,
    *,
    events_per_file: int | None = None,
    interval: float = 5.0,
    files: int | None = None,
    fmt: OutputFormat = "jsonl",
    stop: threading.Event | None = None,
    clock: Callable[[], dt.datetime] = _utc_now,
    world: World | None = None,
    progress: bool = False,
) -> TrickleResult:
    """Drop live micro-files into a landing folder every `interval` seconds, `files` times or until
    `stop` is set (the file being written is finished first). Files appear atomically (dot-named
    temp file + os.replace).

    By default each file holds the records of the history's world that came due since the last one
    (`LiveDays`): the history's volume per day, hour-of-day profile and corruption, timestamped at the
    wall-clock time; no file when none came due. The first file catches up from `resume_point`.
    With `events_per_file`, every file holds that many fresh events whatever the hour (a load test:
    not the history's volume, so the monitoring sees it as drift)."""
    _require(events_per_file is None or events_per_file >= 1, "events_per_file must be >= 1")
    _require(interval >= 0, "interval must be >= 0")
    _require(files is None or files >= 1, "files must be >= 1")
    _require(fmt in FORMATS, f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    bad_kinds = set(config.corrupt_kinds) - set(supported_kinds(fmt)) if config.corruption_rate else set()
    _require(not bad_kinds, f"format {fmt!r} cannot represent corruption kinds: {', '.join(sorted(bad_kinds))}")
    world = world or build_world(config)
    stop = stop or threading.Event()
    live = LiveDays(config, world)
    sent: dt.datetime | None = None  # records due up to here are sent
    # Fixed-size files: sessions end within the last interval (at least a minute, so tiny intervals still spread).
    window = dt.timedelta(seconds=max(interval, 60.0))
    result = TrickleResult([], CorruptionReport())
    with tqdm(total=files, desc="trickle", unit="file", disable=not progress) as bar:
        while not stop.is_set() and (files is None or len(result.files) < files):
            seq = len(result.files)
            now = clock()
            if events_per_file is None:
                sent = sent or resume_point(out, now)
                batch = live.between(sent, now) if now > sent else None
                sent = max(sent, now)
            else:
                batch = generate_batch(config, world, end=now, n_events=events_per_file, window=window, sequence=seq)
            if batch is not None and batch.frame.height:
                result.files.append(write_events_file(batch.frame, out / trickle_file_name(now, seq, fmt), fmt))
                result.report.merge(batch.report)
                bar.update()
            if files is None or len(result.files) < files:
                stop.wait(interval)
    return result
