"""Reading landing files of every supported kind, and rejecting the unreadable ones whole."""

import datetime as dt
import io
import json
from unittest import mock
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dataplatform.lib import readers
from dataplatform.lib.readers import FileRejection, ParsedFile, file_format, read_landing_file, stack_records
from factories import event, gzip_bytes, jsonl_bytes, parquet_bytes


def parsed(name: str, data: bytes) -> ParsedFile:
    result = read_landing_file(name, data)
    assert isinstance(result, ParsedFile), result
    return result


def rejected(name: str, data: bytes) -> FileRejection:
    result = read_landing_file(name, data)
    assert isinstance(result, FileRejection), result
    return result


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.jsonl", "jsonl"), ("a.JSONL.GZ", "jsonl"), ("a.ndjson", "jsonl"), ("x/a.csv.gz", "csv"),
     ("a.parquet", "parquet"), ("a.json", None), ("a.txt", None), ("jsonl", None)],
)  # fmt: skip
def test_format_comes_from_the_suffix(name: str, fmt: str | None) -> None:
    assert file_format(name) == fmt


def test_jsonl_values_are_read_as_text_with_line_numbers() -> None:
    result = parsed("a.jsonl", jsonl_bytes([event(1), event(2, price="12.5", flag=True)]))
    assert set(result.records.schema.values()) == {pl.String, pl.Int64}  # text + source_row
    assert result.records["source_row"].to_list() == [1, 2]
    assert [float(v) for v in result.records["price"]] == [11.0, 12.5]
    assert result.records["flag"].to_list() == [None, "true"]


def test_broken_json_lines_are_set_aside_with_their_line_numbers() -> None:
    data = jsonl_bytes([event(1)]) + b'{"user_id": "u2", \n' + b"\n" + b"[1, 2]\n" + jsonl_bytes([event(3)])
    result = parsed("a.jsonl", data)
    assert result.records["source_row"].to_list() == [1, 5]
    assert result.malformed["source_row"].to_list() == [2, 4]


def test_blank_lines_and_crlf_do_not_shift_line_numbers() -> None:
    data = b"\r\n" + jsonl_bytes([event(1)]).replace(b"\n", b"\r\n") + b"\n" + jsonl_bytes([event(2)])
    result = parsed("a.jsonl", data)
    assert result.records["source_row"].to_list() == [2, 4]


def test_utf8_bom_is_ignored() -> None:
    result = parsed("a.jsonl", b"\xef\xbb\xbf" + jsonl_bytes([event(1)]))
    assert "user_id" in result.records.columns and result.records.height == 1


def test_numbers_polars_cannot_hold_fall_back_to_the_line_reader() -> None:
    result = parsed("a.jsonl", b'{"user_id": "u", "price": 1e400}\n')
    assert result.records["price"].to_list() == ["Infinity"]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.txt", b"hello", "file:unsupported_format"),
        ("a.jsonl.gz", gzip_bytes(jsonl_bytes([event(1)]))[:-12], "file:corrupt_compression"),
        ("a.jsonl", b'{"user_id": "\xff\xfe"}\n', "file:invalid_utf8"),
        ("a.parquet", b"PAR1 not really", "file:unreadable_parquet"),
        ("a.csv", b'user_id,timestamp\n"u1,2026\n', "file:unreadable_csv"),
    ],
)
def test_unreadable_files_are_rejected_whole_with_a_reason(name: str, data: bytes, reason: str) -> None:
    result = rejected(name, data)
    assert result.reason == reason
    assert result.size == len(data)


def test_empty_files_have_no_records() -> None:
    for name in ("a.jsonl", "a.csv", "a.jsonl.gz"):
        data = gzip_bytes(b"") if name.endswith(".gz") else b""
        assert parsed(name, data).records.height == 0


def test_csv_with_quotes_and_embedded_newlines_and_reordered_headers() -> None:
    data = b'event_type,user_id,brand,timestamp\nview,u1,"Acme, ""Inc""\nEurope",2026-03-01T10:00:00Z\n'
    result = parsed("a.csv", data)
    assert result.records["brand"].to_list() == ['Acme, "Inc"\nEurope']
    assert result.records["source_row"].to_list() == [1]


