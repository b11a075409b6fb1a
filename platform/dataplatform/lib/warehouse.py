"""The DuckDB warehouse: tables, the transactional commit of one ingested batch, and views.

DuckDB allows one writing process per file. Dagster runs that write take the
`duckdb_writer` pool (limit 1); `connect` still retries while another process (a
developer's shell, say) holds the lock, instead of failing at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from dataplatform.lib.contract import CONTRACT_COLUMNS

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    event_type VARCHAR NOT NULL,
    product_id BIGINT,
    category VARCHAR,
    brand VARCHAR,
    price DOUBLE,
    session_id VARCHAR,
    extras VARCHAR,
    source_file VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    event_date DATE NOT NULL,
    batch_id VARCHAR NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    batch_id VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    source_row BIGINT,
    reasons VARCHAR[] NOT NULL,
    raw_record VARCHAR,
    event_date DATE,  -- the day it counts on: its partition (history) or arrival day (stream)
    claimed_date DATE,  -- the day of its own timestamp, when that parsed
    detail VARCHAR,  -- JSON context of a reason (the record an event_id:conflict lost to)
    quarantined_at TIMESTAMPTZ NOT NULL
);
-- Warehouses created before claimed_date and detail existed.
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS claimed_date DATE;
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS detail VARCHAR;
CREATE TABLE IF NOT EXISTS ingest_batches (
    batch_id VARCHAR PRIMARY KEY,
    mode VARCHAR NOT NULL,
    partition_key VARCHAR,
    run_id VARCHAR,
    files VARCHAR[] NOT NULL,
    files_redelivered VARCHAR[] NOT NULL,
    files_rejected INTEGER NOT NULL,
    rows_in BIGINT NOT NULL,
    rows_valid BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    rows_duplicate BIGINT NOT NULL,
    rows_duplicate_in_batch BIGINT NOT NULL,
    rows_duplicate_existing BIGINT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL,
    read_seconds DOUBLE,
    transform_seconds DOUBLE,
    write_seconds DOUBLE
);
-- Batches committing piece by piece (large files) until their audit row is in; see BatchTransaction.
CREATE TABLE IF NOT EXISTS open_batches (batch_id VARCHAR PRIMARY KEY, opened_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS ingested_files (
    source_file VARCHAR NOT NULL,
    identity VARCHAR NOT NULL,
    content_sha256 VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    batch_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,  -- ingested | redelivered | rejected
    recorded_at TIMESTAMPTZ NOT NULL,
    landed_at TIMESTAMPTZ  -- when the file landed (its modification time), for plausibility of arrival
);
ALTER TABLE ingested_files ADD COLUMN IF NOT EXISTS landed_at TIMESTAMPTZ;
CREATE TABLE IF NOT EXISTS daily_event_profile (
    event_date DATE PRIMARY KEY,
    events BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    quarantine_rate DOUBLE NOT NULL,
    users BIGINT NOT NULL,
    events_view BIGINT NOT NULL,
    events_cart BIGINT NOT NULL,
    events_remove_from_cart BIGINT NOT NULL,
    events_purchase BIGINT NOT NULL,
    profiled_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS distribution_drift (
    event_date DATE NOT NULL,
    dataset VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL,
    method VARCHAR,
    statistic DOUBLE,
    p_value DOUBLE,
    effect_metric VARCHAR,
    effect_size DOUBLE,
    threshold DOUBLE,
    drifted BOOLEAN NOT NULL,
    null_share_shift DOUBLE,
    unseen_categories DOUBLE,
    n_reference BIGINT,
    n_current BIGINT,
    reason VARCHAR,
    thresholds_version VARCHAR,
    computed_at TIMESTAMPTZ NOT NULL
);
-- Records that passed the contract but not the plausibility rules (lib/plausibility.py), kept beside
-- `events` (which stays the contract's record) and replaced whole when a day is judged again.
CREATE TABLE IF NOT EXISTS suspect_events (
    event_id VARCHAR NOT NULL,
    event_date DATE NOT NULL,
    reasons VARCHAR[] NOT NULL,
    batch_id VARCHAR,
    source_file VARCHAR,
    bands_version VARCHAR NOT NULL,
    judged_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS daily_plausibility (
    event_date DATE PRIMARY KEY,
    events BIGINT NOT NULL,
    suspect BIGINT NOT NULL,
    suspect_share DOUBLE NOT NULL,
    bands_version VARCHAR NOT NULL,
    judged_at TIMESTAMPTZ NOT NULL
);
-- Each finished day's volumes against their weekday-adjusted bands (warehouse/events' volume_in_band);
-- an abrupt, transient volume anomaly makes a day suspect (lib/suspects.py).
CREATE TABLE IF NOT EXISTS daily_volume (
    event_date DATE NOT NULL, measure VARCHAR NOT NULL, value DOUBLE NOT NULL, low DOUBLE, high DOUBLE,
    weekday_factor DOUBLE NOT NULL, status VARCHAR NOT NULL, score DOUBLE, judged_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (event_date, measure)
);
-- Suspect days an operator accepted (lib/suspects.py): who, when and why.
CREATE TABLE IF NOT EXISTS accepted_days (
    event_date DATE PRIMARY KEY, accepted_by VARCHAR NOT NULL, accepted_at TIMESTAMPTZ NOT NULL,
    note VARCHAR NOT NULL
);
-- Lineage (lib/blast_radius.py reads it): what each day's certification, each training set and each
-- retraction was made of. A model version's training set is its card's data fingerprint (the registry).
CREATE TABLE IF NOT EXISTS day_certifications (
    event_date DATE PRIMARY KEY, batches VARCHAR[] NOT NULL, events BIGINT NOT NULL, passed BOOLEAN NOT NULL,
    certified_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS training_sets (
    fingerprint VARCHAR PRIMARY KEY,  -- content hash of the training examples
    train_days DATE[] NOT NULL, holdout_days DATE[] NOT NULL,
    batches VARCHAR[] NOT NULL,  -- event batches the examples' features and labels read (lookbacks included)
    "rows" BIGINT NOT NULL, holdout_rows BIGINT NOT NULL, run_id VARCHAR, built_at TIMESTAMPTZ NOT NULL
);
-- Retractions (lib/retraction.py): the audit row, and the exact rows taken out of `events` (kept so that
-- a revert restores them; the quarantine holds each as a record with reason `record:retracted`).
CREATE TABLE IF NOT EXISTS retractions (
    retraction_id VARCHAR PRIMARY KEY, selection VARCHAR NOT NULL, status VARCHAR NOT NULL,  -- active | reverted
    records BIGINT NOT NULL, note VARCHAR NOT NULL, retracted_by VARCHAR NOT NULL, retracted_at TIMESTAMPTZ NOT NULL,
    affected VARCHAR, reverted_by VARCHAR, reverted_at TIMESTAMPTZ, revert_note VARCHAR
);
CREATE TABLE IF NOT EXISTS retracted_events AS SELECT '' AS retraction_id, * FROM events LIMIT 0;
CREATE OR REPLACE VIEW suspect_reasons AS
    WITH exploded AS (SELECT event_date, unnest(reasons) AS reason FROM suspect_events)
    SELECT event_date, reason, count(*) AS records FROM exploded GROUP BY ALL;
CREATE OR REPLACE VIEW quarantine_reasons AS
    WITH exploded AS (
        SELECT CAST(quarantined_at AS DATE) AS quarantine_date, unnest(reasons) AS reason FROM quarantine
    )
    SELECT quarantine_date, reason, count(*) AS records FROM exploded GROUP BY ALL;
CREATE OR REPLACE VIEW events_daily AS
    SELECT event_date, event_type, count(*) AS events, count(DISTINCT user_id) AS users
    FROM events GROUP BY ALL;
"""

