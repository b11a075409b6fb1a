"""Turn the bytes of one landing file into a frame of records, one row per input record.

Values are read as text so that the contract (not the reader) decides what a value means. The one
exception is typed input (Parquet) in a column the contract names whose dtype converts exactly to the
contract's (`contract.keeps_type`): it keeps its type, and `stack_records` turns it into text only where
another file of the batch sent that column as text. Each row carries `source_file` and `source_row`
(1-based line number for JSONL, record number for CSV and Parquet). A file that cannot be read at all
becomes a `FileRejection` with a reason code instead.
"""

from __future__ import annotations

import codecs
import decimal
import gzip
import hashlib
import io
import json
import math
import re
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, cast

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dataplatform.lib.contract import in_utc, keeps_type
from dataplatform.lib.warehouse import scratch

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".csv", ".csv.gz", ".parquet")
UTF8_BOM = b"\xef\xbb\xbf"
# Quarantined whole files keep this much of their content as a preview.
REJECTED_PREVIEW_BYTES = 2048


@dataclass(frozen=True)
class ParsedFile:
    """Records of one file as text columns, plus the lines that were not records."""

    source_file: str
    content_sha256: str
    size: int
    records: pl.DataFrame  # text columns + source_row
    malformed: pl.DataFrame  # source_row, raw_record: lines that are not JSON objects


@dataclass(frozen=True)
class FileRejection:
    """A file quarantined as a whole: no record in it could be read."""

    source_file: str
    content_sha256: str
    size: int
    reason: str
    detail: str
    preview: str


MALFORMED_SCHEMA = {"source_row": pl.Int64, "raw_record": pl.String}


def file_format(name: str) -> str | None:
    lowered = name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return suffix.removesuffix(".gz").lstrip(".").replace("ndjson", "jsonl")
    return None


