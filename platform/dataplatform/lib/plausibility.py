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
  user-day history holds); ``session_id:implausible_rate``, the same of a session's events on a day,
  never below half again the longest session history holds. Both wait for
  :data:`MIN_RATE_HISTORY_DAYS` days of history.
* ``category:implausible``, ``brand:implausible``: the record names another category (brand) for
  its product than the one history holds for it (the product's most frequent value). Active per
  column only when history shows products keep it (at least :data:`ATTRIBUTE_RULE_MIN_SHARE` of its
  records agree with their product's).
* ``purchase:no_prior_interaction``: a purchase with no earlier view or cart of the product by the
  user, within the history and the day. Active only when history shows it does not happen (at
  least :data:`SEQUENCE_RULE_MIN_SHARE` of its purchases had one).
* ``record:replayed``: the record repeats an earlier record (same user, product, event type and
  price, at the same time of day to the millisecond) a whole number of days later, or at the same
  moment, under another event id: traffic sent again as new. Active only when history shows that
  such twins do not happen by chance (at most :data:`REPLAY_RULE_MAX_SHARE` of its records).
* ``timestamp:far_from_arrival``: a streamed record whose timestamp is further from the moment its
  file landed than the ceiling learned from history's streamed records (median + 6 robust sd of
  their lags, never below twice history's 99.9th percentile): old traffic sent again, or a clock far off.
  Records of historical dumps are late by design and are not judged; the rule needs
  :data:`MIN_ARRIVAL_RECORDS` streamed records in history.

Bands are versioned by a hash of their content and adapt as the history they learn from moves.
Products and users that history has not seen are not judged by the rules that need them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import polars as pl

from dataplatform.lib.drift import MAD_TO_SD
from dataplatform.lib.quality import as_float

PRICE_K = 6.0  # the far band of the other learned checks ("broken", not "unusual")
RATE_K = 3.0  # on log counts of a heavy-tailed figure: 3 robust sd is already x85 at a spread of 1
# Sessions are short (median 3 events), so their log spread is narrow and the ceiling falls to the
# longest session history holds, a record that a clean day beats now and then (measured on the full
# corruption scenario's clean stream: a 47-event session against a record of 34). A session is
# implausible only well past that record.
SESSION_RECORD_HEADROOM = 1.5
# A count's tail is seen only in enough of it: the busiest user or session of 3 days is beaten by the
# 4th day's now and then (measured: one clean session of 34 events against a 3-day record of 21). The
# rate ceilings wait for a week of history, as the other learned bands wait for theirs.
MIN_RATE_HISTORY_DAYS = 7
MIN_LOG_SPREAD = 0.1  # a band is never narrower than exp(±PRICE_K · 0.1), about x1.8 either way
SEQUENCE_RULE_MIN_SHARE = 0.99
ATTRIBUTE_COLUMNS = ("category", "brand")
ATTRIBUTE_RULE_MIN_SHARE = 0.99
REPLAY_RULE_MAX_SHARE = 0.001
MIN_ARRIVAL_RECORDS = 200
ARRIVAL_K = 6.0  # the far band, as for prices: a lag this far out is not a slow client but old traffic
ARRIVAL_QUANTILE = 0.999  # the arrival ceiling never cuts into the lags history itself holds
REASON_PRICE = "price:implausible"
REASON_RATE = "user_id:implausible_rate"
REASON_SESSION_RATE = "session_id:implausible_rate"
REASON_SEQUENCE = "purchase:no_prior_interaction"
REASON_REPLAY = "record:replayed"
REASON_ARRIVAL = "timestamp:far_from_arrival"
ARRIVED_AT = "arrived_at"  # when the record's file landed (streamed records only; see with_arrival)


@dataclass(frozen=True, eq=False)
class PlausibilityBands:
    """What history taught: per-product log-price bands, a user-day ceiling, the sequence rule."""

    prices: pl.DataFrame  # product_id, log_center, log_spread
    attributes: pl.DataFrame  # product_id and its usual value of each ATTRIBUTE_COLUMNS
    attribute_shares: dict[str, float]  # per attribute, share of history's records agreeing with their product's
    user_day_ceiling: float
    session_day_ceiling: float
    sequence_share: float  # share of history's purchases with an earlier view or cart
    replay_share: float  # share of history's records that repeat an earlier one
    arrival_ceiling: float | None  # seconds between timestamp and landing; None: too few streamed records
    history_days: int

    @property
    def sequence_rule(self) -> bool:
        return self.sequence_share >= SEQUENCE_RULE_MIN_SHARE

    @property
    def attribute_rules(self) -> list[str]:
        return [c for c, share in self.attribute_shares.items() if share >= ATTRIBUTE_RULE_MIN_SHARE]

    @property
    def replay_rule(self) -> bool:
        return self.replay_share <= REPLAY_RULE_MAX_SHARE

    @property
    def version(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.prices.sort("product_id").write_csv().encode())
        digest.update(self.attributes.sort("product_id").write_csv().encode())
        digest.update(
            f"{self.user_day_ceiling:.6g}|{self.session_day_ceiling:.6g}|{self.sequence_share:.6g}|{self.replay_share:.6g}|{self.arrival_ceiling}".encode()
        )
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        return {
            "version": self.version,
            "products": self.prices.height,
            "median_price_band_factor": round(as_float((PRICE_K * self.prices["log_spread"]).exp().median()), 3),
            "user_day_ceiling": round(self.user_day_ceiling, 1),
            "session_day_ceiling": round(self.session_day_ceiling, 1),
            "purchases_with_prior_interaction": round(self.sequence_share, 4),
            "sequence_rule": self.sequence_rule,
            **{f"{c}_agreeing_with_its_product": round(share, 4) for c, share in self.attribute_shares.items()},
            "attribute_rules": ", ".join(self.attribute_rules) or "none",
            "records_repeating_an_earlier_one": round(self.replay_share, 5),
            "replay_rule": self.replay_rule,
            "arrival_ceiling_seconds": None if self.arrival_ceiling is None else round(self.arrival_ceiling),
            "history_days": self.history_days,
        }


def learn_bands(history: pl.DataFrame) -> PlausibilityBands:
    """Bands from history's events (columns of the events table; `event_date` per record)."""
    priced = history.filter(pl.col("price") > 0).with_columns(pl.col("price").log().alias("log_price"))
    deviations = priced.with_columns(
        (pl.col("log_price") - pl.col("log_price").median().over("product_id")).abs().alias("deviation")
    )
    pooled = MAD_TO_SD * as_float(deviations["deviation"].median())
    floor = max(pooled, MIN_LOG_SPREAD)
    prices = deviations.group_by("product_id").agg(
        pl.col("log_price").median().alias("log_center"),
        (MAD_TO_SD * pl.col("deviation").median()).clip(lower_bound=floor).alias("log_spread"),
    )
    attributes, attribute_shares = _usual_attributes(history)
    history_days = history["event_date"].n_unique()
    return PlausibilityBands(
        prices=prices,
        attributes=attributes,
        attribute_shares=attribute_shares,
        user_day_ceiling=_count_ceiling(history.group_by("user_id", "event_date").len()["len"], history_days),
        session_day_ceiling=_count_ceiling(
            history.filter(pl.col("session_id").is_not_null()).group_by("session_id", "event_date").len()["len"],
            history_days,
            record_headroom=SESSION_RECORD_HEADROOM,
        ),
        sequence_share=_share_with_prior_interaction(history),
        replay_share=_replayed(history, history.clear()).len() / max(history.height, 1),
        arrival_ceiling=_arrival_ceiling(history),
        history_days=history_days,
    )


def _usual_attributes(history: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, float]]:
    """Each product's most frequent value of each attribute (ties: the smallest), and per attribute the
    share of history's records (product and value known) that agree with their product's."""
    known = history.filter(pl.col("product_id").is_not_null())
    usual = known.group_by("product_id").agg(
        pl.col(c).drop_nulls().mode().sort().first().alias(c) for c in ATTRIBUTE_COLUMNS
    )
    paired = known.join(usual, on="product_id", suffix="_usual")
    shares = {}
    for c in ATTRIBUTE_COLUMNS:
        judged = paired.filter(pl.col(c).is_not_null())
        shares[c] = as_float((judged[c] == judged[f"{c}_usual"]).mean())
    return usual, shares


def with_arrival(events: pl.DataFrame, arrivals: pl.DataFrame) -> pl.DataFrame:
    """`events` with column `arrived_at`: when each record's file landed, from `arrivals` (batch_id,
    source_file, arrived_at) of streamed files; null for records of historical dumps."""
    return events.join(arrivals, on=["batch_id", "source_file"], how="left")


def _arrival_lag() -> pl.Expr:
    """Seconds between a record's timestamp and its file's landing, either way."""
    return ((pl.col(ARRIVED_AT) - pl.col("timestamp")).dt.total_microseconds().abs() / 1e6).alias("lag")


def _arrival_ceiling(history: pl.DataFrame) -> float | None:
    """The far band of history's lags (median + ARRIVAL_K robust sd), never closer than twice the lag
    that ARRIVAL_QUANTILE of them stayed within: a long tail of slow clients is normal, not implausible."""
    if ARRIVED_AT not in history.columns:
        return None
    lags = history.filter(pl.col(ARRIVED_AT).is_not_null()).select(_arrival_lag())["lag"]
    if lags.len() < MIN_ARRIVAL_RECORDS:
        return None
    center = as_float(lags.median())
    spread = MAD_TO_SD * as_float((lags - center).abs().median())
    return max(center + ARRIVAL_K * spread, 2.0 * as_float(lags.quantile(ARRIVAL_QUANTILE)))


def _count_ceiling(counts: pl.Series, history_days: int, record_headroom: float = 1.0) -> float:
    """A ceiling on a heavy-tailed count (events of a user or a session in a day): median + RATE_K robust sd
    of the log counts, never below `record_headroom` times the largest count history holds. Infinite
    before MIN_RATE_HISTORY_DAYS days of history."""
    if not counts.len() or history_days < MIN_RATE_HISTORY_DAYS:
        return float("inf")
    logs = counts.cast(pl.Float64).log()
    center = as_float(logs.median())
    spread = MAD_TO_SD * as_float((logs - center).abs().median())
    return max(record_headroom * as_float(counts.max()), math.exp(center + RATE_K * spread))


def judge(events: pl.DataFrame, history: pl.DataFrame, bands: PlausibilityBands) -> pl.DataFrame:
    """The day's implausible records: event_id and their reason codes (only records with one)."""
    judged = events.join(bands.prices, on="product_id", how="left")
    judged = judged.join(bands.attributes, on="product_id", how="left", suffix="_usual").with_columns(
        pl.len().over("user_id", "event_date").alias("user_day_events"),
        pl.len().over("session_id", "event_date").alias("session_day_events"),
    )
    price = pl.col("price") > 0
    price_far = (pl.col("price").log() - pl.col("log_center")).abs() > PRICE_K * pl.col("log_spread")
    reasons = [
        pl.when(price & price_far.fill_null(False)).then(pl.lit(REASON_PRICE)),
        pl.when(pl.col("user_day_events") > bands.user_day_ceiling).then(pl.lit(REASON_RATE)),
        pl.when(pl.col("session_id").is_not_null() & (pl.col("session_day_events") > bands.session_day_ceiling)).then(
            pl.lit(REASON_SESSION_RATE)
        ),
        *(
            pl.when((pl.col(c) != pl.col(f"{c}_usual")).fill_null(False)).then(pl.lit(f"{c}:implausible"))
            for c in bands.attribute_rules
        ),
    ]
    if bands.sequence_rule:
        orphans = _purchases_without_prior_interaction(events, history)
        judged = judged.with_columns(pl.col("event_id").is_in(orphans.implode()).alias("orphan"))
        reasons.append(pl.when(pl.col("orphan")).then(pl.lit(REASON_SEQUENCE)))
    if bands.replay_rule:
        judged = judged.with_columns(pl.col("event_id").is_in(_replayed(events, history).implode()).alias("replayed"))
        reasons.append(pl.when(pl.col("replayed")).then(pl.lit(REASON_REPLAY)))
    if bands.arrival_ceiling is not None and ARRIVED_AT in events.columns:
        late = _arrival_lag() > bands.arrival_ceiling
        reasons.append(pl.when(late.fill_null(False)).then(pl.lit(REASON_ARRIVAL)))
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


def _replayed(events: pl.DataFrame, earlier: pl.DataFrame) -> pl.Series:
    """Event ids of `events` records that repeat the content and time of day of an earlier record (of
    `earlier` or of `events`) a whole number of days later, or at the same moment, under another id.

    Only the later copy is named (of two at one moment, the larger id): the first is the original."""

    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        time_of_day = pl.col("timestamp") - pl.col("timestamp").dt.truncate("1d")
        return frame.select("event_id", "timestamp", *_CONTENT, time_of_day.alias("time_of_day"))

    current = keyed(events)
    pairs = current.join(
        pl.concat([keyed(earlier), current]), on=[*_CONTENT, "time_of_day"], suffix="_twin", nulls_equal=True
    )
    twin_before = (pl.col("timestamp_twin") < pl.col("timestamp")) | (
        (pl.col("timestamp_twin") == pl.col("timestamp")) & (pl.col("event_id_twin") < pl.col("event_id"))
    )
    return pairs.filter(twin_before)["event_id"].unique()


_KEYS = ["user_id", "product_id", "event_type", "timestamp"]
_CONTENT = ["user_id", "product_id", "event_type", "price"]
