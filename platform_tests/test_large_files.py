"""A JSONL, CSV or Parquet file larger than a piece is streamed in pieces: the same result as reading it whole, in
bounded memory.

The piece size is made tiny here (a few KiB), so every property of the streamed path is tested
on small files; `test_load_burst.py` measures it on a large one.
"""

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import polars as pl
import pytest

from dataplatform.lib import lakeread, warehouse
from dataplatform.lib.ingest import IngestReport, batch_id_for, ingest_batch
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LocalLanding
from dataplatform.lib.readers import FileChangedError
from factories import event, gzip_bytes, ingest_landing, jsonl_bytes, warehouse_snapshot, write_landing

PIECE = 4096
WHOLE = 1 << 40


def big_jsonl() -> bytes:
    """About 60 KiB: valid events, bad records, broken lines, blank and CRLF lines, a BOM, a repeat across pieces."""
    lines = [jsonl_bytes([event(i)]).rstrip(b"\n") for i in range(300)]
    lines[7] = b'{"event_id": "broken'  # a cut line
    lines[120] = jsonl_bytes([event(120, event_type="teleport")]).rstrip(b"\n")  # quarantined
    lines[200] = b""  # blank
    lines[250] = lines[3]  # e3 again, many pieces later
    lines[260] += b"\r"  # a CRLF line
    return b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n"


def big_csv() -> bytes:
    """About 40 KiB of CSV: a BOM, padded mixed-case headers, CRLF rows, a quoted value holding line ends and
    commas, blank lines, a quarantined record, a repeat many pieces later, and an unknown column."""
    header = "\ufeffEvent_ID, user_id ,timestamp,event_type,product_id,category,brand,price,session_id,note"
    rows = []
    for i in range(400):
        e = event(i, event_type="teleport") if i == 150 else event(3 if i == 330 else i)
        note = '"a note, with\na line end"' if i % 97 == 0 else ""
        rows.append(",".join(str(e[k]) for k in list(e)[:9]) + "," + note)
    rows[50] = ""  # blank
    rows[260] += "\r"  # a CRLF row
    return ("\n".join([header, *rows]) + "\n\n").encode()


def big_parquet() -> bytes:
    """Typed columns as producers write them (a naive datetime, integers, floats, a nested column, an unknown
    one), with bad records (a negative price, a missing user, a future time) and a repeat far apart; small row
    groups, so that pieces cut inside and across them."""
    n = 3000
    frame = pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "User_ID": [None if i == 17 else f"u{i % 50}" for i in range(n)],
            "timestamp": [dt.datetime(2026, 3, 1) + dt.timedelta(seconds=i) for i in range(n)],
            "event_type": ["view", "cart", "purchase"] * (n // 3),
            "product_id": list(range(n)),
            "price": [-1.0 if i == 1500 else i / 4 for i in range(n)],
            "tags": [{"a": i % 3, "b": [i, i + 1]} for i in range(n)],
            "campaign": [None if i % 7 else "spring" for i in range(n)],
        }
    )
    frame = frame.with_columns(
        pl.when(pl.int_range(n) == 2999).then(dt.datetime(2100, 1, 1)).otherwise(pl.col("timestamp")).alias("timestamp")
    )
    frame = pl.concat([frame, frame[5:6]])  # e5 again, thousands of rows later
    buffer = io.BytesIO()
    frame.write_parquet(buffer, row_group_size=700)
    return buffer.getvalue()


def tables(warehouse_path: Path) -> dict[str, pl.DataFrame]:
    """The warehouse without batch ids (parts are batches of their own) and without load times."""
    return {name: frame.drop("batch_id", strict=False) for name, frame in warehouse_snapshot(warehouse_path).items()}


def totals(report: IngestReport) -> tuple[int, int, int, int]:
    return report.rows_in, report.rows_valid, report.rows_quarantined, report.rows_duplicate


