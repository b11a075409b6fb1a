"""Retract a selection of validated events, and revert a retraction.

    python -m dataplatform.lib.retraction retract --batch B --note "producer sent prices in cents" [--by me]
    python -m dataplatform.lib.retraction revert RETRACTION_ID --note "the prices were right"
    python -m dataplatform.lib.retraction list

A retraction (one step, with a required note):

1. takes the selected records (see `lib/blast_radius.Selection`) out of the validated data: out of
   the lake's event files (each rewritten atomically) and out of `events`, into the quarantine with
   reason `record:retracted` and the note. The exact rows are kept (`retracted_events`, and the
   affected lake files' original rows under `_retractions/`), so a revert restores them as they were,
   and the batch reconciliation counts them (rows in = valid + quarantined + duplicates still holds);
2. records its blast radius and a re-materialization plan (`_retractions/<id>.plan.json`): the
   `retraction_sensor` turns it into one Dagster backfill of every affected partition downstream;
3. if the champion was trained on the records, rolls back to the newest earlier champion that was
   not, or (when there is none) asks for a retrain: `ml/challenger_model` does not defend a champion
   trained on retracted data, so a clean challenger replaces it.

The retraction id is a hash of the selection, so repeating a retraction is a no-op; a reverted
selection can be retracted again. The lake is changed before the warehouse commits, and each step
only removes what is still there, so a killed retraction can simply be run again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from dataplatform.lib import warehouse
from dataplatform.lib.blast_radius import (
    BlastRadius,
    Selection,
    blast_radius,
    select_records,
    selection_arguments,
    selection_from,
)
from dataplatform.lib.lake import QUARANTINE_DIR, Lake
from dataplatform.lib.registry import ModelRegistry, registry_from_root
from dataplatform.lib.settings import Settings
from dataplatform.lib.storage import s3_client_from_env
from dataplatform.lib.transform import QUARANTINE_SCHEMA

RETRACTIONS_DIR = "_retractions"
LAKE_QUARANTINE_SCHEMA = {**QUARANTINE_SCHEMA, "batch_id": pl.String}

QUARANTINE_ROWS_SQL = """
SELECT batch_id, source_file, source_row, [?] AS reasons, to_json(e)::VARCHAR AS raw_record, event_date,
       event_date AS claimed_date, json_object('retraction', ?, 'note', ?)::VARCHAR AS detail
FROM events e WHERE event_id IN (SELECT event_id FROM retracting)
"""


@dataclass
class Outcome:
    retraction_id: str
    action: str  # retract | revert
    changed: bool  # False: it was already done (a repeat is a no-op)
    records: int
    champion_action: str  # what happened to the champion, in words
    plan: dict[str, Any]
    radius: BlastRadius | None = None

    def describe(self) -> str:
        if not self.changed:
            return f"{self.retraction_id}: already {self.action}ed; nothing changed"
        return (
            f"{self.retraction_id}: {self.action}ed {self.records} records; re-materializing "
            f"{len(self.plan['event_days'])} event days and {len(self.plan['feature_days'])} feature days"
            f"{' and retraining' if self.plan['retrain'] else ''}; champion: {self.champion_action}"
        )


def _archive_folder(retraction_id: str) -> str:
    return f"{RETRACTIONS_DIR}/{retraction_id}"


def _quarantine_key(retraction_id: str) -> str:
    return f"{QUARANTINE_DIR}/retracted/{retraction_id}.parquet"


def plan_key(retraction_id: str) -> str:
    return f"{RETRACTIONS_DIR}/{retraction_id}.plan.json"


def _status(con: Any, retraction_id: str) -> str | None:
    status: str | None = warehouse.scalar(
        con, "SELECT status FROM retractions WHERE retraction_id = ?", [retraction_id]
    )
    return status


def _active_ids(con: Any, except_id: str) -> pl.DataFrame:
    """Event ids that other active retractions hold."""
    frame: pl.DataFrame = con.sql(
        "SELECT event_id FROM retracted_events r JOIN retractions USING (retraction_id) "
        "WHERE status = 'active' AND retraction_id <> ?",
        params=[except_id],
    ).pl()
    return frame


def _archive(lake: Lake, retraction_id: str, records: pl.DataFrame) -> list[str]:
    """Copy, once, every lake file holding a selected record to the retraction's folder; its lake keys."""
    folder = _archive_folder(retraction_id)
    kept = _archived_keys(lake, retraction_id)
    if kept:  # a re-run after a kill: the copies of the first attempt are the originals
        return kept
    ids = records["event_id"].implode()
    for day in records["event_date"].unique().sort().to_list():
        for key in lake.event_keys(day):
            if lake.scan([key]).filter(pl.col("event_id").is_in(ids)).select(pl.len()).collect().item():
                lake.storage.write(f"{folder}/{key}", lake.storage.read(key))
                kept.append(key)
    return kept


