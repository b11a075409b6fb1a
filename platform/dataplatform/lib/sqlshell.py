"""Analysts' SQL on the warehouse that never gets in ingestion's way (`./dp sql`).

The warehouse is one DuckDB file with one writer: ingestion holds its write lock during each
micro-batch, and any open connection, even a read-only one, keeps the writer out. So every
statement here opens the file read-only, runs, fetches its result and closes the file before
the result is printed: the writer waits at most one query, never for an idle session. An open
that meets the writer's lock is retried with backoff (30 s by default), saying so on stderr.
Only reading statements run; a write is refused before the file is opened.

    ./dp sql "SELECT event_type, count(*) FROM events GROUP BY ALL"
    ./dp sql                # statements from a prompt or stdin, each ended by `;` or an empty line

From a notebook: `query("SELECT ...")` returns a Polars frame; `connect_read_only()` is the
retrying read-only connection (close it soon: `with connect_read_only() as con: ...`).

Pure logic: no Dagster import.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final, TextIO

import duckdb
import polars as pl

from dataplatform.lib import warehouse
from dataplatform.lib.settings import Settings

# DuckDB's message when another process holds the file's lock (duckdb.IOException).
LOCK_CONFLICT: Final = "Could not set lock on file"
DEFAULT_WAIT_SECONDS: Final = 30.0
# Statement kinds that read: SELECT (with SHOW, DESCRIBE, SUMMARIZE), EXPLAIN, PRAGMA, CALL of a table
# function, MULTI (PIVOT). The file is opened read-only anyway: DuckDB refuses what these would write.
_T = duckdb.StatementType
READ_STATEMENTS: Final = frozenset({_T.SELECT, _T.EXPLAIN, _T.PRAGMA, _T.CALL, _T.MULTI})


READ_ONLY_HINT: Final = (
    "the warehouse is opened read-only here: only SELECT, EXPLAIN, PRAGMA, CALL and PIVOT run "
    "(ingestion is its only writer)"
)


class WriteRefused(ValueError):
    """A statement that would write (or change the session): this shell only reads."""


class WarehouseBusy(TimeoutError):
    """The writer held the warehouse's lock for the whole wait."""


def warehouse_path() -> Path:
    """The warehouse file the platform writes (DP_WAREHOUSE_PATH, else under DP_DATA_DIR)."""
    return Settings.from_env().warehouse_path


