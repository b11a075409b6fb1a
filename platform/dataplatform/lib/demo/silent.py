"""Silent corruption for scenarios: records that stay valid under the event contract but are wrong.

Each kind is something a producer really does. The platform's detectors learn from history, not
from this list: `product_swap` and `replayed_traffic` have no rule written for them.

- `prices_in_cents`: the price field switched to another unit (x100);
- `views_as_purchases`: one event type relabelled as another;
- `placeholder_user`: a placeholder id instead of the real user (one "user" floods the day);
- `product_swap`: product ids shuffled between records (a broken join upstream);
- `replayed_traffic`: a slice of last week's traffic sent again as today's, under new event ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum

import numpy as np
import polars as pl


class SilentKind(StrEnum):
    PRICES_IN_CENTS = "prices_in_cents"
    VIEWS_AS_PURCHASES = "views_as_purchases"
    PLACEHOLDER_USER = "placeholder_user"
    PRODUCT_SWAP = "product_swap"
    REPLAYED_TRAFFIC = "replayed_traffic"


PLACEHOLDER_USER_ID = "0"


def _corrupt_day(rows: pl.DataFrame, earlier: pl.DataFrame, kind: SilentKind, share: float, seed: int) -> pl.DataFrame:
    """The day with about `share` of its records changed by `kind`; column `silent` marks the changed ones."""
    rng = np.random.default_rng(seed)
    bad = rng.random(rows.height) < share
    rows = rows.with_columns(pl.Series("silent", bad))
    changed = pl.col("silent")
    if kind is SilentKind.PRICES_IN_CENTS:
        return rows.with_columns(pl.when(changed).then(pl.col("price") * 100).otherwise(pl.col("price")).alias("price"))
    if kind is SilentKind.VIEWS_AS_PURCHASES:
        rows = rows.with_columns(changed & (pl.col("event_type") == "view"))
        relabelled = pl.when(changed).then(pl.lit("purchase")).otherwise(pl.col("event_type"))
        return rows.with_columns(relabelled.alias("event_type"))
    if kind is SilentKind.PLACEHOLDER_USER:
        placeholder = pl.when(changed).then(pl.lit(PLACEHOLDER_USER_ID)).otherwise(pl.col("user_id"))
        return rows.with_columns(placeholder.alias("user_id"))
    if kind is SilentKind.PRODUCT_SWAP:
        order = np.arange(rows.height)
        picked = np.flatnonzero(bad)
        order[picked] = rng.permutation(picked)
        return rows.with_columns(pl.col("product_id").gather(pl.Series(order)))
    # REPLAYED_TRAFFIC: last week's records again, a week later, under new ids (the day grows by `share`).
    replay = earlier.sample(n=min(int(bad.sum()), earlier.height), seed=seed) if earlier.height else earlier
    replay = replay.with_columns(
        pl.col("timestamp") + pl.duration(days=7),
        ("replay-" + pl.col("event_id")).alias("event_id"),
        ("replay-" + pl.col("session_id")).alias("session_id"),
        pl.lit(True).alias("silent"),
    ).with_columns(pl.col("timestamp").dt.date().alias("event_date"))
    return pl.concat([rows.with_columns(pl.lit(False).alias("silent")), replay.select(rows.columns)])


def inject_silent(
    frame: pl.DataFrame,
    days: Sequence[dt.date],
    *,
    kinds: Sequence[SilentKind | str] = tuple(SilentKind),
    share: float = 0.15,
    seed: int = 0,
) -> pl.DataFrame:
    """`frame` (generated events) with `days` silently corrupted, one kind per day in turn; column
    `silent` names the kind a record was changed by (null for untouched records)."""
    chosen = [SilentKind(k) for k in kinds]
    wanted = {day: chosen[i % len(chosen)] for i, day in enumerate(sorted(days))}
    untouched = frame.filter(~pl.col("event_date").is_in(list(wanted))).with_columns(
        pl.lit(None, pl.String).alias("silent")
    )
    parts = [untouched]
    for i, (day, kind) in enumerate(wanted.items()):
        earlier = frame.filter(pl.col("event_date") == day - dt.timedelta(days=7))
        rows = _corrupt_day(frame.filter(pl.col("event_date") == day), earlier, kind, share, seed + i)
        parts.append(rows.with_columns(pl.when("silent").then(pl.lit(kind.value)).otherwise(None).alias("silent")))
    return pl.concat(parts).sort("timestamp")
