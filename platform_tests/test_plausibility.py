"""Plausibility rules: records that pass the contract but not what history says about their entity."""

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from dataplatform.defs.quality.plausibility import event_plausibility
from dataplatform.lib import plausibility
from dataplatform.lib.demo import DemoConfig, encode_events, generate_events
from factories import ingest_landing, local_resources, write_landing

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


def test_a_session_far_longer_than_any_in_history_is_implausible(stream: tuple) -> None:
    # A scraper behind one real user's cookie: 300 views in one session, over the whole day.
    history, today, bands = stream
    assert 5 < bands.session_day_ceiling < 300
    views = today.filter(pl.col("event_type") == "view").head(300)
    scraper = views.with_columns(
        ("scrape-" + pl.col("event_id")).alias("event_id"), pl.lit("scraper-session").alias("session_id")
    )
    marked = _marked(pl.concat([today, scraper]), history, bands)
    assert marked[plausibility.REASON_SESSION_RATE] == set(scraper["event_id"])


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


def test_a_product_named_with_another_products_category_and_brand_is_implausible(stream: tuple) -> None:
    # An enrichment join against a re-keyed catalogue: a fifth of the products get another one's attributes.
    history, today, bands = stream
    assert bands.attribute_rules == ["category", "brand"]  # in the demo's history a product keeps both
    products = today["product_id"].unique().sort()
    moved = products.filter(products % 5 == 0)
    donors = (
        today.unique("product_id")
        .select(pl.col("product_id").shift(7).alias("product_id"), "category", "brand")
        .drop_nulls("product_id")
    )
    skewed = (
        today.join(donors, on="product_id", how="left", suffix="_donor")
        .with_columns(
            *(
                pl.when(pl.col("product_id").is_in(moved.implode()))
                .then(pl.col(f"{c}_donor"))
                .otherwise(pl.col(c))
                .alias(c)
                for c in ("category", "brand")
            )
        )
        .drop("category_donor", "brand_donor")
    )
    changed = skewed.join(today, on="event_id").filter(pl.col("category") != pl.col("category_right"))
    marked = _marked(skewed, history, bands)
    assert marked["category:implausible"] == set(changed["event_id"]) and changed.height > 0.1 * today.height


def test_attribute_rules_stay_off_where_history_shows_products_change_them(stream: tuple) -> None:
    history, today, _ = stream
    relabel = pl.int_range(pl.len()) % 20 == 0  # 5% of history's records name another category
    drifting = history.with_columns(
        pl.when(relabel).then(pl.lit("misc")).otherwise(pl.col("category")).alias("category")
    )
    bands = plausibility.learn_bands(drifting)
    assert bands.attribute_rules == ["brand"]
    assert "category:implausible" not in _marked(today, drifting, bands)


def test_last_weeks_traffic_sent_again_under_new_ids_is_replayed(stream: tuple) -> None:
    history, today, bands = stream
    assert bands.replay_rule  # history holds no record repeating another
    week_ago = history.filter(pl.col("event_date") == today["event_date"][0] - dt.timedelta(days=7)).sample(
        fraction=0.15, seed=4
    )
    replay = week_ago.with_columns(
        pl.col("timestamp") + pl.duration(days=7),
        pl.col("event_date") + pl.duration(days=7),
        ("again-" + pl.col("event_id")).alias("event_id"),
        ("again-" + pl.col("session_id")).alias("session_id"),
    )
    marked = _marked(pl.concat([today, replay]), history, bands)
    assert marked[plausibility.REASON_REPLAY] == set(replay["event_id"])


def test_the_replay_rule_stays_off_where_history_shows_twins_are_normal(stream: tuple) -> None:
    # A producer whose clients fire every event twice under two ids: history teaches that twins happen.
    history, today, _ = stream
    twins = history.sample(fraction=0.01, seed=5).with_columns(("twin-" + pl.col("event_id")).alias("event_id"))
    bands = plausibility.learn_bands(pl.concat([history, twins]))
    assert not bands.replay_rule
    assert plausibility.REASON_REPLAY not in _marked(today, history, bands)