def read_landing_file(source_file: str, data: bytes) -> ParsedFile | FileRejection:
    """Parse one file's bytes; never raises for bad content."""
    digest = hashlib.sha256(data).hexdigest()

    def reject(reason: str, detail: str) -> FileRejection:
        preview = data[:REJECTED_PREVIEW_BYTES].decode("utf-8", errors="replace")
        return FileRejection(source_file, digest, len(data), reason, detail[:500], preview)

    fmt = file_format(source_file)
    if fmt is None:
        return reject("file:unsupported_format", f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    payload = data
    if source_file.lower().endswith(".gz"):
        try:
            payload = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            return reject("file:corrupt_compression", str(exc))
    if fmt == "parquet":
        records = _read_parquet(payload)
        if isinstance(records, str):
            return reject("file:unreadable_parquet", records)
        return ParsedFile(source_file, digest, len(data), records, pl.DataFrame(schema=MALFORMED_SCHEMA))
    if payload.startswith(UTF8_BOM):
        payload = payload[len(UTF8_BOM) :]
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject("file:invalid_utf8", str(exc))
    if fmt == "csv":
        records = _read_csv(payload)
        if isinstance(records, str):
            return reject("file:unreadable_csv", records)
        return ParsedFile(source_file, digest, len(data), records, pl.DataFrame(schema=MALFORMED_SCHEMA))
    records, malformed = _read_jsonl(text)
    return ParsedFile(source_file, digest, len(data), records, malformed)


# --- large files, in pieces ----------------------------------------------------------------------
# A JSONL file larger than one piece is read twice as a stream, never whole: a first pass checks
# what would reject the whole file (compression, UTF-8) and hashes it; a second pass cuts it at
# line ends into pieces of about `piece_bytes` that are parsed like small files, with the line
# numbers they have in the whole file. Memory stays bounded by the piece size, not the file size.
# CSV is cut the same way, at record ends (see `_CsvCutter`); Parquet is read from a copy on local disk.

STREAM_BLOCK_BYTES = 8 * 1024 * 1024


class FileChangedError(RuntimeError):
    """The file's bytes differ between the two passes: it changed while it was being read."""


# Gzipped JSON lines are typically 5-20x smaller than their content; judge a .gz file by 10x its size.
GZIP_EXPANSION_ESTIMATE = 10


# Parquet's text columns in memory take about 7x the compressed file (demo events); judge it by 8x.
PARQUET_EXPANSION_ESTIMATE = 8


def reads_in_pieces(source_file: str, size: int, piece_bytes: int) -> bool:
    """Whether the file is read as a stream, in pieces (JSONL and CSV, gzipped or not, and Parquet)."""
    fmt = file_format(source_file)
    if fmt == "parquet":
        return size * PARQUET_EXPANSION_ESTIMATE > piece_bytes
    expanded = size * GZIP_EXPANSION_ESTIMATE if source_file.lower().endswith(".gz") else size
    return fmt in ("jsonl", "csv") and expanded > piece_bytes


class _HashingReader:
    """A read-only stream that hashes and counts the bytes read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha256, self.size, self.head = raw, hashlib.sha256(), 0, b""

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        if len(self.head) < REJECTED_PREVIEW_BYTES:
            self.head += data[: REJECTED_PREVIEW_BYTES - len(self.head)]
        return data


def _payload_blocks(reader: _HashingReader, gzipped: bool) -> Iterator[bytes]:
    """The file's content (decompressed when gzipped) in blocks, without a leading UTF-8 BOM."""
    source: gzip.GzipFile | _HashingReader = (
        gzip.GzipFile(fileobj=cast(IO[bytes], reader), mode="rb") if gzipped else reader
    )
    first = True
    while block := source.read(STREAM_BLOCK_BYTES):
        if first and block.startswith(UTF8_BOM):
            block = block[len(UTF8_BOM) :]
        first = False
        yield block


def check_stream(source_file: str, stream: IO[bytes], piece_bytes: int) -> tuple[str, int, FileRejection | None]:
    """First pass over a file read in pieces: (content sha256, size, the whole file's rejection if it has one)."""
    fmt = file_format(source_file)
    if fmt == "parquet":
        return _check_parquet_stream(source_file, stream, piece_bytes)
    if fmt == "csv":
        return _check_csv_stream(source_file, stream, piece_bytes)
    reader = _HashingReader(stream)
    problem = _check_text(reader, source_file.lower().endswith(".gz"))
    return reader.sha256.hexdigest(), reader.size, _stream_rejection(source_file, reader, problem)


def read_pieces(source_file: str, stream: IO[bytes], sha256: str, piece_bytes: int) -> Iterator[ParsedFile]:
    """Second pass: the file as parsed pieces; FileChangedError if its bytes changed since the first."""
    fmt = file_format(source_file)
    if fmt == "parquet":
        return _parquet_pieces(source_file, stream, sha256, piece_bytes)
    if fmt == "csv":
        return _csv_pieces(source_file, stream, sha256, piece_bytes)
    return _jsonl_pieces(source_file, stream, sha256, piece_bytes)


def _check_text(
    reader: _HashingReader, gzipped: bool, each_block: Callable[[bytes], None] | None = None
) -> tuple[str, str] | None:
    """Read the whole stream through `reader` (so that it is hashed), checking that its content decompresses
    and is UTF-8; each block of content goes to `each_block` if given. Returns (reason, detail) of the first
    problem."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    problem: tuple[str, str] | None = None
    try:
        for block in _payload_blocks(reader, gzipped):
            if problem is None:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    problem = ("file:invalid_utf8", str(exc))
            if each_block is not None:
                each_block(block)
        if problem is None:
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        problem = ("file:invalid_utf8", str(exc))
    except (OSError, EOFError, zlib.error) as exc:
        problem = ("file:corrupt_compression", str(exc))
    while reader.read(STREAM_BLOCK_BYTES):  # hash what the decoder left unread
        pass
    return problem


def _stream_rejection(
    source_file: str, reader: _HashingReader, problem: tuple[str, str] | None
) -> FileRejection | None:
    if problem is None:
        return None
    preview = reader.head.decode("utf-8", errors="replace")
    digest = reader.sha256.hexdigest()
    return FileRejection(source_file, digest, reader.size, problem[0], problem[1][:500], preview)


def _jsonl_pieces(source_file: str, stream: IO[bytes], sha256: str, piece_bytes: int) -> Iterator[ParsedFile]:
    """The file as parsed pieces of whole lines."""
    reader = _HashingReader(stream)
    pending, first_row = b"", 1

    def piece(data: bytes) -> ParsedFile:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileChangedError(f"{source_file} changed while it was being read: {exc}") from exc
        records, malformed = _read_jsonl(text, first_row)
        return ParsedFile(source_file, sha256, len(data), records, malformed)

    blocks = _payload_blocks(reader, source_file.lower().endswith(".gz"))
    while True:
        try:
            block = next(blocks, b"")
        except (OSError, EOFError, zlib.error) as exc:  # the first pass read it cleanly: it changed since
            raise FileChangedError(f"{source_file} changed while it was being read: {exc}") from exc
        if not block:
            break
        pending += block
        while len(pending) >= piece_bytes:
            # Cut after the last line end within the piece size (or after the first beyond it, for a long line).
            cut = (pending.rfind(b"\n", 0, piece_bytes) + 1) or (pending.find(b"\n", piece_bytes) + 1)
            if cut == 0:  # a line longer than a piece: keep reading until it ends
                break
            data, pending = pending[:cut], pending[cut:]
            yield piece(data)
            first_row += data.count(b"\n")
    if reader.sha256.hexdigest() != sha256:
        raise FileChangedError(f"{source_file} changed while it was being read; its batch will be retried")
    if pending:
        yield piece(pending)


# A large Parquet file is read by row batches from a copy on local disk (a temporary file): Parquet
# needs seeks, and the copy is exactly the bytes that were hashed. Both passes convert every batch to
# text as the whole-file reader does, so a file that cannot be read is rejected before any piece.


@contextmanager
def _spooled(stream: IO[bytes]) -> Iterator[tuple[IO[bytes], _HashingReader]]:
    reader = _HashingReader(stream)
    with tempfile.TemporaryFile() as spool:
        while block := reader.read(STREAM_BLOCK_BYTES):
            spool.write(block)
        spool.seek(0)
        yield spool, reader


def _parquet_batches(spool: IO[bytes], size: int, piece_bytes: int) -> Iterator[pl.DataFrame]:
    parquet = pq.ParquetFile(spool)
    row_bytes = size * PARQUET_EXPANSION_ESTIMATE / max(1, parquet.metadata.num_rows)
    first_row = 1
    for batch in parquet.iter_batches(batch_size=max(1, int(piece_bytes / max(row_bytes, 1.0)))):
        yield _numbered(_contract_input(pl.DataFrame(pl.from_arrow(batch))), first_row)
        first_row += batch.num_rows


def _check_parquet_stream(
    source_file: str, stream: IO[bytes], piece_bytes: int
) -> tuple[str, int, FileRejection | None]:
    with _spooled(stream) as (spool, reader):
        digest = reader.sha256.hexdigest()
        try:
            for _ in _parquet_batches(spool, reader.size, piece_bytes):
                pass
        except (pa.ArrowException, pl.exceptions.PolarsError, OSError, ValueError) as exc:
            preview = reader.head.decode("utf-8", errors="replace")
            return (
                digest,
                reader.size,
                FileRejection(source_file, digest, reader.size, "file:unreadable_parquet", str(exc)[:500], preview),
            )
    return digest, reader.size, None


def _parquet_pieces(source_file: str, stream: IO[bytes], sha256: str, piece_bytes: int) -> Iterator[ParsedFile]:
    with _spooled(stream) as (spool, reader):
        if reader.sha256.hexdigest() != sha256:
            raise FileChangedError(f"{source_file} changed while it was being read; its batch will be retried")
        for records in _parquet_batches(spool, reader.size, piece_bytes):
            no_lines = pl.DataFrame(schema=MALFORMED_SCHEMA)
            yield ParsedFile(source_file, sha256, int(records.estimated_size()), records, no_lines)


# A large CSV file is cut into pieces of whole records, as JSONL is into lines, and each piece is parsed with
# the header line. A record ends at a line end outside quotes: where the count of quote characters before it
# is even, which is how RFC 4180 quoting works and how Polars itself splits a file it reads in parallel (a
# stray quote makes it fail the file, so a file whose quotes do not pair up is rejected whole, either way).
# Unlike JSONL, a CSV file can fail to parse as a whole (a row with too many fields), so the first pass
# parses every piece too: such a file is rejected before any piece, as it is when read whole.

_LINE_END, _QUOTE = 0x0A, 0x22
_LEADING_BLANK_LINES = re.compile(rb"(?:\r?\n)*")


def _record_ends(data: bytes | memoryview) -> np.ndarray:
    """Offsets just after each record end in `data` (quote parity counted from its start)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    line_ends = np.flatnonzero(raw == _LINE_END)
    quotes = np.flatnonzero(raw == _QUOTE)
    ends: np.ndarray = line_ends[np.searchsorted(quotes, line_ends) % 2 == 0] + 1
    return ends


def _record_end(data: bytes, limit: int) -> int:
    """Offset just after the last record end within the first `limit` bytes, else just after the first one
    beyond them; 0 if `data` holds no record end. Only the first `limit` bytes are scanned when they hold
    one: `pending` can be many pieces long when a block is larger than a piece."""
    within = _record_ends(memoryview(data)[:limit])
    if within.size:
        return int(within[-1])
    beyond = _record_ends(data)
    return int(beyond[0]) if beyond.size else 0


class _CsvCutter:
    """Takes a CSV file's content block by block; gives back (header, whole records) pieces of about piece_bytes."""

    def __init__(self, piece_bytes: int) -> None:
        self.piece_bytes, self.header, self.pending = piece_bytes, b"", b""

    def feed(self, block: bytes) -> list[tuple[bytes, bytes]]:
        self.pending += block
        if not self.header:
            # Polars skips blank lines before the header (not whitespace, nor a lone CR).
            self.pending = self.pending[_LEADING_BLANK_LINES.match(self.pending).end() :]  # type: ignore[union-attr]
            cut = _record_end(self.pending, 0)
            if cut == 0:
                return []
            self.header, self.pending = self.pending[:cut], self.pending[cut:]
        pieces = []
        while len(self.pending) >= self.piece_bytes:
            cut = _record_end(self.pending, self.piece_bytes)
            if cut == 0:  # a record longer than a piece (or an open quote): keep reading until it ends
                break
            pieces.append((self.header, self.pending[:cut]))
            self.pending = self.pending[cut:]
        return pieces

    def finish(self) -> list[tuple[bytes, bytes]]:
        rest, self.pending = self.pending, b""
        return [(self.header, rest)] if self.header and rest else []


def _csv_piece(header: bytes, data: bytes, first_row: int) -> tuple[pl.DataFrame, int]:
    """A piece's records numbered from `first_row`, and the number of rows it read (blank ones included)."""
    frame = pl.read_csv(io.BytesIO(header + data), infer_schema=False, raise_if_empty=False)
    return _csv_records(frame, first_row), frame.height


def _check_csv_stream(source_file: str, stream: IO[bytes], piece_bytes: int) -> tuple[str, int, FileRejection | None]:
    reader, cutter = _HashingReader(stream), _CsvCutter(piece_bytes)
    unreadable: list[tuple[str, str]] = []

    def parse(pieces: list[tuple[bytes, bytes]]) -> None:
        for header, data in pieces:
            if not unreadable:
                try:
                    _csv_piece(header, data, 1)
                except pl.exceptions.PolarsError as exc:
                    unreadable.append(("file:unreadable_csv", str(exc)))

    problem = _check_text(reader, source_file.lower().endswith(".gz"), lambda block: parse(cutter.feed(block)))
    if problem is None:
        parse(cutter.finish())
        problem = next(iter(unreadable), None)
    return reader.sha256.hexdigest(), reader.size, _stream_rejection(source_file, reader, problem)


def _csv_pieces(source_file: str, stream: IO[bytes], sha256: str, piece_bytes: int) -> Iterator[ParsedFile]:
    reader, cutter = _HashingReader(stream), _CsvCutter(piece_bytes)

    def cut() -> Iterator[tuple[bytes, bytes]]:
        for block in _payload_blocks(reader, source_file.lower().endswith(".gz")):
            yield from cutter.feed(block)
        if reader.sha256.hexdigest() != sha256:
            raise FileChangedError(f"{source_file} changed while it was being read; its batch will be retried")
        yield from cutter.finish()

    pieces, first_row, no_lines = cut(), 1, pl.DataFrame(schema=MALFORMED_SCHEMA)
    while True:
        try:
            piece = next(pieces, None)
            if piece is None:
                return
            records, rows = _csv_piece(*piece, first_row)
        except (OSError, EOFError, zlib.error, pl.exceptions.PolarsError) as exc:  # the first pass read it cleanly
            raise FileChangedError(f"{source_file} changed while it was being read: {exc}") from exc
        yield ParsedFile(source_file, sha256, len(piece[1]), records, no_lines)
        first_row += rows


def _numbered(frame: pl.DataFrame, first_row: int = 1) -> pl.DataFrame:
    return frame.with_row_index("source_row", offset=first_row).with_columns(pl.col("source_row").cast(pl.Int64))


def _read_csv(payload: bytes) -> pl.DataFrame | str:
    if not payload.strip():
        return pl.DataFrame(schema={"source_row": pl.Int64})
    try:
        frame = pl.read_csv(io.BytesIO(payload), infer_schema=False, raise_if_empty=False)
    except pl.exceptions.PolarsError as exc:
        return str(exc)
    return _csv_records(frame)


def _csv_records(frame: pl.DataFrame, first_row: int = 1) -> pl.DataFrame:
    """Normalized names, record numbers, and no blank rows. Hardening fix: a blank line (a trailing one, say)
    is no record, as in JSONL; Polars reads it as a row of nulls, which was quarantined as a phantom record
    missing every required field. (A row of bare separators, which holds no value either, is dropped too.)"""
    numbered = _numbered(_normalize_names(frame), first_row)
    return numbered.filter(~pl.all_horizontal(pl.exclude("source_row").is_null()))


def _read_parquet(payload: bytes) -> pl.DataFrame | str:
    try:
        # Hardening fix: the conversion to text is inside the try, since a Binary column holding
        # invalid UTF-8 raised out of the reader (failing the whole batch) instead of rejecting the file.
        records = _contract_input(pl.read_parquet(io.BytesIO(payload)))
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        return str(exc)
    return _numbered(records)


def _contract_input(frame: pl.DataFrame) -> pl.DataFrame:
    """Normalized names; every column as text but those whose type the contract keeps."""
    frame = _normalize_names(frame)
    return frame.select(
        pl.col(name) if keeps_type(name, dtype) else as_text(name, dtype) for name, dtype in frame.schema.items()
    )


def stack_records(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """One frame of the records of several files; a column typed in one file and text in another is text."""
    dtypes: dict[str, set[pl.DataType]] = {}
    for frame in frames:
        for name, dtype in frame.schema.items():
            dtypes.setdefault(name, set()).add(dtype)
    mixed = {name for name, seen in dtypes.items() if len(seen) > 1}
    if mixed:
        frames = [
            frame.with_columns(as_text(name, dtype) for name, dtype in frame.schema.items() if name in mixed)
            for frame in frames
        ]
    return pl.concat(frames, how="diagonal_relaxed")


def as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column of any dtype as the text the contract parses back to the same value."""
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        # Text that the contract parses back exactly: ISO-8601 in UTC with an explicit offset.
        return in_utc(name, dtype).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").alias(name)
    if isinstance(dtype, pl.Struct | pl.List | pl.Array):
        # JSON text for nested values: wrap in a one-field struct, encode, strip the wrapper.
        encoded = pl.struct(column.alias("v")).struct.json_encode()
        return encoded.str.slice(5, encoded.str.len_chars() - 6).alias(name)
    return column.cast(pl.String).alias(name)


# Chunks of at most this many lines that the columnar reader rejects are read line by line.
LINE_BY_LINE_CHUNK = 64


def _read_jsonl(text: str, first_row: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    # One pass over the lines: numbered, blank ones dropped, and a line that does not even look like an
    # object (a truncated line, say) marked to be set aside at once.
    trimmed = pl.col("raw_record").str.strip_chars()
    lines = (
        # Split by Polars, not str.split: a list of Python strings cost twice as much, holding the GIL.
        pl.LazyFrame({"raw_record": [text]})
        .select(pl.col("raw_record").str.split("\n").explode())
        .with_row_index("source_row", offset=first_row)
        .with_columns(pl.col("source_row").cast(pl.Int64), pl.col("raw_record").str.strip_chars_end("\r"))
        .filter(trimmed != "")
        .with_columns((trimmed.str.starts_with("{") & trimmed.str.ends_with("}")).alias("shaped"))
        .collect()
    )
    if lines.height == 0:
        return pl.DataFrame(schema={"source_row": pl.Int64}), pl.DataFrame(schema=MALFORMED_SCHEMA)
    shaped = pl.col("shaped")
    records, malformed = _read_object_lines(lines.filter(shaped).drop("shaped"))
    malformed = pl.concat([lines.filter(~shaped).select(list(MALFORMED_SCHEMA)), malformed]).sort("source_row")
    return records, malformed


def _read_object_lines(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Columnar read of JSON lines; a chunk that fails is halved until the bad lines are found."""
    if lines.height == 0:
        return pl.DataFrame(schema={"source_row": pl.Int64}), pl.DataFrame(schema=MALFORMED_SCHEMA)
    body = lines["raw_record"].str.join("\n").item().encode()
    try:
        names = _column_names(lines, body)
        frame = pl.read_ndjson(io.BytesIO(body), schema=dict.fromkeys(names, pl.String))
        if frame.height != lines.height:
            raise pl.exceptions.ComputeError("line count mismatch")
    except pl.exceptions.PolarsError:
        if lines.height <= LINE_BY_LINE_CHUNK:
            return _read_jsonl_line_by_line(lines)
        half = lines.height // 2
        first, second = _read_object_lines(lines[:half]), _read_object_lines(lines[half:])
        return pl.concat([first[0], second[0]], how="diagonal"), pl.concat([first[1], second[1]])
    return _normalize_names(frame).with_columns(lines["source_row"]), pl.DataFrame(schema=MALFORMED_SCHEMA)


# Lines whose keys Polars infers before the other lines' keys are only checked (see _column_names).
SCHEMA_SAMPLE_LINES = 1_000


def _column_names(lines: pl.DataFrame, body: bytes) -> list[str]:
    """Every top-level key of the lines, in the order Polars' inference over all of them gives.

    That inference pass cost a third of reading a file. When every key of every line is already among
    the keys of the first SCHEMA_SAMPLE_LINES lines, inferring those lines gives the same names in the
    same order; DuckDB's JSON reader lists the keys of all lines at a fraction of the cost. Only lines of
    plain values qualify: with a nested value, the full pass can fail (an array in one line, a number
    in another), which sends the lines to the slow path, and so must still run. Anything else (a key
    first seen further down, a line DuckDB cannot read) takes the full pass.
    """
    full_pass = pl.scan_ndjson(io.BytesIO(body), infer_schema_length=None)
    # Every nested value follows a colon; a string holding ":{" only sends the lines to the full pass.
    if lines.height <= SCHEMA_SAMPLE_LINES or lines["raw_record"].str.contains(r":\s*[\[{]").any():
        return full_pass.collect_schema().names()
    sample = lines.head(SCHEMA_SAMPLE_LINES)["raw_record"].str.join("\n").item().encode()
    names = pl.scan_ndjson(io.BytesIO(sample), infer_schema_length=None).collect_schema().names()
    try:
        with scratch() as con:
            con.register("lines", lines.select("raw_record"))
            keys = {key for (key,) in con.sql("SELECT DISTINCT unnest(json_keys(raw_record)) FROM lines").fetchall()}
    except duckdb.Error:
        return full_pass.collect_schema().names()
    return names if keys <= set(names) else full_pass.collect_schema().names()


def _read_jsonl_line_by_line(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Slow path for a small chunk the columnar reader rejected: find the bad lines."""
    rows: list[dict[str, str | None]] = []
    good_rows: list[int] = []
    bad_rows: list[int] = []
    for source_row, raw in zip(lines["source_row"], lines["raw_record"], strict=True):
        try:
            value = json.loads(raw, object_pairs_hook=_first_key_wins)
            row = _text_row(value) if isinstance(value, dict) else None
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's json can go
            row = None
        if row is None:
            bad_rows.append(source_row)
            continue
        rows.append(row)
        good_rows.append(source_row)
    names = list(dict.fromkeys(key for row in rows for key in row))
    records = pl.from_dicts(rows, schema=dict.fromkeys(names, pl.String)) if rows else pl.DataFrame()
    records = _normalize_names(records).with_columns(pl.Series("source_row", good_rows, dtype=pl.Int64))
    malformed = lines.filter(pl.col("source_row").is_in(bad_rows)).select("source_row", "raw_record")
    return records, malformed


# Hardening fixes: a line reads the same here as in the columnar reader, whatever its neighbours
# (before, a duplicated key, a deeply nested value, a lone surrogate escape or a float such as
# 5.0 made the record depend on whether a bad line shared its chunk, or crashed the batch).
def _first_key_wins(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A key repeated in one object keeps its first value, as the columnar reader does."""
    out: dict[str, object] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def _text_row(value: dict[str, object]) -> dict[str, str | None]:
    row = {str(k): v if isinstance(v, str) or v is None else _as_json_text(v) for k, v in value.items()}
    for text in (*row, *row.values()):
        if text is not None:
            text.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate escape such as "\udc00"
    return row


def _as_json_text(value: object) -> str:
    """JSON text of a non-string value; top-level finite floats spelled as Polars spells them (5.0 -> "5")."""
    if isinstance(value, float) and math.isfinite(value):
        text = format(decimal.Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return json.dumps(value, ensure_ascii=False)


# Names the platform adds to every row; an input column of the same name is kept as `input_<name>`.
RESERVED_NAMES = frozenset({"source_row", "source_file", "batch_id", "raw_record", "reasons"})


def _normalize_names(frame: pl.DataFrame) -> pl.DataFrame:
    """Trim and lower-case column names; a name that repeats after that keeps its first column."""
    seen: dict[str, str] = {}
    for name in frame.columns:
        clean = name.strip().lower()
        seen.setdefault(f"input_{clean}" if clean in RESERVED_NAMES else clean, name)
    if not seen:  # Hardening fix: `select()` of no columns drops every row: lines of `{}` crashed the batch
        return frame
    return frame.select(pl.col(original).alias(clean) for clean, original in seen.items())
