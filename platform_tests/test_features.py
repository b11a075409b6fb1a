"""Training examples: point-in-time correctness, labels, label maturity, sessions, summaries."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, event, find, given, settings, target
from hypothesis import strategies as st

from dataplatform.lib.contract import UTC_DATETIME
from dataplatform.lib.demo import DemoConfig, generate_events
from dataplatform.lib.features import (
    CATEGORICAL_FEATURES,
    EXAMPLE_SCHEMA,
    FEATURE_COLUMNS,
    NUMERIC_FEATURES,
    QUANTILES,
    SESSION_SCHEMA,
    SUMMARY_SCHEMA,
    USER_FEATURE_COLUMNS,
    build_training_examples,
    feature_summaries,
    label_cutoff,
    labelled_days,
    product_features,
    sessions,
    user_features,
)

D = dt.date(2026, 3, 10)  # a Tuesday
T0 = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
H, M, DAYS = dt.timedelta(hours=1), dt.timedelta(minutes=1), dt.timedelta(days=1)
CATEGORY = {1: "cat.a", 2: "cat.b", 3: "cat.c", 4: None}
BRAND = {1: "acme", 2: "zeta", 3: None, 4: "acme"}


def events(rows: Sequence[tuple[Any, ...]]) -> pl.DataFrame:
    """rows: (event_id, user_id, timestamp, event_type, product_id, session_id, price)."""
    records = [
        {
            "event_id": eid,
            "user_id": user,
            "timestamp": ts,
            "event_type": etype,
            "product_id": product,
            "category": CATEGORY.get(product) if product is not None else None,
            "brand": BRAND.get(product) if product is not None else None,
            "price": price,
            "session_id": session,
        }
        for eid, user, ts, etype, product, session, price in rows
    ]
    schema = {
        "event_id": pl.String,
        "user_id": pl.String,
        "timestamp": UTC_DATETIME,
        "event_type": pl.String,
        "product_id": pl.Int64,
        "category": pl.String,
        "brand": pl.String,
        "price": pl.Float64,
        "session_id": pl.String,
    }
    frame = pl.DataFrame(records, schema=schema)
    return frame.with_columns(pl.col("timestamp").dt.date().alias("event_date"))


def example(frame: pl.DataFrame, example_id: str) -> dict[str, Any]:
    rows = frame.filter(pl.col("example_id") == example_id).to_dicts()
    assert len(rows) == 1
    return rows[0]


# --- hand-made log with known counts ---------------------------------------------------------

TINY = [
    ("old", "u1", T0 - 30 * DAYS, "view", 1, None, 80.0),  # outside 28d
    ("v10d", "u1", T0 - 10 * DAYS, "view", 1, None, 85.0),  # 28d only
    ("c2d", "u1", T0 - 2 * DAYS, "cart", 1, None, 90.0),  # 7d and 28d
    ("p2h", "u1", T0 - 2 * H, "purchase", 2, None, 20.0),  # 1d and up
    ("v1h", "u1", T0 - H, "view", 3, None, 5.0),  # exactly 1h before: window start is inclusive
    ("v30m", "u1", T0 - 30 * M, "view", 2, "s1", 20.0),
    ("tie", "u1", T0, "cart", 1, "s1", 110.0),  # same timestamp as the example: must not count
    ("x", "u1", T0, "view", 1, "s1", 110.0),  # the example
    ("u2v", "u2", T0 - H, "view", 1, "s9", 100.0),
    ("u2later", "u2", T0 + H, "view", 1, "s9", 1000.0),  # after: must not count
]


def test_hand_made_log_gives_the_expected_point_in_time_features() -> None:
    out = build_training_examples(events(TINY), days=[D])
    assert set(out["example_id"]) == {"v1h", "v30m", "x", "u2v", "u2later"}
    x = example(out, "x")
    expected = {
        "user_views_1h": 2, "user_carts_1h": 0, "user_purchases_1h": 0,
        "user_views_1d": 2, "user_carts_1d": 0, "user_purchases_1d": 1,
        "user_views_7d": 2, "user_carts_7d": 1, "user_purchases_7d": 1,
        "user_views_28d": 3, "user_carts_28d": 1, "user_purchases_28d": 1,
        "user_seconds_since_prev_event": 1800.0,  # the tie at T0 is not "previous"
        "user_purchase_rate_28d": 1 / 3,
        "user_product_views_28d": 1, "user_product_carts_28d": 1,  # the tie cart is excluded
        "user_product_seconds_since_last_view": 10 * 86400.0,
        "user_category_view_share_28d": 1 / 3,
        "product_views_1d": 1, "product_views_7d": 1,  # u2's view; u2's later view excluded
        "product_conversion_rate_7d": 1 / 21,
        "price": 110.0,
        "session_position": 1,  # v30m; the tie is not earlier
        "session_age_seconds": 1800.0,
        "hour_of_day": 12, "day_of_week": 2,
        "category": "cat.a", "brand": "acme",
    }  # fmt: skip
    assert {k: x[k] for k in expected} == pytest.approx(expected)
    assert x["price_relative_to_product_mean_7d"] == pytest.approx(110.0 / 95.0)  # mean of c2d, u2v
    assert x["label"] == 0 and x["example_time"] == T0 and x["event_date"] == D
    first = example(out, "v1h")  # previous event: p2h, one hour earlier; no session
    assert first["user_seconds_since_prev_event"] == 3600.0
    assert first["user_product_seconds_since_last_view"] is None
    assert first["session_position"] is None and first["session_age_seconds"] is None
    later = example(out, "u2later")
    assert later["product_views_1d"] == 2  # product 1 views in [T0, T0 + 1h): u2v and x
    assert later["user_product_views_28d"] == 1


def test_history_bounds_every_lookback() -> None:
    out = build_training_examples(events(TINY), days=[D], history=dt.timedelta(days=3))
    x = example(out, "x")
    assert x["user_views_28d"] == x["user_views_7d"] == 2  # v10d is outside 3 days
    assert x["user_product_views_28d"] == 0 and x["user_product_seconds_since_last_view"] is None


# --- labels -----------------------------------------------------------------------------------


def test_labels_follow_the_horizon_user_and_product() -> None:
    rows = [
        ("a", "u1", T0, "view", 1, None, 1.0),
        ("a_buy", "u1", T0 + 23 * H, "purchase", 1, None, 1.0),  # within 1 day → 1
        ("b", "u2", T0, "view", 1, None, 1.0),
        ("b_before", "u2", T0 - H, "purchase", 1, None, 1.0),  # before → 0
        ("b_late", "u2", T0 + 25 * H, "purchase", 1, None, 1.0),  # after the horizon → 0
        ("c", "u3", T0, "view", 2, None, 1.0),
        ("c_other_product", "u3", T0 + H, "purchase", 3, None, 1.0),
        ("c_other_user", "u4", T0 + H, "purchase", 2, None, 1.0),
        ("d", "u5", T0, "view", 1, None, 1.0),
        ("d_same_time", "u5", T0, "purchase", 1, None, 1.0),  # not strictly after → 0
        ("e", "u6", T0, "view", 1, None, 1.0),
        ("e_at_horizon", "u6", T0 + DAYS, "purchase", 1, None, 1.0),  # exactly view + horizon → 1
        ("f", "u7", T0, "view", None, None, 1.0),  # no product: not an example
        ("g", "u8", T0, "cart", 1, None, 1.0),  # not a view: not an example
        ("h", "u9", T0 + DAYS, "view", 1, None, 1.0),  # another day: not an example
    ]
    out = build_training_examples(events(rows), days=[D])
    assert dict(zip(out["example_id"], out["label"], strict=True)) == {"a": 1, "b": 0, "c": 0, "d": 0, "e": 1}
    longer = build_training_examples(events(rows), days=[D], horizon=dt.timedelta(days=2))
    assert example(longer, "b")["label"] == 1
    # Features do not depend on the horizon.
    assert longer.select(FEATURE_COLUMNS).equals(out.select(FEATURE_COLUMNS))


def test_label_maturity() -> None:
    assert label_cutoff(D) == dt.datetime(2026, 3, 12, tzinfo=dt.UTC)
    assert label_cutoff([D, D - DAYS], dt.timedelta(hours=6)) == dt.datetime(2026, 3, 11, 6, tzinfo=dt.UTC)
    days = [D, D - DAYS, D + DAYS, D]
    mature = dt.datetime(2026, 3, 12, tzinfo=dt.UTC)
    assert labelled_days(mature, days) == [D - DAYS, D]
    assert labelled_days(mature - dt.timedelta(microseconds=1), days) == [D - DAYS]
    assert labelled_days(mature, days, dt.timedelta(hours=1)) == [D - DAYS, D]
    assert labelled_days(mature, days, dt.timedelta(days=2)) == [D - DAYS]
    assert labelled_days(mature + H, days, allowed_lateness=2 * H) == [D - DAYS]
    with pytest.raises(ValueError, match="timezone-aware"):
        labelled_days(dt.datetime(2026, 3, 12), days)
    with pytest.raises(ValueError, match="positive"):
        label_cutoff(D, dt.timedelta(0))


# --- point-in-time properties -----------------------------------------------------------------

SLOT = dt.timedelta(minutes=20)  # coarse grid: plenty of ties
DAY_SLOTS = DAYS // SLOT
MAX_HISTORY_DAYS = 40  # longer than the 28-day window, so 7d and 28d differ when the history allows
# 41 days before D (the longest history before the first example day, D - 1), D, and one day after for labels.
GRID_START = dt.datetime.combine(D, dt.time(), tzinfo=dt.UTC) - (MAX_HISTORY_DAYS + 1) * DAYS
D_SLOT = (MAX_HISTORY_DAYS + 1) * DAY_SLOTS  # the first slot of D
N_SLOTS = D_SLOT + 2 * DAY_SLOTS
WINDOWS = (H, DAYS, 7 * DAYS, 28 * DAYS)
TYPES = ("view", "view", "view", "cart", "remove_from_cart", "purchase")

users = st.integers(0, 2)
products = st.sampled_from([None, 1, 2, 3, 4])
session_ids = st.sampled_from([None, "s0", "s1", "s2"])
prices = st.sampled_from([None, 9.99, 10.0, 25.5, 100.0])
# Half the events in the two days around the example days (ties, 1h and 1d windows), half anywhere in
# the 43 days (the 7d and 28d windows and the history bound).
slots = st.one_of(st.integers(D_SLOT - 2 * DAY_SLOTS, N_SLOTS - 1), st.integers(0, N_SLOTS - 1))
event_rows = st.lists(st.tuples(users, slots, st.sampled_from(TYPES), products, session_ids, prices), max_size=40)


@st.composite
def point_in_time_cases(draw: st.DrawFn, example_days: int = 1) -> tuple[list[tuple[Any, ...]], dt.timedelta]:
    """(rows for `to_log`, history): at least one example view (product known) on the last `example_days`
    days up to D, background events, and events exactly one window or the history before an example (the
    window starts are inclusive), shuffled."""
    history = draw(st.integers(1, MAX_HISTORY_DAYS * 24).map(lambda hours: hours * H))
    first = D_SLOT - (example_days - 1) * DAY_SLOTS
    examples = draw(
        st.lists(
            st.tuples(users, st.integers(first, D_SLOT + DAY_SLOTS - 1), st.just("view"), st.integers(1, 4)),
            min_size=1,
            max_size=6,
        )
    )
    examples = [(*e, draw(session_ids), draw(prices)) for e in examples]
    offsets = st.sampled_from([*WINDOWS, history])
    edges = draw(st.lists(st.tuples(st.sampled_from(examples), offsets, st.sampled_from(TYPES)), max_size=12))
    at_edges = [(e[0], e[1] - offset // SLOT, etype, *e[3:]) for e, offset, etype in edges]
    return draw(st.permutations([*examples, *draw(event_rows), *at_edges])), history


def to_log(rows: list[tuple[Any, ...]], prefix: str = "e") -> list[tuple[Any, ...]]:
    return [
        (f"{prefix}{i:03d}", f"u{u}", GRID_START + slot * SLOT, etype, product, session, price)
        for i, (u, slot, etype, product, session, price) in enumerate(rows)
    ]


def reference(log: list[tuple[Any, ...]], ex: tuple[Any, ...], history: dt.timedelta) -> dict[str, Any]:
    """The features of `ex` straight from their definitions, one event at a time."""
    _, user, t, _, product, session, price = ex
    past = [r for r in log if t - history <= r[2] < t]

    def within(w: dt.timedelta) -> list[tuple[Any, ...]]:
        return [r for r in past if r[2] >= t - min(w, history)]

    def count(rows: list[tuple[Any, ...]], etype: str, **match: Any) -> int:
        fields = {"user": 1, "product": 4, "session": 5}
        return sum(1 for r in rows if r[3] == etype and all(r[fields[k]] == v for k, v in match.items()))

    out: dict[str, Any] = {}
    for name, w in {"1h": H, "1d": DAYS, "7d": 7 * DAYS, "28d": 28 * DAYS}.items():
        for label, etype in (("views", "view"), ("carts", "cart"), ("purchases", "purchase")):
            out[f"user_{label}_{name}"] = count(within(w), etype, user=user)
    mine = [r for r in past if r[1] == user]
    out["user_seconds_since_prev_event"] = (t - max(r[2] for r in mine)) / dt.timedelta(seconds=1) if mine else None
    views = out["user_views_28d"]
    out["user_purchase_rate_28d"] = out["user_purchases_28d"] / views if views else None
    w28 = within(28 * DAYS)
    out["user_product_views_28d"] = count(w28, "view", user=user, product=product)
    out["user_product_carts_28d"] = count(w28, "cart", user=user, product=product)
    seen = [r[2] for r in past if r[1] == user and r[4] == product and r[3] == "view"]
    out["user_product_seconds_since_last_view"] = (t - max(seen)).total_seconds() if seen else None
    category = CATEGORY[product]
    in_category = sum(1 for r in w28 if r[1] == user and r[3] == "view" and r[4] and CATEGORY[r[4]] == category)
    out["user_category_view_share_28d"] = in_category / views if views and category is not None else None
    w7 = within(7 * DAYS)
    out["product_views_1d"] = count(within(DAYS), "view", product=product)
    out["product_views_7d"] = count(w7, "view", product=product)
    out["product_conversion_rate_7d"] = (count(w7, "purchase", product=product) + 1) / (out["product_views_7d"] + 20)
    prices = [Decimal(str(r[6])) for r in w7 if r[4] == product and r[6] is not None]
    mean = float(sum(prices)) / len(prices) if prices else None
    out["price"] = price
    out["price_relative_to_product_mean_7d"] = price / mean if price is not None and mean else None
    in_session = [r for r in log if session is not None and r[5] == session and t - history <= r[2] <= t]
    out["session_position"] = sum(1 for r in in_session if r[2] < t) if session is not None else None
    start = min((r[2] for r in in_session), default=None)
    out["session_age_seconds"] = (t - start).total_seconds() if session is not None and start else None
    out["hour_of_day"], out["day_of_week"] = t.hour, t.isoweekday()
    out["category"], out["brand"] = category, BRAND[product]
    return out


def assert_same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert actual.keys() == expected.keys()
    for key, want in expected.items():
        got = actual[key]
        if isinstance(want, float) and got is not None:
            assert got == pytest.approx(want, rel=1e-12), key
        else:
            assert got == want, key


def windows_differ(log: list[tuple[Any, ...]], ex: tuple[Any, ...], history: dt.timedelta) -> bool:
    """Whether the example's 7-day and 28-day windows hold different events (the case tells them apart)."""
    features = reference(log, ex, history)
    return any(features[f"user_{kind}_7d"] != features[f"user_{kind}_28d"] for kind in ("views", "carts", "purchases"))