def _streamed(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """`frame` as if streamed: each record's file landed seconds to minutes after its timestamp."""
    lag_ms = np.random.default_rng(seed).lognormal(mean=np.log(20_000), sigma=1.0, size=frame.height)
    return frame.with_columns((pl.col("timestamp") + pl.duration(milliseconds=pl.Series(lag_ms.astype(np.int64))))
                              .alias(plausibility.ARRIVED_AT))  # fmt: skip


def test_a_streamed_record_far_older_than_its_file_is_implausible_and_dumps_are_not_judged(stream: tuple) -> None:
    history, today, _ = stream
    streamed_history, streamed_today = _streamed(history, 6), _streamed(today, 7)
    bands = plausibility.learn_bands(streamed_history)
    assert bands.arrival_ceiling is not None and 600 < bands.arrival_ceiling < 6 * 3600
    # A log-normal tail of slow clients: almost none of it is far enough out to be marked.
    assert len(_marked(streamed_today, streamed_history, bands).get(plausibility.REASON_ARRIVAL, ())) <= 3
    # A producer re-sends yesterday's file into the stream: timestamps a day older than the landing.
    late, bad = _corrupt(streamed_today, plausibility.ARRIVED_AT, pl.col(plausibility.ARRIVED_AT) + pl.duration(days=1))
    assert _marked(late, streamed_history, bands)[plausibility.REASON_ARRIVAL] == bad
    # A historical dump has no arrival to judge (null), and history of dumps alone learns no ceiling.
    dump = late.with_columns(pl.lit(None, pl.Datetime("us", "UTC")).alias(plausibility.ARRIVED_AT))
    assert plausibility.REASON_ARRIVAL not in _marked(dump, streamed_history, bands)
    assert plausibility.learn_bands(history).arrival_ceiling is None


def _land(folder: Path, name: str, frame: pl.DataFrame, landed: dt.datetime) -> None:
    path = write_landing(folder, name, encode_events(frame, "jsonl"))
    os.utime(path, (landed.timestamp(), landed.timestamp()))


def test_a_stale_file_in_the_stream_is_judged_against_when_it_landed(tmp_path: Path) -> None:
    """Through ingestion and the asset: each file's landing time is recorded, and a producer re-sending
    a morning's events a day late (under new ids) has them marked on the day they claim."""
    config = DemoConfig(start=dt.date(2026, 3, 1), days=3, users=200, events_per_day=1000, seed=4)
    frame = generate_events(config).frame.filter(pl.col("corruption").is_null())
    for (hour,), part in frame.group_by(pl.col("timestamp").dt.truncate("1h")):  # one file an hour
        _land(
            tmp_path / "landing",
            f"events-{hour:%Y%m%dT%H}.jsonl",
            part,
            part["timestamp"].max() + dt.timedelta(minutes=1),
        )
    judged_day = config.dates[-1]
    morning = frame.filter((pl.col("event_date") == judged_day) & (pl.col("timestamp").dt.hour() < 6))
    resent = morning.with_columns(("resent-" + pl.col("event_id")).alias("event_id"))
    landed = dt.datetime.combine(judged_day + dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)
    _land(tmp_path / "landing", "resend.jsonl", resent, landed)
    resources = local_resources(tmp_path)
    lakehouse = resources["lakehouse"]
    ingest_landing(tmp_path / "landing", lakehouse.lake(), Path(lakehouse.warehouse.database))

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [event_plausibility], partition_key=str(judged_day), resources=resources, instance=instance
        )
    assert result.success
    with lakehouse.connect(read_only=True) as con:
        late = con.sql(
            "SELECT event_id FROM suspect_events WHERE list_contains(reasons, ?)", params=[plausibility.REASON_ARRIVAL]
        ).pl()
    assert set(late["event_id"]) == set(resent["event_id"])


def marked_share(marked: set[str], bad: set[str]) -> float:
    return len(marked & bad) / len(bad)
