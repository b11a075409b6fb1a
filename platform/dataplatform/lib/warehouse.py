"""The DuckDB warehouse: tables, the transactional commit of one ingested batch, and views.

DuckDB allows one writing process per file. Dagster runs that write take the
`duckdb_writer` pool (limit 1); `connect` still retries while another process (a
developer's shell, say) holds the lock, instead of failing at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from dataplatform.lib import tables
from dataplatform.lib.contract import CONTRACT_COLUMNS

EVENT_COLUMNS = tuple(tables.EVENTS.columns)

# A held event_id is a duplicate only when every contract field equals the held record's.
SAME_CONTENT_SQL = " AND ".join(f'i."{column}" IS NOT DISTINCT FROM e."{column}"' for column in CONTRACT_COLUMNS)

AUDIT_SCHEMA = tables.INGEST_BATCHES.columns

LOCK_WAIT_SECONDS = 120.0
# The quarantine reason of a validated record an operator retracted (lib/retraction.py).
RETRACTED_REASON = "record:retracted"


def open_waiting(
    path: Path,
    *,
    read_only: bool,
    wait_seconds: float,
    on_wait: Callable[[str], None] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Any:
    """A DuckDB connection to `path` (with DuckDB settings `config`), retried with backoff while another
    process holds the file's lock; the lock's IOException once `wait_seconds` have passed. `on_wait` hears
    when the open has to wait and when it got through."""
    started = time.monotonic()
    delay, tries = 0.05, 0
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=dict(config or {}))
            break
        except duckdb.IOException as exc:
            waited = time.monotonic() - started
            if "lock" not in str(exc).lower() or waited >= wait_seconds:
                raise
            if on_wait and tries == 0:
                on_wait(f"the warehouse is locked by a writer (ingestion); waiting up to {wait_seconds:g} s")
            time.sleep(min(delay, wait_seconds - waited))
            delay, tries = min(delay * 2, 2.0), tries + 1
    if on_wait and tries:
        on_wait(f"got the warehouse after waiting {time.monotonic() - started:.1f} s")
    return con


_scratch_database: list[duckdb.DuckDBPyConnection] = []  # this process's in-memory database, made on first use
_scratch_lock = threading.Lock()


@contextmanager
def scratch() -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to this process's in-memory DuckDB, for SQL over frames (hashes, JSON functions).

    A cursor on one shared database costs microseconds; a new in-memory database costs about 12 ms here,
    which ingestion paid twice per batch and once per JSONL file. Each cursor is its own connection:
    frames registered on it are not seen by other threads.
    """
    with _scratch_lock:
        if not _scratch_database:
            _scratch_database.append(duckdb.connect())
        cursor = _scratch_database[0].cursor()
    try:
        yield cursor
    finally:
        cursor.close()