def test_generated_cases_tell_the_7d_and_28d_windows_apart() -> None:
    """The strategy reaches cases whose 7d and 28d features differ (a history under 28 days, or events only
    near D, would make the two windows one and leave the 28d bound untested)."""

    def separates(case: tuple[list[tuple[Any, ...]], dt.timedelta]) -> bool:
        log, history = to_log(case[0]), case[1]
        return any(windows_differ(log, r, history) for r in log if r[3] == "view" and r[2].date() == D)

    # Generation only: the first such case is proof enough, shrinking it would only cost time.
    quick = settings(max_examples=200, database=None, phases=[Phase.generate])
    find(point_in_time_cases(), separates, settings=quick)  # raises NoSuchExample if none is found


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=point_in_time_cases())
def test_features_match_a_one_event_at_a_time_reference(case: tuple[list[tuple[Any, ...]], dt.timedelta]) -> None:
    rows, history = case
    log = to_log(rows)
    out = build_training_examples(events(log), days=[D], history=history)
    expected_ids = sorted(r[0] for r in log if r[3] == "view" and r[4] is not None and r[2].date() == D)
    assert expected_ids  # every case carries examples: a case without any would check nothing
    assert sorted(out["example_id"]) == expected_ids
    by_id = {r[0]: r for r in log}
    differing = 0
    for row in out.iter_rows(named=True):
        ex = by_id[row["example_id"]]
        assert_same({c: row[c] for c in FEATURE_COLUMNS}, reference(log, ex, history))
        bought = any(
            r[1] == ex[1] and r[4] == ex[4] and r[3] == "purchase" and ex[2] < r[2] <= ex[2] + DAYS for r in log
        )
        assert row["label"] == int(bought)
        differing += windows_differ(log, ex, history)
    event("examples: " + ("1" if len(expected_ids) == 1 else "2-4" if len(expected_ids) < 5 else "5 or more"))
    event(f"7d and 28d windows differ: {differing > 0}")
    target(float(differing), label="examples whose 7d and 28d windows differ")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=point_in_time_cases(example_days=2), future=event_rows, data=st.data())