def read_whole_and_in_pieces(
    tmp_path: Path, name: str, data: bytes, piece_bytes: int, min_pieces: int
) -> tuple[IngestReport, dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    """Ingest the file whole (into a/) and in pieces (into b/): the same totals, events, file records and
    quarantine (with the record numbers of the whole file), and a batch that reconciles. Returns the
    pieces' report and both warehouses' tables."""
    landing = tmp_path / "landing"
    write_landing(landing, name, data)
    whole = ingest_landing(landing, Lake.local(tmp_path / "a"), tmp_path / "a.duckdb", piece_bytes=WHOLE)
    pieces = ingest_landing(landing, Lake.local(tmp_path / "b"), tmp_path / "b.duckdb", piece_bytes=piece_bytes)
    assert whole.pieces == 0 and pieces.pieces >= min_pieces
    assert totals(pieces) == totals(whole)
    a, b = tables(tmp_path / "a.duckdb"), tables(tmp_path / "b.duckdb")
    assert a["events"].equals(b["events"]) and a["files"].equals(b["files"])
    assert a["quarantine"].equals(b["quarantine"])
    with warehouse.connect(tmp_path / "b.duckdb", read_only=True) as con:
        assert warehouse.batch_reconciliation(con, pieces.batch_id)["ok"]  # one batch, one audit row
        assert con.sql("SELECT count(*) FROM ingest_batches").fetchall() == [(1,)]
    return pieces, a, b


def extras_of(frame: pl.DataFrame, event_id: str) -> list[str | None]:
    return frame.filter(pl.col("event_id") == event_id)["extras"].to_list()


@pytest.mark.parametrize("name, data", [("big.jsonl", big_jsonl()), ("big.jsonl.gz", gzip_bytes(big_jsonl()))])
def test_pieces_give_the_same_result_as_reading_the_file_whole(tmp_path: Path, name: str, data: bytes) -> None:
    pieces, _, b = read_whole_and_in_pieces(tmp_path, name, data, PIECE, min_pieces=10)
    assert totals(pieces) == (299, 296, 2, 1)  # 300 lines - 1 blank; e3 twice
    assert b["quarantine"]["source_row"].to_list() == [8, 121]
    lake = Lake.local(tmp_path / "b")
    assert lakeread.batch_ids_for_day(lake, "2026-03-01") == [pieces.batch_id]  # piece files map to the batch
    assert lake.read(lake.batch_event_keys(pieces.batch_id)).height == 296


@pytest.mark.parametrize("name, data", [("big.csv", big_csv()), ("big.csv.gz", gzip_bytes(big_csv()))])
def test_a_csv_file_in_pieces_gives_the_same_result_as_reading_it_whole(tmp_path: Path, name: str, data: bytes) -> None:
    pieces, a, b = read_whole_and_in_pieces(tmp_path, name, data, PIECE, min_pieces=5)
    assert totals(pieces) == (399, 397, 1, 1)  # 400 rows - 1 blank; e3 twice
    assert b["quarantine"]["source_row"].to_list() == [151]
    noted = extras_of(b["events"], "e194")  # a quoted value holding a comma and a line end
    assert noted == extras_of(a["events"], "e194") and "line end" in str(noted[0])


def test_a_parquet_file_in_pieces_gives_the_same_result_as_reading_it_whole(tmp_path: Path) -> None:
    pieces, a, b = read_whole_and_in_pieces(tmp_path, "big.parquet", big_parquet(), 16 * PIECE, min_pieces=5)
    assert totals(pieces) == (3001, 2997, 3, 1)
    assert b["quarantine"]["source_row"].to_list() == [18, 1501, 3000]
    assert extras_of(b["events"], "e9") == extras_of(a["events"], "e9")


def test_a_parquet_file_that_cannot_be_read_is_rejected_before_any_piece(tmp_path: Path) -> None:
    landing, wh = tmp_path / "landing", tmp_path / "wh.duckdb"
    data = big_parquet()
    write_landing(landing, "cut.parquet", data[: len(data) // 2] + data[-8:])  # the footer points into nothing
    report = ingest_landing(landing, Lake.local(tmp_path / "lake"), wh, piece_bytes=PIECE)
    assert report.pieces == 0 and report.files_rejected == 1 and report.rows_valid == 0
    with warehouse.connect(wh, read_only=True) as con:
        assert con.sql("SELECT reasons FROM quarantine").fetchall() == [(["file:unreadable_parquet"],)]


def test_a_rerun_and_a_redelivery_of_a_streamed_file_change_nothing(tmp_path: Path) -> None:
    landing, lake, wh = tmp_path / "landing", Lake.local(tmp_path / "lake"), tmp_path / "wh.duckdb"
    write_landing(landing, "big.jsonl", big_jsonl())
    first = ingest_landing(landing, lake, wh, piece_bytes=PIECE)
    before = tables(wh)
    again = ingest_landing(landing, lake, wh, piece_bytes=PIECE)  # the same batch once more (a retried run)
    assert totals(again) == totals(first) and tables(wh)["events"].equals(before["events"])

    write_landing(landing, "copy/big-again.jsonl", big_jsonl())
    store = LocalLanding(landing)
    copy = [f for f in store.list_files(100) if f.key.startswith("copy/")]
    report = ingest_batch(
        store=store, files=copy, lake=lake, warehouse_path=wh, batch_id=batch_id_for("stream", copy), mode="stream",
        piece_bytes=PIECE,
    )  # fmt: skip
    assert report.files_redelivered == ["copy/big-again.jsonl"] and report.rows_in == 0 and report.pieces == 0
    assert tables(wh)["events"].equals(before["events"])


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("cut.jsonl.gz", gzip_bytes(big_jsonl())[:-2000], "file:corrupt_compression"),
        ("latin1.jsonl", big_jsonl()[:30000] + b"\xe9t\xe9\n" + big_jsonl()[30000:], "file:invalid_utf8"),
        ("latin1.csv", big_csv()[:30000] + b"\xe9t\xe9\n" + big_csv()[30000:], "file:invalid_utf8"),
        (
            "ragged.csv",
            big_csv() + b"e9999,u1,2026-03-01T10:00:00+00:00,view,1,c,b,1.0,s,n,one too many\n",
            "file:unreadable_csv",
        ),
        ("cut.csv.gz", gzip_bytes(big_csv())[:-2000], "file:corrupt_compression"),
    ],
)
def test_a_file_that_cannot_be_read_whole_is_rejected_before_any_piece(
    tmp_path: Path, name: str, data: bytes, reason: str
) -> None:
    landing, wh = tmp_path / "landing", tmp_path / "wh.duckdb"
    write_landing(landing, name, data)
    report = ingest_landing(landing, Lake.local(tmp_path / "lake"), wh, piece_bytes=PIECE)
    assert report.pieces == 0 and report.files_rejected == 1 and report.rows_valid == 0
    with warehouse.connect(wh, read_only=True) as con:
        assert con.sql("SELECT reasons FROM quarantine").fetchall() == [([reason],)]


class ChangingLanding(LocalLanding):
    """The file is rewritten between the check pass and the piece pass."""

    def __init__(self, root: Path, name: str) -> None:
        super().__init__(root)
        self.name, self.opened = name, 0

    def open(self, key: str) -> IO[bytes]:
        self.opened += 1
        if self.opened == 2:
            write_landing(self.root, self.name, big_jsonl().replace(b'"view"', b'"cart"', 5))
        return super().open(key)


def test_a_file_that_changes_while_it_is_read_fails_the_batch_and_is_not_recorded(tmp_path: Path) -> None:
    landing, lake = tmp_path / "landing", Lake.local(tmp_path / "lake")
    write_landing(landing, "big.jsonl", big_jsonl())
    with pytest.raises(FileChangedError):
        ingest_landing(
            landing, lake, tmp_path / "wh.duckdb", piece_bytes=PIECE, store=ChangingLanding(landing, "big.jsonl")
        )
    assert lake.ledger.entries() == []  # not recorded: the sensor retries it under its new identity
    assert lake.event_keys() == [] and lake.quarantine_keys() == []  # the attempt's files are removed
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        assert con.sql("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM quarantine)").fetchall() == [(0,)]


def test_a_run_that_dies_between_parts_completes_when_run_again(tmp_path: Path) -> None:
    landing, lake, wh = tmp_path / "landing", Lake.local(tmp_path / "lake"), tmp_path / "wh.duckdb"
    write_landing(landing, "big.jsonl", big_jsonl())

    die_after_pieces(landing, lake, wh, batch_id=batch_id_for("stream", LocalLanding(landing).list_files(10)))
    with warehouse.connect(wh, read_only=True) as con:  # pieces committed, the batch still open, no audit row
        assert con.sql("SELECT count(*) FROM events").fetchall()[0][0] > 0
        assert con.sql("SELECT count(*) FROM open_batches").fetchall() == [(1,)]
        assert con.sql("SELECT count(*) FROM ingest_batches").fetchall() == [(0,)]
    assert lake.ledger.entries() == []
    assert len(lake.event_keys()) >= 4  # the dead attempt's piece files are there, named in the manifest

    # Run again, with pieces four times larger (DP_PIECE_BYTES raised in between): the same result as a
    # clean run, and the dead attempt's smaller pieces are gone.
    report = ingest_landing(landing, lake, wh, piece_bytes=4 * PIECE)
    assert totals(report) == (299, 296, 2, 1)
    clean_lake = Lake.local(tmp_path / "clean")
    clean = ingest_landing(landing, clean_lake, tmp_path / "clean.duckdb", piece_bytes=4 * PIECE)
    after, expected = tables(wh), tables(tmp_path / "clean.duckdb")
    assert all(after[name].equals(expected[name]) for name in ("events", "quarantine", "files"))
    assert totals(clean) == totals(report)
    assert [k.rsplit("/", 1)[1] for k in lake.event_keys()] == [k.rsplit("/", 1)[1] for k in clean_lake.event_keys()]
    with warehouse.connect(wh, read_only=True) as con:
        assert warehouse.batch_reconciliation(con, report.batch_id)["ok"]
        assert con.sql("SELECT count(*) FROM open_batches").fetchall() == [(0,)]


def test_pieces_of_a_dead_batch_are_removed_by_the_next_batch_whatever_it_is(tmp_path: Path) -> None:
    landing, lake, wh = tmp_path / "landing", Lake.local(tmp_path / "lake"), tmp_path / "wh.duckdb"
    write_landing(landing, "big.jsonl", big_jsonl())
    die_after_pieces(landing, lake, wh, batch_id="stream-dead")
    write_landing(landing, "small.jsonl", jsonl_bytes([event(9000)]))
    store = LocalLanding(landing)
    small = [f for f in store.list_files(10) if f.key == "small.jsonl"]
    ingest_batch(store=store, files=small, lake=lake, warehouse_path=wh, batch_id="stream-next", mode="stream")
    with warehouse.connect(wh, read_only=True) as con:
        assert con.sql("SELECT batch_id, count(*) FROM events GROUP BY ALL").fetchall() == [("stream-next", 1)]
        assert con.sql("SELECT count(*) FROM open_batches").fetchall() == [(0,)]


# A process that dies for real (os._exit: no exception handler, no cleanup) once 3 pieces are committed.
DYING_INGEST = """
import os, sys
from pathlib import Path
from dataplatform.lib.ingest import ingest_batch
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LocalLanding

landing, lake, wh, batch_id, piece_bytes = sys.argv[1:]
store = LocalLanding(Path(landing))
pieces = []

def log(message):
    pieces.append(message)
    if len(pieces) == 3:
        os._exit(9)

ingest_batch(store=store, files=store.list_files(10), lake=Lake.local(Path(lake)), warehouse_path=Path(wh),
             batch_id=batch_id, mode="stream", piece_bytes=int(piece_bytes), log=log)
"""


def die_after_pieces(landing: Path, lake: Lake, warehouse_path: Path, batch_id: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "platform")}
    root = lake.storage.root  # type: ignore[attr-defined]
    args = [str(landing), str(root), str(warehouse_path), batch_id, str(PIECE)]
    done = subprocess.run([sys.executable, "-c", DYING_INGEST, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr[-2000:]
