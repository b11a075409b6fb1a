"""A day's health: every check that judged the day, worst first, and one verdict.

An analyst asks "did yesterday pass?" once, not once per asset. A check that failed with severity
ERROR ranks above a WARN, a check that never ran for the day ranks above a pass (silence is not
health), and the verdict names the worst.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import polars as pl


class Outcome(Enum):
    ERROR = "error"
    WARN = "warn"
    NOT_RUN = "not run"
    PASSED = "passed"


RANK = {outcome: rank for rank, outcome in enumerate(Outcome)}


@dataclass(frozen=True)
class CheckOutcome:
    asset: str  # the asset key as the UI writes it, e.g. warehouse/events
    check: str
    outcome: Outcome
    detail: str  # what the check itself said: its status or decision, when it gave one


def health_table(outcomes: Sequence[CheckOutcome]) -> pl.DataFrame:
    """One row per check: outcome, asset, check, detail; worst first, then by asset and check."""
    frame = pl.DataFrame(
        {
            "outcome": [o.outcome.value for o in outcomes],
            "rank": [RANK[o.outcome] for o in outcomes],
            "asset": [o.asset for o in outcomes],
            "check": [o.check for o in outcomes],
            "detail": [o.detail for o in outcomes],
        },
        schema={"outcome": pl.String, "rank": pl.Int64, "asset": pl.String, "check": pl.String, "detail": pl.String},
    )
    return frame.sort(["rank", "asset", "check"]).drop("rank")


def counts(outcomes: Sequence[CheckOutcome]) -> dict[Outcome, int]:
    return {kind: sum(o.outcome is kind for o in outcomes) for kind in Outcome}


def verdict(outcomes: Sequence[CheckOutcome]) -> str:
    """ "passed" when every check of the day passed; otherwise what fell short, worst first."""
    tally = counts(outcomes)
    if not outcomes:
        return "no checks ran for this day"
    short = [f"{tally[k]} {k.value}" for k in (Outcome.ERROR, Outcome.WARN, Outcome.NOT_RUN) if tally[k]]
    if not short:
        return f"passed: all {len(outcomes)} checks"
    worst = min((o for o in outcomes if o.outcome is not Outcome.PASSED), key=lambda o: RANK[o.outcome])
    return f"{', '.join(short)} of {len(outcomes)} checks; worst: {worst.asset} {worst.check}"
