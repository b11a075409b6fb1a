"""Plausibility: records that pass the contract but not what history says about their entity.

The contract checks each record alone; a producer that switches prices to cents, floods the
stream with one placeholder user, or sends purchases of products the user never carted breaks no
field rule. The rules here judge a record against bands learned from history, with the robust
approach of the other learned thresholds (median and MAD, on a log scale for positive skewed
figures), never a fixed limit per field:

* ``price:implausible``: the log price is further than ``k`` robust sd from the product's median
  log price. A product's spread is never taken below the spread pooled over all products (a
  product seen at one price would otherwise flag any change) nor below :data:`MIN_LOG_SPREAD`.
* ``user_id:implausible_rate``: the user has more events on the day than the ceiling learned from
  history's user-days (median + ``k`` robust sd of log counts, and never below the busiest
  user-day history holds).
* ``purchase:no_prior_interaction``: a purchase with no earlier view or cart of the product by the
  user, within the history and the day. Active only when history shows it does not happen (at
  least :data:`SEQUENCE_RULE_MIN_SHARE` of its purchases had one).

Bands are versioned by a hash of their content and adapt as the history they learn from moves.
Products and users that history has not seen are not judged by the rules that need them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import polars as pl

MAD_TO_SD = 1.4826
PRICE_K = 6.0  # the far band of the other learned checks ("broken", not "unusual")
RATE_K = 3.0  # on log counts of a heavy-tailed figure: 3 robust sd is already x85 at a spread of 1
MIN_LOG_SPREAD = 0.1  # a band is never narrower than exp(±PRICE_K · 0.1), about x1.8 either way
SEQUENCE_RULE_MIN_SHARE = 0.99
REASON_PRICE = "price:implausible"
REASON_RATE = "user_id:implausible_rate"
REASON_SEQUENCE = "purchase:no_prior_interaction"


@dataclass(frozen=True, eq=False)
class PlausibilityBands:
    """What history taught: per-product log-price bands, a user-day ceiling, the sequence rule."""

    prices: pl.DataFrame  # product_id, log_center, log_spread
    user_day_ceiling: float
    sequence_share: float  # share of history's purchases with an earlier view or cart
    history_days: int

    @property
    def sequence_rule(self) -> bool:
        return self.sequence_share >= SEQUENCE_RULE_MIN_SHARE

    @property
    def version(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.prices.sort("product_id").write_csv().encode())
        digest.update(f"{self.user_day_ceiling:.6g}|{self.sequence_share:.6g}".encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        return {
            "version": self.version,
            "products": self.prices.height,
            "median_price_band_factor": round(float((PRICE_K * self.prices["log_spread"]).exp().median() or 0), 3),
            "user_day_ceiling": round(self.user_day_ceiling, 1),
            "purchases_with_prior_interaction": round(self.sequence_share, 4),
            "sequence_rule": self.sequence_rule,
            "history_days": self.history_days,
        }


def learn_bands(history: pl.DataFrame) -> PlausibilityBands:
    """Bands from history's events (columns of the events table; `event_date` per record)."""
    priced = history.filter(pl.col("price") > 0).with_columns(pl.col("price").log().alias("log_price"))
    deviations = priced.with_columns(
        (pl.col("log_price") - pl.col("log_price").median().over("product_id")).abs().alias("deviation")
    )
    pooled = MAD_TO_SD * float(deviations["deviation"].median() or 0.0)
    floor = max(pooled, MIN_LOG_SPREAD)
    prices = deviations.group_by("product_id").agg(
        pl.col("log_price").median().alias("log_center"),
        (MAD_TO_SD * pl.col("deviation").median()).clip(lower_bound=floor).alias("log_spread"),
    )
    user_days = history.group_by("user_id", "event_date").len()["len"].cast(pl.Float64)
    ceiling = float("inf")
    if user_days.len():
        logs = user_days.log()
        center = float(logs.median() or 0.0)
        spread = MAD_TO_SD * float((logs - center).abs().median() or 0.0)
        ceiling = max(float(user_days.max() or 0.0), math.exp(center + RATE_K * spread))
    return PlausibilityBands(
        prices=prices,
        user_day_ceiling=ceiling,
        sequence_share=_share_with_prior_interaction(history),
        history_days=history["event_date"].n_unique(),
    )


def judge(events: pl.DataFrame, history: pl.DataFrame, bands: PlausibilityBands) -> pl.DataFrame:
    """The day's implausible records: event_id and their reason codes (only records with one)."""
    judged = events.join(bands.prices, on="product_id", how="left").with_columns(
        pl.len().over("user_id", "event_date").alias("user_day_events")
    )
    price = pl.col("price") > 0
    price_far = (pl.col("price").log() - pl.col("log_center")).abs() > PRICE_K * pl.col("log_spread")
    reasons = [
        pl.when(price & price_far.fill_null(False)).then(pl.lit(REASON_PRICE)),
        pl.when(pl.col("user_day_events") > bands.user_day_ceiling).then(pl.lit(REASON_RATE)),
    ]
    if bands.sequence_rule:
        orphans = _purchases_without_prior_interaction(events, history)
        judged = judged.with_columns(pl.col("event_id").is_in(orphans.implode()).alias("orphan"))
        reasons.append(pl.when(pl.col("orphan")).then(pl.lit(REASON_SEQUENCE)))
    return (
        judged.select("event_id", pl.concat_list(reasons).list.drop_nulls().alias("reasons"))
        .filter(pl.col("reasons").list.len() > 0)
        .sort("event_id")
    )


def _purchases_without_prior_interaction(events: pl.DataFrame, history: pl.DataFrame) -> pl.Series:
    interactions = pl.concat([history.select(_KEYS), events.select(_KEYS)]).filter(
        pl.col("event_type").is_in(["view", "cart"])
    )
    first_touch = interactions.group_by("user_id", "product_id").agg(pl.col("timestamp").min().alias("first_touch"))
    purchases = events.filter(pl.col("event_type") == "purchase").join(
        first_touch, on=["user_id", "product_id"], how="left"
    )
    orphan = pl.col("first_touch").is_null() | (pl.col("first_touch") > pl.col("timestamp"))
    return purchases.filter(orphan)["event_id"]


def _share_with_prior_interaction(history: pl.DataFrame) -> float:
    purchases = history.filter(pl.col("event_type") == "purchase").height
    if purchases == 0:
        return 0.0
    empty = history.clear()
    return 1.0 - _purchases_without_prior_interaction(history, empty).len() / purchases


_KEYS = ["user_id", "product_id", "event_type", "timestamp"]