def connect_read_only(
    path: Path | str | None = None,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    on_wait: Callable[[str], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse, retried with backoff while a writer holds its lock.

    `on_wait` is told once when the open has to wait, and again when it got through. Close the
    connection soon: while it is open, ingestion cannot write."""
    path = Path(path) if path is not None else warehouse_path()
    if not path.exists():  # a read-only open would fail less clearly, and must not create the file
        raise FileNotFoundError(f"no warehouse at {path} yet (./dp up or ./dp materialize creates it)")
    try:
        con: duckdb.DuckDBPyConnection = warehouse.open_waiting(
            path, read_only=True, wait_seconds=wait_seconds, on_wait=on_wait
        )
    except duckdb.IOException as exc:
        if LOCK_CONFLICT not in str(exc):
            raise
        raise WarehouseBusy(
            f"the warehouse is still locked by a writer after {wait_seconds:g} s (ingestion runs one "
            "micro-batch at a time: try again, or wait longer with --wait)"
        ) from exc
    try:
        con.execute("SET TimeZone = 'UTC'")  # as the platform's own connections
    except BaseException:
        con.close()
        raise
    return con


def split_statements(text: str) -> list[str]:
    """The statements in `text` (DuckDB's parser splits them), each checked to only read.

    Raises duckdb.ParserException for text that is not SQL, WriteRefused for a statement that writes."""
    statements = duckdb.extract_statements(text)
    for statement in statements:
        if statement.type not in READ_STATEMENTS:
            kind = statement.type.name.replace("_", " ")
            refused = f"refused: {kind} statement ({statement.query.strip()[:60]!r})"
            raise WriteRefused(f"{refused}; {READ_ONLY_HINT}")
    return [s.query.strip().removesuffix(";").strip() for s in statements]


_NESTED: Final = frozenset({"struct", "list", "map", "array", "union"})


def _fetch(con: duckdb.DuckDBPyConnection, statement: str, *, flat: bool = False) -> pl.DataFrame | None:
    """The statement's result; `flat`: nested values as DuckDB's text (CSV holds no nesting)."""
    relation = con.sql(statement)
    if relation is None:
        return None
    # Polars cannot import an INTERVAL, not even nested in a STRUCT or LIST: such columns come as text.
    columns = [
        duckdb.ColumnExpression(name).cast(duckdb.sqltypes.VARCHAR).alias(name)
        if "INTERVAL" in str(kind) or (flat and kind.id in _NESTED)
        else duckdb.ColumnExpression(name).alias(name)
        for name, kind in zip(relation.columns, relation.types, strict=True)
    ]
    frame: pl.DataFrame = relation.select(*columns).pl()
    return frame


def run_statement(
    statement: str,
    path: Path | str | None = None,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    on_wait: Callable[[str], None] | None = None,
    flat: bool = False,
) -> pl.DataFrame | None:
    """Open read-only, run one reading statement, fetch its result, close: the file is held only meanwhile.
    `flat`: nested values (STRUCT, LIST, MAP ...) as text."""
    with connect_read_only(path, wait_seconds=wait_seconds, on_wait=on_wait) as con:
        try:
            return _fetch(con, statement, flat=flat)
        except duckdb.InvalidInputException as exc:
            if "read-only mode" not in str(exc):
                raise
            raise WriteRefused(f"refused: the warehouse is opened read-only ({exc})") from exc


def query(
    sql: str,
    path: Path | str | None = None,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    on_wait: Callable[[str], None] | None = None,
) -> pl.DataFrame | None:
    """For notebooks: run the reading statement(s) in `sql`, each on its own short read-only
    connection, and return the last one's result."""
    result = None
    for statement in split_statements(sql):
        result = run_statement(statement, path, wait_seconds=wait_seconds, on_wait=on_wait)
    return result


# --------------------------------------------------------------------------------------------- CLI


def _render(frame: pl.DataFrame | None, *, csv: bool, max_rows: int) -> str:
    if frame is None:
        return "OK"
    if csv:
        return frame.write_csv().rstrip("\n")
    if frame.columns == ["explain_key", "explain_value"]:  # EXPLAIN: the plan as DuckDB draws it
        return "\n".join(frame["explain_value"].to_list())
    with pl.Config(tbl_rows=max_rows, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=200):
        return str(frame)


def _input_lines(stdin: TextIO) -> Iterator[str]:
    """Lines from a prompt (with line editing) when stdin is a terminal, else stdin's lines."""
    if not stdin.isatty():
        yield from (line.rstrip("\n") for line in stdin)
        return
    import readline  # noqa: F401  (line editing and history for input())

    prompt = "sql> "
    while True:
        try:
            line = input(prompt)
        except EOFError:
            print(file=sys.stderr)
            return
        yield line
        prompt = "sql> " if line.strip().endswith(";") or not line.strip() else " ..> "


def read_statements(lines: Iterable[str]) -> Iterator[str]:
    """Statement texts from lines: each ends at a `;` closing a line, at an empty line, or at the end
    of input. `\\q`, `.quit` or `exit` on a line of its own ends the input."""
    buffer: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not buffer and stripped in {"\\q", ".quit", ".exit", "exit", "quit"}:
            return
        if stripped:
            buffer.append(line)
        if buffer and (not stripped or stripped.endswith(";")):
            yield "\n".join(buffer)
            buffer = []
    if buffer:
        yield "\n".join(buffer)


def _run_text(text: str, args: argparse.Namespace, out: TextIO, err: TextIO) -> bool:
    """Run every statement in `text`, printing results; False at the first that fails."""

    def notice(message: str) -> None:
        print(f"[sql] {message}", file=err, flush=True)

    try:
        for statement in split_statements(text):
            frame = run_statement(statement, args.db, wait_seconds=args.wait, on_wait=notice, flat=args.csv)
            print(_render(frame, csv=args.csv, max_rows=args.max_rows), file=out, flush=True)
    except (duckdb.Error, WriteRefused, WarehouseBusy, FileNotFoundError) as exc:
        print(f"error: {exc}", file=err, flush=True)
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./dp sql",
        description="Read-only SQL on the warehouse. Each statement opens the DuckDB file read-only, runs and "
        "closes it, so ingestion is never kept waiting longer than one query; an open that meets ingestion's "
        "lock is retried. Without QUERY, statements come from a prompt (or stdin), each ended by `;` or an "
        "empty line; `\\q` or Ctrl-D ends. Each statement has its own connection: SET and temporary tables "
        "do not carry over (and are refused, like every write).",
    )
    parser.add_argument("query", nargs="?", help='statement(s) to run, e.g. "SELECT count(*) FROM events"')
    parser.add_argument("--csv", action="store_true", help="print results as CSV (every row)")
    parser.add_argument("--max-rows", type=int, default=40, metavar="N", help="rows shown of a table (default 40)")
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"how long to wait for ingestion's lock (default {DEFAULT_WAIT_SECONDS:g})",
    )
    parser.add_argument(
        "--db", type=Path, default=None, metavar="PATH", help="warehouse file (default: DP_WAREHOUSE_PATH or data/)"
    )
    return parser


def main(
    argv: list[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """0 when every statement ran, 1 when one failed (it is named on stderr), 130 on Ctrl-C at the prompt."""
    args = build_parser().parse_args(argv)
    stdin, out, err = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    if args.query is not None:
        return 0 if _run_text(args.query, args, out, err) else 1
    ok = True
    try:
        for text in read_statements(_input_lines(stdin)):
            try:
                ok = _run_text(text, args, out, err) and ok
            except KeyboardInterrupt:  # Ctrl-C during a statement cancels it, not the session
                print("cancelled", file=err, flush=True)
                ok = False
    except KeyboardInterrupt:  # Ctrl-C at the prompt ends the session
        print(file=err)
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