EVENT_COLUMNS = (*CONTRACT_COLUMNS, "source_file", "source_row", "event_date", "batch_id", "ingested_at")

# A held event_id is a duplicate only when every contract field equals the held record's.
SAME_CONTENT_SQL = " AND ".join(f'i."{column}" IS NOT DISTINCT FROM e."{column}"' for column in CONTRACT_COLUMNS)

AUDIT_SCHEMA = pl.Schema({
    "batch_id": pl.String(), "mode": pl.String(), "partition_key": pl.String(), "run_id": pl.String(),
    "files": pl.List(pl.String()), "files_redelivered": pl.List(pl.String()), "files_rejected": pl.Int32(),
    "rows_in": pl.Int64(), "rows_valid": pl.Int64(), "rows_quarantined": pl.Int64(), "rows_duplicate": pl.Int64(),
    "rows_duplicate_in_batch": pl.Int64(), "rows_duplicate_existing": pl.Int64(),
    "started_at": pl.Datetime("us", "UTC"), "committed_at": pl.Datetime("us", "UTC"),
    "read_seconds": pl.Float64(), "transform_seconds": pl.Float64(), "write_seconds": pl.Float64(),
})  # fmt: skip

LOCK_WAIT_SECONDS = 120.0
# The quarantine reason of a validated record an operator retracted (lib/retraction.py).
RETRACTED_REASON = "record:retracted"


def open_waiting(
    path: Path, *, read_only: bool, wait_seconds: float, on_wait: Callable[[str], None] | None = None
) -> Any:
    """A DuckDB connection to `path`, retried with backoff while another process holds the file's lock;
    the lock's IOException once `wait_seconds` have passed. `on_wait` hears when the open has to wait
    and when it got through."""
    started = time.monotonic()
    delay, tries = 0.05, 0
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
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
def connect(path: Path, *, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[Any]:
    """Open the warehouse, waiting (with backoff) while another process holds its lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if read_only and not path.exists():
        with connect(path):  # create an empty warehouse so readers see empty tables, not an error
            pass
    con = open_waiting(path, read_only=read_only, wait_seconds=wait_seconds)
    try:
        con.sql("SET TimeZone = 'UTC'")
        if not read_only:
            con.sql(SCHEMA_SQL)
        yield con
    finally:
        con.close()


BATCH_TABLES = ("events", "quarantine", "ingest_batches", "ingested_files")


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


def replace_rows(con: Any, table: str, rows: pl.DataFrame, key_columns: Sequence[str]) -> None:
    """Upsert: delete the rows whose keys `rows` holds, insert `rows` (one transaction).

    `table` and `key_columns` are names from the code, never from data.
    """
    keys = ", ".join(f'"{c}"' for c in key_columns)
    _replace(
        con,
        table,
        rows,
        lambda: con.sql(f"DELETE FROM {table} WHERE ({keys}) IN (SELECT ({keys}) FROM replacement_rows)"),
    )


def replace_day(con: Any, table: str, day: dt.date, rows: pl.DataFrame) -> None:
    """Replace all of `table`'s rows of `event_date = day` with `rows` (one transaction; no rows left
    from an earlier run of the day, even when `rows` is empty). `table` is a name from the code."""
    _replace(con, table, rows, lambda: con.execute(f"DELETE FROM {table} WHERE event_date = ?", [day]))


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