def test_parquet_keeps_types_the_contract_takes_and_turns_the_rest_into_text() -> None:
    berlin = dt.datetime(2026, 3, 1, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    frame = pl.DataFrame(
        {"user_id": ["u1"], "timestamp": [berlin], "seen_at": [berlin], "product_id": [5], "tags": [["a", "b"]]}
    )
    result = parsed("a.parquet", parquet_bytes(frame))
    row = result.records.row(0, named=True)
    assert row["timestamp"] == berlin  # a contract column in a dtype the contract converts exactly: kept
    assert row["product_id"] == 5
    assert row["seen_at"] == "2026-03-01T11:00:00.000000+00:00"  # not a contract column: UTC text
    assert row["tags"] == '["a","b"]'


def test_a_column_typed_in_one_file_and_text_in_another_is_stacked_as_text() -> None:
    typed = parsed("a.parquet", parquet_bytes(pl.DataFrame({"timestamp": [dt.datetime(2026, 3, 1, 12, 0)]})))
    text = parsed("b.jsonl", b'{"timestamp": "2026-03-01T13:00:00Z"}\n')
    stacked = stack_records([typed.records, text.records])
    assert stacked["timestamp"].to_list() == ["2026-03-01T12:00:00.000000+00:00", "2026-03-01T13:00:00Z"]


def test_column_names_are_trimmed_lowercased_and_reserved_names_kept_aside() -> None:
    result = parsed("a.jsonl", b'{" User_ID ": "u1", "source_row": 9}\n')
    assert result.records.columns == ["user_id", "input_source_row", "source_row"]
    assert result.records["source_row"].to_list() == [1]


def test_a_bad_line_deep_in_a_big_file_is_found_without_losing_its_neighbours() -> None:
    good = [event(i) for i in range(5000)]
    data = jsonl_bytes(good[:3000]) + b'{"user_id": "u", "price": 1e400}\n' + jsonl_bytes(good[3000:]) + b'{"a": }\n'
    result = parsed("a.jsonl", data)
    assert result.records.height == 5001
    assert result.malformed["source_row"].to_list() == [5002]


KEYS = st.sampled_from(["user_id", "User_ID", " user_id", "price", "ts", "é", 'a"b', "user\\u005fid", "x" * 40])
SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=6
)
OBJECT_LISTS = st.one_of(
    st.lists(st.dictionaries(KEYS, SCALARS, max_size=4), min_size=1, max_size=12),  # the sampled path
    st.lists(st.dictionaries(KEYS, JSON_VALUES, max_size=4), min_size=1, max_size=12),  # nested: the full pass
)


@settings(max_examples=200, deadline=None)
@given(objects=OBJECT_LISTS)
# Polars cannot infer one type for an array and an object: the full pass fails and the lines are read
# one by one, which spells the nested key right; Polars' own text of the object would not.
@example(objects=[{}, {"User_ID": []}, {"User_ID": {'a"b': None}}])
def test_property_a_file_read_with_keys_from_a_sample_reads_as_with_keys_from_every_line(
    objects: list[dict[str, object]],
) -> None:
    # A sample of two lines: keys first seen further down, in nested objects, spelled with escapes or
    # holding values of other types must still give exactly the records of a full inference pass.
    data = "\n".join(json.dumps(o).replace("user_id", "user\\u005fid", 1) for o in objects).encode()
    with mock.patch.object(readers, "SCHEMA_SAMPLE_LINES", 2):
        sampled = read_landing_file("f.jsonl", data)
    with mock.patch.object(readers, "SCHEMA_SAMPLE_LINES", len(objects)):
        full = read_landing_file("f.jsonl", data)
    assert isinstance(sampled, ParsedFile) and isinstance(full, ParsedFile)
    assert sampled.records.equals(full.records)
    assert sampled.malformed.equals(full.malformed)


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


CSV_TEXT = st.text(alphabet='ab ,"\r\n\x00é', max_size=6)
CSV_ROWS = st.lists(
    st.one_of(st.just(""), st.lists(CSV_TEXT, min_size=3, max_size=3).map(lambda row: ",".join(map(_csv_field, row)))),
    max_size=25,
)


def _streamed(name: str, data: bytes, piece_bytes: int) -> FileRejection | pl.DataFrame:
    """The file read as the ingest reads a large one: a checking pass, then pieces."""
    sha, _, rejection = readers.check_stream(name, io.BytesIO(data), piece_bytes)
    if rejection is not None:
        return rejection
    pieces = [p.records for p in readers.read_pieces(name, io.BytesIO(data), sha, piece_bytes)]
    return pl.concat(pieces, how="diagonal_relaxed") if pieces else pl.DataFrame(schema={"source_row": pl.Int64})


def _same_as_whole(name: str, data: bytes, piece_bytes: int) -> None:
    whole, streamed = read_landing_file(name, data), _streamed(name, data, piece_bytes)
    if isinstance(whole, FileRejection) or isinstance(streamed, FileRejection):
        assert isinstance(whole, FileRejection) and isinstance(streamed, FileRejection), (whole, streamed)
        assert streamed.reason == whole.reason
        return
    if whole.records.height == streamed.height == 0:
        return  # no records: the columns a header alone names are of no consequence
    assert streamed.select(sorted(streamed.columns)).equals(whole.records.select(sorted(whole.records.columns)))


@settings(max_examples=300, deadline=None)
@given(rows=CSV_ROWS, crlf=st.booleans(), piece_bytes=st.integers(1, 64), gzipped=st.booleans())
def test_property_csv_in_pieces_gives_the_records_read_whole(
    rows: list[str], crlf: bool, piece_bytes: int, gzipped: bool
) -> None:
    # Quoted commas, quotes and line ends, blank lines and CRLF: the pieces are cut at record ends only.
    text = ("\r\n" if crlf else "\n").join(["Event_ID,b, c", *rows]) + "\n"
    data = gzip_bytes(text.encode()) if gzipped else text.encode()
    _same_as_whole("f.csv.gz" if gzipped else "f.csv", data, piece_bytes)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet='ab,"\n', max_size=80), piece_bytes=st.integers(1, 32))
@example(text='a,b\n1,x"y\n2,z\n', piece_bytes=4)  # a stray quote: Polars fails the file
@example(text="a,b\n1,2,3\n", piece_bytes=4)  # a row with too many fields
def test_property_any_csv_text_is_rejected_or_read_alike_in_pieces(text: str, piece_bytes: int) -> None:
    # Text that is not well-formed CSV (stray quotes, ragged rows): rejected in both ways, or read alike.
    _same_as_whole("f.csv", text.encode(), piece_bytes)
