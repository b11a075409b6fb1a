"""Plausibility rules: records that pass the contract but not what history says about their entity."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dataplatform.lib import plausibility
from dataplatform.lib.demo import DemoConfig, generate_events

CONFIG = DemoConfig(start=dt.date(2026, 3, 1), days=15, users=600, events_per_day=6000, seed=9)


@pytest.fixture(scope="module")
def stream() -> tuple[pl.DataFrame, pl.DataFrame, plausibility.PlausibilityBands]:
    frame, _ = generate_events(CONFIG)
    day = CONFIG.dates[-1]
    history, today = frame.filter(pl.col("event_date") < day), frame.filter(pl.col("event_date") == day)
    return history, today, plausibility.learn_bands(history)


def _corrupt(today: pl.DataFrame, column: str, value: pl.Expr, share: float = 0.15) -> tuple[pl.DataFrame, set[str]]:
    bad = pl.Series(np.random.default_rng(1).random(today.height) < share)
    changed = today.with_columns(pl.when(bad).then(value).otherwise(pl.col(column)).alias(column))
    return changed, set(today.filter(bad)["event_id"])


def _marked(frame: pl.DataFrame, history: pl.DataFrame, bands: plausibility.PlausibilityBands) -> dict[str, set[str]]:
    judged = plausibility.judge(frame, history, bands).explode("reasons")
    return {reason: set(group["event_id"]) for (reason,), group in judged.group_by("reasons")}


def test_a_clean_day_has_almost_no_implausible_record(stream: tuple) -> None:
    history, today, bands = stream
    assert bands.sequence_rule  # in the demo's history every purchase follows a cart
    judged = plausibility.judge(today, history, bands)
    assert judged.height <= 0.001 * today.height


def test_prices_in_cents_are_implausible_for_their_product(stream: tuple) -> None:
    history, today, bands = stream
    cents, bad = _corrupt(today, "price", pl.col("price") * 100)
    marked = _marked(cents, history, bands)
    assert marked[plausibility.REASON_PRICE] == bad


def test_a_placeholder_user_flooding_the_stream_exceeds_the_learned_rate(stream: tuple) -> None:
    history, today, bands = stream
    flood, bad = _corrupt(today, "user_id", pl.lit("u_unknown"))
    assert marked_share(_marked(flood, history, bands).get(plausibility.REASON_RATE, set()), bad) == 1.0


def test_swapped_product_ids_a_kind_no_rule_was_written_for_are_mostly_caught(stream: tuple) -> None:
    # Each record keeps its price but names another product: the price rule sees most of them.
    history, today, bands = stream
    swapped, bad = _corrupt(today, "product_id", pl.col("product_id").shuffle(seed=2))
    marked = set().union(*_marked(swapped, history, bands).values())
    assert marked_share(marked, bad) >= 0.5
    assert len(marked - bad) <= 0.002 * today.height


def test_a_purchase_of_a_product_the_user_never_touched_is_implausible(stream: tuple) -> None:
    history, today, bands = stream
    purchases = today.filter(pl.col("event_type") == "purchase").head(20)
    never = purchases.with_columns(
        (pl.col("event_id") + "-orphan").alias("event_id"), pl.lit(10**9).cast(pl.Int64).alias("product_id")
    )
    marked = _marked(pl.concat([today, never]), history, bands)
    assert set(never["event_id"]) <= marked[plausibility.REASON_SEQUENCE]


def test_a_moderate_real_price_change_is_not_called_implausible(stream: tuple) -> None:
    # Prices 50% up (a real repricing, or drift): tier 2 sees the shift; it is not bad data.
    history, today, bands = stream
    repriced, _ = _corrupt(today, "price", pl.col("price") * 1.5, share=1.0)
    assert plausibility.REASON_PRICE not in _marked(repriced, history, bands)


def test_bands_are_versioned_by_their_content(stream: tuple) -> None:
    history, _, bands = stream
    assert plausibility.learn_bands(history).version == bands.version
    shifted = history.with_columns(pl.col("price") * 2)
    assert plausibility.learn_bands(shifted).version != bands.version


def marked_share(marked: set[str], bad: set[str]) -> float:
    return len(marked & bad) / len(bad)
