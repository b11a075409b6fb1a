"""`./dp sql` (dataplatform.lib.sqlshell): analysts read the warehouse without ever blocking ingestion's writer.

DuckDB's file lock is per process, so the writer here is always another process."""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import duckdb
import pytest

from dataplatform.lib import sqlshell

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "platform")}
SHELL = [sys.executable, "-m", "dataplatform.lib.sqlshell"]
COUNTS = "SELECT event_type, count(*) AS n FROM events GROUP BY ALL ORDER BY event_type"

# Holds the write lock (an open read-write connection) from "locked" until told to go on (a line on stdin),
# like an ingestion run; with "--no-hold" it closes at once.
WRITER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO events VALUES ('purchase')")
print("locked", flush=True)
if sys.argv[2:] != ["--no-hold"]:
    sys.stdin.readline()
con.close()
"""


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE events AS SELECT unnest(['view', 'view', 'view', 'cart', 'cart']) AS event_type")
    return path


def start_writer(path: Path, *options: str) -> subprocess.Popen[str]:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), *options], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
    return writer


def release(writer: subprocess.Popen[str]) -> None:
    writer.communicate("go\n", timeout=60)
    assert writer.returncode == 0


def line_reader(stream: IO[str]) -> queue.Queue[str]:
    """The stream's lines, read in a thread, so a test can wait for one with a timeout."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in stream], daemon=True).start()
    return lines


def test_a_query_waits_for_the_writer_and_then_reads(warehouse: Path) -> None:
    writer = start_writer(warehouse)
    shell = subprocess.Popen(
        [*SHELL, "--db", str(warehouse), "--csv", COUNTS],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert shell.stderr is not None
    try:
        notice = line_reader(shell.stderr).get(timeout=60)
        assert notice == "[sql] the warehouse is locked by a writer (ingestion); waiting up to 30 s"
    finally:
        release(writer)  # the batch commits: the query goes on
    out, _ = shell.communicate(timeout=60)
    assert shell.returncode == 0
    assert out.splitlines() == ["event_type,n", "cart,2", "purchase,1", "view,3"]  # with the writer's row


def test_a_writer_holding_the_lock_past_the_wait_is_named(warehouse: Path) -> None:
    writer = start_writer(warehouse)
    try:
        err = io.StringIO()
        assert sqlshell.main(["--db", str(warehouse), "--wait", "0.2", COUNTS], stderr=err) == 1
    finally:
        release(writer)
    assert "still locked by a writer" in err.getvalue() and "--wait" in err.getvalue()


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM events",
        "INSERT INTO events VALUES ('view')",
        "CREATE TABLE copy AS SELECT * FROM events",
        "DROP TABLE events",
        "COPY events TO 'events.csv'",
        "ATTACH 'other.duckdb' AS other",
        "SET threads = 1",
    ],
)
def test_statements_that_write_are_refused(warehouse: Path, statement: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert sqlshell.main(["--db", str(warehouse), f"SELECT 1; {statement}"], stdout=out, stderr=err) == 1
    assert "refused" in err.getvalue() and "read-only" in err.getvalue()
    assert out.getvalue() == ""  # refused before anything ran, the SELECT before it too
    with pytest.raises(sqlshell.WriteRefused):
        sqlshell.query(statement, warehouse)
    assert sqlshell.query("SELECT count(*) AS n FROM events", warehouse)["n"].to_list() == [5]  # type: ignore[index]


def test_a_write_that_reaches_duckdb_is_refused_by_the_read_only_file(warehouse: Path) -> None:
    with pytest.raises(sqlshell.WriteRefused, match="read-only"):
        sqlshell.run_statement("INSERT INTO events VALUES ('view')", warehouse)


def test_prompt_mode_releases_the_file_between_statements(warehouse: Path) -> None:
    """Statements from stdin; between two of them a writer opens the file at once (no retry) and writes."""
    shell = subprocess.Popen(
        [*SHELL, "--db", str(warehouse), "--csv"],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert shell.stdin is not None and shell.stdout is not None
    lines = line_reader(shell.stdout)

    def ask(statement: str) -> list[str]:
        shell.stdin.write(statement + "\n")  # type: ignore[union-attr]
        shell.stdin.flush()  # type: ignore[union-attr]
        return [lines.get(timeout=60), lines.get(timeout=60)]

    try:
        assert ask("SELECT count(*) AS n\nFROM events;") == ["n", "5"]
        writer = start_writer(warehouse, "--no-hold")  # DuckDB raises at once if the shell still holds the file
        assert writer.wait(timeout=60) == 0
        assert ask("SELECT count(*) AS n FROM events WHERE event_type = 'purchase';") == ["n", "1"]
    finally:
        _, err = shell.communicate(timeout=60)
    assert shell.returncode == 0, err
    assert "waiting" not in err


def test_statements_end_at_a_semicolon_an_empty_line_or_the_end() -> None:
    lines = ["SELECT 1;", "SELECT", "  2", "", "", "SELECT 3; SELECT 4;", "SELECT 5", "\\q", "SELECT 6"]
    assert list(sqlshell.read_statements(lines)) == [
        "SELECT 1;",
        "SELECT\n  2",
        "SELECT 3; SELECT 4;",
        "SELECT 5\n\\q\nSELECT 6",
    ]
    assert list(sqlshell.read_statements(["\\q", "SELECT 1"])) == []
    assert sqlshell.split_statements("SELECT ';' AS x; SELECT 2;") == ["SELECT ';' AS x", "SELECT 2"]


def test_a_missing_warehouse_is_named_and_not_created(tmp_path: Path) -> None:
    err = io.StringIO()
    missing = tmp_path / "none.duckdb"
    assert sqlshell.main(["--db", str(missing), "SELECT 1"], stderr=err) == 1
    assert "no warehouse at" in err.getvalue() and not missing.exists()


def test_dp_runs_the_shell() -> None:
    dp = (ROOT / "dp").read_text()
    assert 'sql) shift; cmd_sql "$@" ;;' in dp and '"$PY" -m dataplatform.lib.sqlshell "$@"' in dp
    usage = subprocess.run([str(ROOT / "dp"), "help"], capture_output=True, text=True, timeout=60, check=True)
    assert "  sql [QUERY]" in usage.stdout