@contextmanager
def connect(
    path: Path,
    *,
    read_only: bool = False,
    wait_seconds: float = LOCK_WAIT_SECONDS,
    config: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Open the warehouse, waiting (with backoff) while another process holds its lock. A writing
    connection creates the declared tables (lib/tables.py) that are missing; every connection is in UTC."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if read_only and not path.exists():
        with connect(path):  # create an empty warehouse so readers see empty tables, not an error
            pass
    con = open_waiting(path, read_only=read_only, wait_seconds=wait_seconds, config=config)
    try:
        con.sql("SET TimeZone = 'UTC'")
        if not read_only:
            con.sql(tables.SCHEMA_SQL)
        yield con
    finally:
        con.close()


BATCH_TABLES = tuple(t.name for t in (tables.EVENTS, tables.QUARANTINE, tables.INGEST_BATCHES, tables.INGESTED_FILES))


class BatchTransaction:
    """One batch's writes: its parts' rows, then its audit row and file records.

    A batch of small files is one transaction: visible whole or not at all. A batch with pieces of a
    large file commits after each piece (`checkpoint`), so memory stays bounded by the piece; until
    its audit row is in, the batch is listed in `open_batches`, and its rows are removed if it fails.
    A batch is opened by deleting what an earlier attempt of it committed (a re-run replaces it) and
    what any dead attempt left open: whoever holds the writer connection is the only writer, so an
    open batch found then belongs to a run that died.
    """

    def __init__(self, con: Any, batch_id: str) -> None:
        self.con, self.batch_id, self.checkpointed = con, batch_id, False

    def _open(self) -> None:
        self.con.sql("BEGIN TRANSACTION")
        dead = [row[0] for row in self.con.sql("SELECT batch_id FROM open_batches").fetchall()]
        for batch_id in sorted({*dead, self.batch_id}):
            # Only a batch with rows pays for a scan of `events`.
            if batch_id in dead or scalar(self.con, "SELECT 1 FROM ingest_batches WHERE batch_id = ?", [batch_id]):
                for table in BATCH_TABLES:
                    _delete_batch_rows(self.con, table, batch_id)
        self.con.sql("DELETE FROM open_batches")

    def retracted_ids(self, valid: pl.DataFrame) -> pl.DataFrame:
        """The event ids of `valid` that an active retraction holds, and whether this batch delivered them
        first (`same_batch`): a retraction is an operator's decision that no re-run or re-delivery undoes."""
        self.con.register("incoming_ids", valid.select("event_id"))
        try:
            frame: pl.DataFrame = self.con.sql(
                "SELECT i.event_id, r.batch_id = ? AS same_batch FROM incoming_ids i "
                "JOIN retracted_events r USING (event_id) JOIN retractions a USING (retraction_id) "
                "WHERE a.status = 'active'",
                params=[self.batch_id],
            ).pl()
            return frame
        finally:
            self.con.unregister("incoming_ids")

    def held_ids(self, valid: pl.DataFrame) -> pl.DataFrame:
        """Rows of `valid` whose event_id the warehouse already holds, one row each.

        Columns: source_file, source_row, claimed_date, same_batch (held by an earlier part of this
        batch), same_content (every contract field equal: a duplicate; else a conflict), and the
        held record's kept_batch, kept_file, kept_row.
        """
        self.con.register("incoming", valid.select(*CONTRACT_COLUMNS, "source_file", "source_row", "event_date"))
        try:
            frame: pl.DataFrame = self.con.sql(
                f"""
                SELECT i.source_file, i.source_row, i.event_date AS claimed_date, e.batch_id = ? AS same_batch,
                       {SAME_CONTENT_SQL} AS same_content,
                       e.batch_id AS kept_batch, e.source_file AS kept_file, e.source_row AS kept_row
                FROM incoming i JOIN events e USING (event_id)
                """,
                params=[self.batch_id],
            ).pl()
            return frame
        finally:
            self.con.unregister("incoming")

    def add(self, events: pl.DataFrame, quarantine: pl.DataFrame) -> None:
        self.con.register("part_events", events.select(EVENT_COLUMNS))
        self.con.register("part_quarantine", quarantine)
        try:
            # MERGE, not INSERT: a logic error that let a held id through shows up as a reconciliation
            # failure instead of a doubled row.
            self.con.sql(
                "MERGE INTO events AS t USING part_events AS s ON t.event_id = s.event_id "
                "WHEN NOT MATCHED THEN INSERT BY NAME"
            )
            self.con.sql("INSERT INTO quarantine BY NAME SELECT * FROM part_quarantine")
        finally:
            self.con.unregister("part_events")
            self.con.unregister("part_quarantine")

    def checkpoint(self) -> None:
        """Commit what is added so far (a piece of a large file); the batch stays open until `finish`."""
        if not self.checkpointed:
            self.con.sql("INSERT INTO open_batches VALUES (?, now())", params=[self.batch_id])
            self.checkpointed = True
        self.con.sql("COMMIT")
        self.con.sql("BEGIN TRANSACTION")

    def finish(self, audit: dict[str, Any], files: pl.DataFrame) -> None:
        self.con.register("batch_audit", pl.DataFrame([audit], schema=AUDIT_SCHEMA))
        self.con.register("batch_files", files)
        try:
            self.con.sql("DELETE FROM open_batches WHERE batch_id = ?", params=[self.batch_id])
            self.con.sql("INSERT INTO ingest_batches BY NAME SELECT * FROM batch_audit")
            self.con.sql("INSERT INTO ingested_files BY NAME SELECT * FROM batch_files")
        finally:
            self.con.unregister("batch_audit")
            self.con.unregister("batch_files")

    def _discard(self) -> None:
        """After a failure: roll back, and remove the pieces already committed."""
        self.con.sql("ROLLBACK")
        if self.checkpointed:
            self.con.sql("BEGIN TRANSACTION")
            for table in ("events", "quarantine", "open_batches"):
                _delete_batch_rows(self.con, table, self.batch_id)
            self.con.sql("COMMIT")


def _delete_batch_rows(con: Any, table: str, batch_id: str) -> None:
    """What a batch attempt wrote to `table` (a name from the code). Its retracted records stay
    quarantined: they are an operator's decision, which re-running the batch must not undo."""
    if table == "quarantine":
        con.sql(
            "DELETE FROM quarantine WHERE batch_id = ? AND NOT list_contains(reasons, ?)",
            params=[batch_id, RETRACTED_REASON],
        )
    else:
        con.sql(f"DELETE FROM {table} WHERE batch_id = ?", params=[batch_id])


@contextmanager
def batch_transaction(con: Any, batch_id: str) -> Iterator[BatchTransaction]:
    """Commit on a clean exit; on an exception nothing of the batch stays (a killed process: see _open)."""
    batch = BatchTransaction(con, batch_id)
    batch._open()
    try:
        yield batch
        con.sql("COMMIT")
    except BaseException:
        batch._discard()
        raise


def batch_reconciliation(con: Any, batch_id: str) -> dict[str, Any]:
    """The audit row of a batch next to what the tables actually hold for it."""
    row = con.sql(
        """
        SELECT b.rows_in, b.rows_valid, b.rows_quarantined, b.rows_duplicate,
               (SELECT count(*) FROM events e WHERE e.batch_id = b.batch_id) AS events_in_table,
               (SELECT count(*) FROM quarantine q WHERE q.batch_id = b.batch_id) AS quarantine_in_table,
               (SELECT count(*) FROM quarantine q
                WHERE q.batch_id = b.batch_id AND list_contains(q.reasons, ?)) AS retracted
        FROM ingest_batches b WHERE b.batch_id = ?
        """,
        params=[RETRACTED_REASON, batch_id],
    ).fetchall()
    if not row:
        return {"batch_id": batch_id, "found": False, "ok": False}
    rows_in, valid, quarantined, duplicate, in_events, in_quarantine, retracted = row[0]
    # A retraction moves valid records to the quarantine: each is still in exactly one place.
    ok = (
        rows_in == valid + quarantined + duplicate
        and in_events == valid - retracted
        and in_quarantine == quarantined + retracted
    )
    return {
        "batch_id": batch_id,
        "found": True,
        "ok": ok,
        "rows_in": rows_in,
        "rows_valid": valid,
        "rows_quarantined": quarantined,
        "rows_duplicate": duplicate,
        "events_in_table": in_events,
        "quarantine_in_table": in_quarantine,
        "retracted": retracted,
    }


def day_id_reconciliation(con: Any, day: dt.date, lake_ids: pl.Series) -> tuple[int, int, int]:
    """How the warehouse's `events` of `day` differ from the lake's event ids of the day: ids only in
    the warehouse, ids only in the lake, and ids the warehouse holds more than once (all 0 when they agree)."""
    con.register("lake_day_ids", pl.DataFrame({"event_id": lake_ids}, schema={"event_id": pl.String}))
    try:
        row = con.sql(
            """
            WITH day AS (SELECT event_id FROM events WHERE event_date = ?)
            SELECT (SELECT count(*) FROM day WHERE event_id NOT IN (SELECT event_id FROM lake_day_ids)),
                   (SELECT count(*) FROM lake_day_ids WHERE event_id NOT IN (SELECT event_id FROM day)),
                   (SELECT count(*) - count(DISTINCT event_id) FROM day)
            """,
            params=[day],
        ).fetchall()[0]
    finally:
        con.unregister("lake_day_ids")
    return int(row[0]), int(row[1]), int(row[2])


def replace_rows(con: Any, table: tables.Table, rows: pl.DataFrame) -> None:
    """Upsert: delete the rows whose keys (the table's declared key) `rows` holds, insert `rows` (one
    transaction)."""
    keys = ", ".join(f'"{c}"' for c in table.key)
    _replace(
        con,
        table.name,
        rows,
        lambda: con.sql(f"DELETE FROM {table.name} WHERE ({keys}) IN (SELECT ({keys}) FROM replacement_rows)"),
    )


def replace_day(con: Any, table: tables.Table, day: dt.date, rows: pl.DataFrame) -> None:
    """Replace all of `table`'s rows of `event_date = day` with `rows` (one transaction; no rows left
    from an earlier run of the day, even when `rows` is empty)."""
    _replace(con, table.name, rows, lambda: con.execute(f"DELETE FROM {table.name} WHERE event_date = ?", [day]))


def _replace(con: Any, table: str, rows: pl.DataFrame, delete: Callable[[], object]) -> None:
    con.register("replacement_rows", rows)
    try:
        con.sql("BEGIN TRANSACTION")
        delete()
        con.sql(f"INSERT INTO {table} BY NAME SELECT * FROM replacement_rows")
        con.sql("COMMIT")
    except BaseException:
        con.sql("ROLLBACK")
        raise
    finally:
        con.unregister("replacement_rows")


def scalar(con: Any, sql: str, params: list[Any] | None = None) -> Any:
    """The first value of a query's first row (None when it returns no rows)."""
    rows = con.sql(sql, params=params).limit(1).fetchall()
    return rows[0][0] if rows else None


def table_counts(con: Any) -> dict[str, int]:
    tables = ("events", "quarantine", "ingest_batches", "ingested_files")
    return {name: scalar(con, f"SELECT count(*) FROM {name}") for name in tables}


def stream_arrivals(con: Any, batch_ids: Sequence[str]) -> pl.DataFrame:
    """When each file of the streamed batches among `batch_ids` landed: batch_id, source_file, arrived_at."""
    con.register("wanted_batches", pl.DataFrame({"batch_id": list(batch_ids)}, schema={"batch_id": pl.String}))
    try:
        frame: pl.DataFrame = con.sql(
            """
            SELECT f.batch_id, f.source_file, max(f.landed_at) AS arrived_at
            FROM ingested_files f JOIN ingest_batches b USING (batch_id)
            WHERE b.mode = 'stream' AND f.status = 'ingested' AND f.landed_at IS NOT NULL
              AND f.batch_id IN (SELECT batch_id FROM wanted_batches)
            GROUP BY ALL
            """
        ).pl()
        return frame
    finally:
        con.unregister("wanted_batches")
