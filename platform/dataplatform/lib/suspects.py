"""Suspect days: days whose data passed the contract but look corrupted rather than drifted.

A day is suspect when `quality/event_distributions` flagged a shift of a column, or `warehouse/events`
a volume anomaly (events of the day or of one type outside its weekday-adjusted band), that began
abruptly and did not persist (:func:`transient_shift_days`):

* abrupt: on the first day of a column's run of flagged days, its effect was at least
  :data:`ABRUPT_SCORE` times its learned threshold (for a volume: its distance from the band's centre
  at least that many times the band's half-width, 9 robust sd). A producer's unit switch,
  relabelling or flood moves its share of records at once; drift builds up and crosses its threshold
  gently.
* not persisted: the column's run of consecutive flagged days is shorter than
  :data:`SHIFT_PERSIST_DAYS`. The run ends when the days after it are no longer flagged against
  the days before it (suspect days stay out of their reference), so "transient" is judged against
  both sides once the days after exist.
  A shift that lasts is the new normal, and must train (that is what retraining is for).

Suspect days stay out of every training set and holdout, and out of the tier-2 reference and
threshold history, until an operator accepts them:

    python -m dataplatform.lib.suspects list
    python -m dataplatform.lib.suspects accept 2026-03-15 --note "promotion week, prices are real"

An acceptance records who, when and why in table `accepted_days`, and accepts the day's implausible
records (`suspect_events`) for training with it; accepting a day again changes nothing (the first
record stands).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from collections.abc import Mapping
from typing import Any

from dataplatform.lib import warehouse
from dataplatform.lib.settings import Settings

REFERENCE_DAYS = 7  # the tier-2 reference: the week before a day
# A flagged shift that lasts this many days running is the new normal; a shorter one is suspect
# (twice the reference week: a week of corruption must not become the normal).
SHIFT_PERSIST_DAYS = 2 * REFERENCE_DAYS
# A column's run of flagged days is abrupt when its first day's effect is this many times its threshold
# (measured on 15% of a day's records: prices in cents scored 43-71, views relabelled as purchases 9-11;
# clean days flagged against default thresholds scored 1.0-1.6).
ABRUPT_SCORE = 3.0


def transient_shift_days(
    flagged: Mapping[str, Mapping[dt.date, float]],
    *,
    persist_days: int = SHIFT_PERSIST_DAYS,
    abrupt_score: float = ABRUPT_SCORE,
) -> dict[dt.date, str]:
    """The days that are suspect, each with why, from the days each column was flagged on (column ->
    day -> effect / threshold).

    Runs are per column: a column flagged on consecutive days is one shift, whatever other columns
    did (the daily noise of one column must not join another column's corruption into a run long
    enough to pass for drift). A run that lasted ``persist_days`` or more is a change that persisted
    (the new normal), and a run that began below ``abrupt_score`` is drift building up: both stay in.
    A shorter abrupt run, ended or still going, cannot yet be told from corruption; its days are
    suspect. Suspect days are left out of the reference and threshold history of the days after them,
    or a corrupted stretch becomes the "normal" that hides the rest of itself (measured on a week of
    relabelled events: its last day passed, and the four clean days after it were flagged)."""
    out: dict[dt.date, str] = {}
    for column, scores in sorted(flagged.items()):
        run: list[dt.date] = []
        for day in [*sorted(scores), None]:  # None closes the last run
            if run and (day is None or day - run[-1] != dt.timedelta(days=1)):
                if len(run) < persist_days and scores[run[0]] >= abrupt_score:
                    why = (
                        f"{column}: abrupt shift ({scores[run[0]]:.3g}x its threshold on {run[0]}) flagged "
                        f"{run[0]}..{run[-1]}, {len(run)} < {persist_days} days"
                    )
                    out.update({d: f"{out[d]}; {why}" if d in out else why for d in run})
                run = []
            if day is not None:
                run.append(day)
    return out


def flagged_days(con: Any, since: dt.date, until: dt.date) -> dict[str, dict[dt.date, float]]:
    """Per column, the days in [since, until) that `quality/event_distributions` flagged it, with its
    effect as a multiple of its threshold; and per volume measure (`volume:<measure>`), the days
    `warehouse/events` found it outside its band, with its distance from the band's centre in
    half-widths of the band."""
    rows = con.execute(
        "SELECT column_name, event_date, effect_size / threshold FROM distribution_drift "
        "WHERE dataset = 'events' AND drifted AND threshold > 0 AND event_date >= ? AND event_date < ? "
        "UNION ALL SELECT 'volume:' || measure, event_date, score FROM daily_volume "
        "WHERE score > 1 AND event_date >= ? AND event_date < ?",
        [since, until, since, until],
    ).fetchall()
    out: dict[str, dict[dt.date, float]] = {}
    for column, day, score in rows:
        out.setdefault(column, {})[day] = float(score)
    return out


def accepted_days(con: Any) -> dict[dt.date, str]:
    rows = con.execute("SELECT event_date, accepted_by, accepted_at, note FROM accepted_days").fetchall()
    return {day: f"accepted by {who} at {when:%Y-%m-%d %H:%M} UTC: {note}" for day, who, when, note in rows}


def suspect_days(con: Any, since: dt.date, until: dt.date) -> dict[dt.date, str]:
    """Suspect days in [since, until), each with why; accepted days are not suspect.

    Runs are judged whole: flags from up to ``SHIFT_PERSIST_DAYS`` before ``since`` are read too."""
    flagged = flagged_days(con, since - dt.timedelta(days=SHIFT_PERSIST_DAYS), until)
    accepted = accepted_days(con)
    return {
        day: why for day, why in transient_shift_days(flagged).items() if since <= day < until and day not in accepted
    }


def accept_day(con: Any, day: dt.date, *, by: str, note: str, now: dt.datetime | None = None) -> bool:
    """Record that an operator accepts `day`'s data; False when it was accepted already (no-op)."""
    if not by.strip() or not note.strip():
        raise ValueError("an acceptance needs who accepts it and a note saying why")
    before = warehouse.scalar(con, "SELECT count(*) FROM accepted_days WHERE event_date = ?", [day])
    con.execute(
        "INSERT INTO accepted_days VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [day, by.strip(), now or dt.datetime.now(dt.UTC), note.strip()],
    )
    return bool(before == 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="suspect and accepted days")
    listing.add_argument(
        "--since", type=dt.date.fromisoformat, default=dt.date(1970, 1, 1), help="first day (YYYY-MM-DD)"
    )
    accept = commands.add_parser("accept", help="accept a suspect day's data for training and references")
    accept.add_argument("day", type=dt.date.fromisoformat, help="the day (YYYY-MM-DD)")
    accept.add_argument("--note", required=True, help="why the data are right")
    accept.add_argument("--by", default=getpass.getuser(), help="who accepts it (default: the current user)")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    with warehouse.connect(settings.warehouse_path) as con:
        if args.command == "accept":
            new = accept_day(con, args.day, by=args.by, note=args.note)
            print(f"{args.day}: {'accepted' if new else 'already accepted'}; {accepted_days(con)[args.day]}")
            return 0
        until = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
        for day, why in sorted(suspect_days(con, args.since, until).items()):
            print(f"{day}  suspect   {why}")
        for day, why in sorted(accepted_days(con).items()):
            print(f"{day}  accepted  {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