def test_appending_future_events_changes_no_earlier_feature(
    case: tuple[list[tuple[Any, ...]], dt.timedelta], future: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    """Events at or after time c (ties included) leave the features of every example at or
    before c exactly as they were."""
    rows, history = case
    log = to_log(rows)
    # The cut falls at or after some example, so there are features to keep.
    first_example = min(r[2] for r in log if r[3] == "view" and r[4] is not None and r[2].date() in (D - DAYS, D))
    cutoff = first_example + data.draw(st.integers(0, (GRID_START + N_SLOTS * SLOT - first_example) // SLOT)) * SLOT
    base = [r for r in log if r[2] <= cutoff]
    later = [(*r[:2], max(r[2], cutoff), *r[3:]) for r in to_log(future, prefix="f")]
    before = build_training_examples(events(base), days=[D - DAYS, D], history=history)
    after = build_training_examples(events(base + later), days=[D - DAYS, D], history=history)
    assert before.height > 0
    kept = after.filter(pl.col("example_id").str.starts_with("e"))
    assert kept.drop("label").equals(before.drop("label"))


@pytest.fixture(scope="module")
def demo() -> pl.DataFrame:
    config = DemoConfig(start=dt.date(2026, 3, 1), days=4, users=250, products=80, events_per_day=1500)
    return generate_events(config).frame.drop("corruption", "raw_value")


DEMO_DAYS = [dt.date(2026, 3, 3), dt.date(2026, 3, 4)]


@pytest.fixture(scope="module")
def demo_examples(demo: pl.DataFrame) -> pl.DataFrame:
    return build_training_examples(demo, days=DEMO_DAYS)


def test_truncating_the_log_at_the_example_time_gives_the_same_features(
    demo: pl.DataFrame, demo_examples: pl.DataFrame
) -> None:
    sample = demo_examples.sample(8, seed=3)
    for row in sample.iter_rows(named=True):
        truncated = demo.filter((pl.col("timestamp") < row["example_time"]) | (pl.col("event_id") == row["example_id"]))
        again = build_training_examples(truncated, days=DEMO_DAYS)
        assert again["example_id"][-1] == row["example_id"]  # the latest example left
        assert again.select(FEATURE_COLUMNS).tail(1).to_dicts() == [{c: row[c] for c in FEATURE_COLUMNS}]


def test_snapshots_equal_the_features_an_example_gets(demo: pl.DataFrame, demo_examples: pl.DataFrame) -> None:
    for row in demo_examples.sample(5, seed=11).iter_rows(named=True):
        as_of = row["example_time"]
        users = user_features(demo, as_of)
        assert users["user_id"].to_list() == sorted(demo.filter(pl.col("timestamp") < as_of)["user_id"].unique())
        mine = users.filter(pl.col("user_id") == row["user_id"]).to_dicts()[0]
        assert {c: mine[c] for c in USER_FEATURE_COLUMNS} == {c: row[c] for c in USER_FEATURE_COLUMNS}
        products = product_features(demo, as_of)
        item = products.filter(pl.col("product_id") == row["product_id"]).to_dicts()
        if item:  # the product may never have been seen before this example
            for c in ("product_views_1d", "product_views_7d", "product_conversion_rate_7d"):
                assert item[0][c] == row[c]
    latest = demo.sort("timestamp").tail(1)
    snapshot = product_features(demo, dt.datetime(2026, 3, 5, tzinfo=dt.UTC))
    last = snapshot.filter(pl.col("product_id") == latest["product_id"][0])
    assert last["last_price"][0] == latest.filter(pl.col("price").is_not_null())["price"][0]


# --- demo frame, determinism, validation -------------------------------------------------------


def test_demo_examples_are_sane(demo: pl.DataFrame, demo_examples: pl.DataFrame) -> None:
    out = demo_examples
    assert out.height > 1000
    assert dict(out.schema) == EXAMPLE_SCHEMA
    assert list(out.columns[6:]) == list(FEATURE_COLUMNS)
    assert out["label"].null_count() == 0
    assert 0.01 <= out["label"].mean() <= 0.5  # type: ignore[operator]
    assert set(out["event_date"]) == set(DEMO_DAYS)
    assert out["example_id"].is_unique().all()
    assert out.equals(out.sort("example_time", "example_id"))
    views = demo.filter((pl.col("event_type") == "view") & pl.col("timestamp").dt.date().is_in(DEMO_DAYS))
    assert out.height == views.height
    assert set(CATEGORICAL_FEATURES) <= set(FEATURE_COLUMNS)
    assert out.select(pl.col("user_views_28d").min()).item() >= 0


def test_output_is_deterministic_whatever_the_input_order(demo: pl.DataFrame, demo_examples: pl.DataFrame) -> None:
    shuffled = demo.sample(fraction=1.0, shuffle=True, seed=5)
    assert build_training_examples(shuffled, days=list(reversed(DEMO_DAYS))).equals(demo_examples)


def test_input_validation_and_empty_inputs() -> None:
    log = events(TINY)
    assert build_training_examples(log, days=[]).schema == pl.Schema(EXAMPLE_SCHEMA)
    assert build_training_examples(log, days=[D + 30 * DAYS]).schema == pl.Schema(EXAMPLE_SCHEMA)
    assert build_training_examples(log.clear(), days=[D]).height == 0
    with pytest.raises(ValueError, match="session_id"):
        build_training_examples(log.drop("session_id"), days=[D])
    with pytest.raises(ValueError, match="positive"):
        build_training_examples(log, days=[D], horizon=dt.timedelta(0))
    with pytest.raises(ValueError, match="timezone-aware"):
        user_features(log, dt.datetime(2026, 3, 10))


# --- sessions ---------------------------------------------------------------------------------


def test_sessions() -> None:
    out = sessions(events(TINY))
    assert dict(out.schema) == SESSION_SCHEMA
    assert out["session_id"].to_list() == ["s9", "s1"]  # by start
    s1 = out.filter(pl.col("session_id") == "s1").to_dicts()[0]
    assert s1 == {
        "session_id": "s1", "user_id": "u1", "start": T0 - 30 * M, "end": T0, "duration_s": 1800.0,
        "n_events": 3, "n_views": 2, "n_carts": 1, "n_purchases": 0, "converted": False,
    }  # fmt: skip
    bought = sessions(events([*TINY, ("buy", "u1", T0 + M, "purchase", 1, "s1", 110.0)]))
    assert bought.filter(pl.col("session_id") == "s1")["converted"].item() is True


# --- summaries --------------------------------------------------------------------------------


def test_feature_summaries_match_numpy() -> None:
    values = [3.0, None, 1.0, 7.5, float("nan"), 2.0, 2.0, 10.0]
    frame = pl.DataFrame(
        {
            "x": values,
            "n": pl.Series([1, 2, None, 4, 5, 6, 7, 8], dtype=pl.Int64),
            "cat": ["a", "b", None, "a", "c", "b", "a", None],
        }
    )
    out = feature_summaries(frame, ["x", "n", "cat"], categorical=["cat"], day=D)
    assert dict(out.schema) == SUMMARY_SCHEMA
    assert out["feature"].to_list() == ["x", "n", "cat"]
    assert out["kind"].to_list() == ["numeric", "numeric", "categorical"]
    x = out.row(0, named=True)
    finite = np.array([3.0, 1.0, 7.5, 2.0, 2.0, 10.0])
    assert x["day"] == D and x["n_rows"] == 8 and x["count"] == 6 and x["null_share"] == pytest.approx(0.25)
    assert x["mean"] == pytest.approx(finite.mean()) and x["std"] == pytest.approx(finite.std(ddof=1))
    assert (x["min"], x["max"]) == (1.0, 10.0)
    assert [x[name] for name in QUANTILES] == pytest.approx(list(np.quantile(finite, list(QUANTILES.values()))))
    n = out.row(1, named=True)
    ints = np.array([1, 2, 4, 5, 6, 7, 8])
    assert [n[name] for name in QUANTILES] == pytest.approx(list(np.quantile(ints, list(QUANTILES.values()))))
    cat = out.row(2, named=True)
    assert cat["count"] == 6 and cat["null_share"] == pytest.approx(0.25) and cat["n_distinct"] == 3
    assert json.loads(cat["top_values"]) == [
        {"value": "a", "count": 3}, {"value": "b", "count": 2}, {"value": "c", "count": 1}
    ]  # fmt: skip
    assert cat["mean"] is None and x["top_values"] is None


def test_feature_summaries_of_examples(demo_examples: pl.DataFrame) -> None:
    out = feature_summaries(demo_examples)
    assert out["feature"].to_list() == list(FEATURE_COLUMNS)
    assert out.filter(pl.col("kind") == "numeric")["feature"].to_list() == list(NUMERIC_FEATURES)
    assert out.filter(pl.col("kind") == "numeric")["p50"].null_count() == 0
    assert len(json.loads(out.filter(pl.col("feature") == "category")["top_values"].item())) <= 50
    empty = feature_summaries(demo_examples.clear())
    assert dict(empty.schema) == SUMMARY_SCHEMA and empty["null_share"].null_count() == empty.height