def _archived_keys(lake: Lake, retraction_id: str) -> list[str]:
    """The lake keys of the files a retraction copied."""
    folder = _archive_folder(retraction_id)
    return [k.removeprefix(f"{folder}/") for k in lake.storage.keys(folder)]


def _rewrite_files(lake: Lake, retraction_id: str, keys: list[str], withheld: pl.Series) -> None:
    """Each archived file as it was, minus the records that `withheld` names (row order kept)."""
    folder = _archive_folder(retraction_id)
    for key in keys:
        original = lake.read([f"{folder}/{key}"])
        lake.write_parquet(key, original.filter(~pl.col("event_id").is_in(withheld.implode())))


def _plan(retraction_id: str, action: str, radius: dict[str, Any], retrain: bool) -> dict[str, Any]:
    event_days = sorted({str(row["event_date"]) for row in radius["per_day"]})
    return {
        "retraction_id": retraction_id,
        "action": action,
        "event_days": event_days,
        "feature_days": sorted(str(d) for d in radius["feature_days"]),
        "retrain": retrain,
        "planned_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def tainted_versions(con: Any) -> set[str]:
    """Model versions trained on records that an active retraction holds."""
    rows = con.execute("SELECT affected FROM retractions WHERE status = 'active'").fetchall()
    return {m["version"] for (affected,) in rows for m in json.loads(affected or "{}").get("model_versions", [])}


def _remediate_champion(registry: ModelRegistry, tainted: set[str], retraction_id: str) -> tuple[str, bool]:
    """Roll back to the newest earlier champion not trained on retracted data; else ask for a retrain."""
    record = registry.champion_record()
    if record is None or record.version not in tainted:
        return (f"{record.version if record else 'none'} is not affected", False)
    for version in reversed(record.rollback_stack):
        if version not in tainted:
            registry.rollback(to_version=version, reason=f"retraction {retraction_id}: {record.version} trained on it")
            return (f"rolled back from {record.version} to {version}, the newest champion not trained on it", False)
    return (f"{record.version} was trained on it and no earlier champion was not: retraining", True)


def retract(con: Any, lake: Lake, registry: ModelRegistry, selection: Selection, *, note: str, by: str) -> Outcome:
    """Retract the selected records (see the module docstring); a repeat is a no-op."""
    if not note.strip() or not by.strip():
        raise ValueError("a retraction needs a note saying why and who makes it")
    retraction_id = f"r{selection.fingerprint()}"
    if _status(con, retraction_id) == "active":
        records = warehouse.scalar(con, "SELECT records FROM retractions WHERE retraction_id = ?", [retraction_id])
        return Outcome(retraction_id, "retract", False, int(records), "unchanged", {})
    champion = registry.champion()
    radius = blast_radius(con, lake, selection, registry.list_versions(), champion.version if champion else None)
    records = select_records(con, selection).select("event_id", "event_date")
    if records.height == 0:
        raise ValueError(f"the selection ({selection.describe()}) matches no validated records")
    con.register("retracting", records.select("event_id"))
    try:
        params = [warehouse.RETRACTED_REASON, retraction_id, note.strip()]
        quarantine = con.sql(QUARANTINE_ROWS_SQL, params=params).pl()
        # The lake first: until the warehouse commits, a re-run finds the same records and redoes this.
        keys = _archive(lake, retraction_id, records)
        lake.write_parquet(_quarantine_key(retraction_id), quarantine.cast(LAKE_QUARANTINE_SCHEMA))
        withheld = pl.concat([records["event_id"], _active_ids(con, retraction_id)["event_id"]])
        _rewrite_files(lake, retraction_id, keys, withheld)
        con.register("retracted_quarantine", quarantine)
        _commit_retraction(con, retraction_id, selection, records.height, note, by, radius)
    finally:
        con.unregister("retracting")
        con.unregister("retracted_quarantine")
    champion_action, retrain = _remediate_champion(registry, tainted_versions(con), retraction_id)
    plan = _plan(retraction_id, "retract", radius.to_dict(), retrain or bool(radius.training_sets))
    lake.storage.write(plan_key(retraction_id), json.dumps(plan).encode())
    return Outcome(retraction_id, "retract", True, records.height, champion_action, plan, radius)


def _commit_retraction(
    con: Any, retraction_id: str, selection: Selection, records: int, note: str, by: str, radius: BlastRadius
) -> None:
    """One transaction: the rows to `retracted_events` and the quarantine, out of `events`, and the audit row."""
    con.sql("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM retracted_events WHERE retraction_id = ?", [retraction_id])
        con.execute(
            "INSERT INTO retracted_events SELECT ? AS retraction_id, * FROM events "
            "WHERE event_id IN (SELECT event_id FROM retracting)",
            [retraction_id],
        )
        con.sql("INSERT INTO quarantine BY NAME SELECT *, now() AS quarantined_at FROM retracted_quarantine")
        con.sql("DELETE FROM events WHERE event_id IN (SELECT event_id FROM retracting)")
        con.execute("DELETE FROM retractions WHERE retraction_id = ?", [retraction_id])
        con.execute(
            "INSERT INTO retractions (retraction_id, selection, status, records, note, retracted_by, retracted_at, "
            "affected) VALUES (?, ?, 'active', ?, ?, ?, now(), ?)",
            [retraction_id, json.dumps(selection.to_dict()), records, note.strip(), by.strip(),
             json.dumps(radius.to_dict())],
        )  # fmt: skip
        con.sql("COMMIT")
    except BaseException:
        con.sql("ROLLBACK")
        raise


def revert(con: Any, lake: Lake, retraction_id: str, *, note: str, by: str) -> Outcome:
    """Restore a retraction's records where they were, and plan the re-materialization; a repeat is a no-op."""
    if not note.strip() or not by.strip():
        raise ValueError("a revert needs a note saying why and who makes it")
    status = _status(con, retraction_id)
    if status is None:
        raise ValueError(f"no retraction {retraction_id!r}")
    affected = json.loads(
        warehouse.scalar(con, "SELECT affected FROM retractions WHERE retraction_id = ?", [retraction_id]) or "{}"
    )
    if status == "reverted":
        return Outcome(retraction_id, "revert", False, 0, "unchanged", {})
    withheld = _active_ids(con, retraction_id)["event_id"]
    _rewrite_files(lake, retraction_id, _archived_keys(lake, retraction_id), withheld)
    lake.storage.delete(_quarantine_key(retraction_id))
    con.sql("BEGIN TRANSACTION")
    try:
        records = warehouse.scalar(
            con, "SELECT count(*) FROM retracted_events WHERE retraction_id = ?", [retraction_id]
        )
        con.execute(
            "INSERT INTO events BY NAME SELECT * EXCLUDE (retraction_id) FROM retracted_events WHERE retraction_id = ?",
            [retraction_id],
        )
        con.execute(
            "DELETE FROM quarantine "
            "WHERE list_contains(reasons, ?) AND json_extract_string(detail, '$.retraction') = ?",
            [warehouse.RETRACTED_REASON, retraction_id],
        )
        con.execute("DELETE FROM retracted_events WHERE retraction_id = ?", [retraction_id])
        con.execute(
            "UPDATE retractions SET status = 'reverted', reverted_by = ?, reverted_at = now(), revert_note = ? "
            "WHERE retraction_id = ?",
            [by.strip(), note.strip(), retraction_id],
        )
        con.sql("COMMIT")
    except BaseException:
        con.sql("ROLLBACK")
        raise
    plan = _plan(retraction_id, "revert", affected, bool(affected.get("training_sets")))
    lake.storage.write(plan_key(retraction_id), json.dumps(plan).encode())
    return Outcome(retraction_id, "revert", True, int(records), "unchanged (a retrain follows the plan)", plan)


def list_retractions(con: Any) -> pl.DataFrame:
    frame: pl.DataFrame = con.sql(
        "SELECT retraction_id, status, records, retracted_by, retracted_at, note, reverted_by, reverted_at, "
        "selection FROM retractions ORDER BY retracted_at"
    ).pl()
    return frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    retracting = commands.add_parser("retract", help="retract the selected records (and re-materialize)")
    selection_arguments(retracting)
    reverting = commands.add_parser("revert", help="restore a retraction's records")
    reverting.add_argument("retraction_id")
    for command in (retracting, reverting):
        command.add_argument("--note", required=True, help="why")
        command.add_argument("--by", default=getpass.getuser(), help="who (default: the current user)")
    commands.add_parser("list", help="every retraction, active or reverted")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    lake = Lake.open(settings.lake_uri, s3_client_from_env)
    with warehouse.connect(settings.warehouse_path) as con:
        if args.command == "list":
            for row in list_retractions(con).iter_rows(named=True):
                print(json.dumps(row, default=str))
            return 0
        try:
            if args.command == "retract":
                registry = registry_from_root(settings.models_uri)
                outcome = retract(con, lake, registry, selection_from(args), note=args.note, by=args.by)
            else:
                outcome = revert(con, lake, args.retraction_id, note=args.note, by=args.by)
        except ValueError as exc:
            parser.error(str(exc))
    print(outcome.describe())
    if outcome.radius is not None:
        print(outcome.radius.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
