"""A corpus of bad input through the real ingestion, and property tests on the contract and transform.

Every corpus case is a few small landing files with the outcome the platform promises for them:
rows in / valid / quarantined / duplicate and the exact set of reason codes (a file rejected whole
is one quarantined row with its `file:*` reason). Each case runs through `ingest_batch` with a local
landing folder, the real lake and a real DuckDB file; then the warehouse's rows are re-validated
against `EventRecord` and the lake and the warehouse must hold the same rows. Then all the cases
run again as one mixed batch and every file must come out exactly as it did alone.

Design choices followed from the README (not bugs): `event_type` is case-insensitive; a timestamp
without offset is UTC; a date alone is not a timestamp; empty optional text, price or product id
means absent; an empty `user_id` is `bad_length` and an empty `event_type` is `not_allowed`; any
JSON value of a text field is its text (`5` is user "5"); unknown columns go to `extras`; a CSV
needs a header row; a file Polars cannot parse as CSV (a stray quote, a row with too many fields)
is rejected whole; a BOM counts only at the start of a file; lines are split on `\n` only.
"""

import datetime as dt
import gzip
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplatform.lib import warehouse
from dataplatform.lib.contract import CONTRACT_COLUMNS, EVENT_TYPES, REASON_CODE_PATTERN, REQUIRED_COLUMNS, EventRecord
from dataplatform.lib.ingest import IngestReport, batch_id_for, ingest_batch
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LandingFile, LocalLanding
from dataplatform.lib.readers import ParsedFile, read_landing_file
from dataplatform.lib.storage import safe_relative_key
from dataplatform.lib.transform import TransformResult, transform
from factories import event, gzip_bytes, jsonl_bytes, parquet_bytes, write_landing

UTC = dt.UTC
T10 = dt.datetime(2026, 3, 1, 10, tzinfo=UTC)  # 1772359200 in epoch seconds
NOW = dt.datetime.now(UTC)


# --------------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    files: tuple[tuple[str, bytes], ...]
    rows: tuple[int, int, int, int]  # rows in, valid, quarantined, duplicate
    reasons: frozenset[str] = frozenset()  # every reason code in the quarantine, exactly
    rejected: str | None = None  # the reason when the (single) file is rejected whole
    expect: dict[str, list[object]] = field(default_factory=dict)  # valid rows' values, in file order
    in_mixture: bool = True  # False: its bytes repeat another case's (in one batch it would be a redelivery)


def case(id: str, name: str, data: bytes, rows: tuple[int, int, int, int], *reasons: str, **kw: object) -> Case:
    return Case(id, ((name, data),), rows, frozenset(reasons), **kw)  # type: ignore[arg-type]


def rejected(id: str, name: str, data: bytes, reason: str, **kw: object) -> Case:
    return Case(id, ((name, data),), (1, 0, 1, 0), frozenset({reason}), rejected=reason, **kw)  # type: ignore[arg-type]


def ev(tag: str, n: int, **overrides: object) -> dict[str, object]:
    """A valid event whose id and user are unique to the case (so all cases can share one batch)."""
    return event(n, **{"event_id": f"{tag}-{n}", "user_id": f"{tag}-u{n}", **overrides})


def jl(tag: str, *rows: dict[str, object]) -> bytes:
    """JSON lines: one event per dict of overrides, numbered from 1."""
    return jsonl_bytes([ev(tag, n, **row) for n, row in enumerate(rows, start=1)])


def line(tag: str, n: int, body: str) -> bytes:
    """One hand-written JSON line with the case's id; `body` is the rest of the object."""
    return f'{{"event_id":"{tag}-{n}","timestamp":"2026-03-01T10:00:00Z","event_type":"view",{body}}}\n'.encode()


def csv(tag: str, header: str, *rows: str) -> bytes:
    """CSV text; `{t}` in a row is the case's tag."""
    return (header + "\n" + "".join(row.replace("{t}", tag) + "\n" for row in rows)).encode()


def frame_bytes(tag: str, n: int = 3) -> bytes:
    return parquet_bytes(pl.DataFrame([ev(tag, i) for i in range(1, n + 1)]))


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# fmt: off
ACCEPTED_TIMESTAMPS: list[object] = [
    "2026-03-01T10:00:00+00:00", "2026-03-01T12:00:00+02:00", "2026-03-01T05:00:00-05:00", "2026-03-01T10:00:00Z",
    "2026-03-01t10:00:00z", "2026-03-01 10:00:00 UTC", "2026-03-01T10:00:00.000+0000", "2026-03-01T11:00:00+0100",
    "2026-03-01T10:00:00-00:00", "  2026-03-01T10:00:00Z  ", "2026-03-01 10:00:00", "2026-03-01T10:00:00",
    1772359200, "1772359200", 1772359200.0, "1772359200.0", 1772359200000, 1772359200000000,
]
UNPARSEABLE_TIMESTAMPS: list[object] = [
    "2026-03-01T10:00:00+02", "2026-03-01T10:00", "2026-03-01", "20260301T100000Z", "2026/03/01 10:00:00",
    "01/03/2026 10:00", "Sun, 01 Mar 2026 10:00:00 GMT", "2026-03-01T10:00:00 PST", "1e9", "NaN", "inf",
    "+1772359200", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-03-01T25:00:00Z", "10000-01-01T00:00:00Z",
    True, [2026, 3, 1], "yesterday",
]
FAR_FUTURE: list[object] = [
    "9999-12-31T23:59:59Z", "2126-01-01T00:00:00Z", 99999999999, (NOW + dt.timedelta(days=2)).isoformat(),
]
FAR_PAST: list[object] = [
    "1970-01-01T00:00:00Z", "1999-12-31T23:59:59.999999Z", "1900-01-01 00:00:00", "0001-01-01T00:00:00Z", 0, -1,
    -62135596800,
]
SQL_AND_SHELL = {
    "user_id": "x'); DROP TABLE events; --",
    "brand": "$(rm -rf /)",
    "category": "`reboot`; echo pwned > /tmp/pwned",
    "session_id": "' OR '1'='1",
}
CSV_HEADER = "event_id,user_id,timestamp,event_type,price"
CSV_OK = "{t}-%d,u%d,2026-03-01T10:00:00Z,view,1.5"
TRUNCATED_GZIP = gzip_bytes(jl("gz_truncated", *[{}] * 20))
VALID_PARQUET = frame_bytes("pq_truncated", 20)
MISSING_ALL = ("user_id:missing", "timestamp:missing", "event_type:missing")
# Looks like an object, so it goes to the columnar reader, fails there and sends its chunk line by line.
BROKEN_OBJECT = b'{"broken": }\n'


CORPUS: list[Case] = [
    # ---- valid baselines (the good files of the mixture) ----
    case("jsonl_valid", "good.jsonl", jl("jsonl_valid", *[{}] * 5), (5, 5, 0, 0)),
    case("csv_valid", "good.csv", csv("csv_valid", CSV_HEADER, *(CSV_OK % (i, i) for i in range(3))), (3, 3, 0, 0)),
    case("parquet_valid", "good.parquet", frame_bytes("parquet_valid", 4), (4, 4, 0, 0)),
    case("jsonl_gz_valid", "good.jsonl.gz", gzip_bytes(jl("jsonl_gz_valid", {}, {})), (2, 2, 0, 0)),
    case("csv_gz_valid", "good.csv.gz", gzip_bytes(csv("csv_gz_valid", CSV_HEADER, CSV_OK % (1, 1))), (1, 1, 0, 0)),

    # ---- broken JSON lines ----
    case("jsonl_broken_lines", "broken.jsonl",
         jl("jsonl_broken_lines", {})
         + b'{"user_id": "u", \nnot json\n[1, 2]\n"a string"\nnull\n42\n{\'single\': \'quotes\'}\n{"trailing": 1,}\n'
         + b'{"a": 1}{"b": 2}\n{"user_id": "a"}\x00\n',
         (11, 1, 10, 0), "record:malformed_json"),
    case("jsonl_truncated_last_line", "truncated.jsonl", jl("jsonl_truncated_last_line", {}, {}, {})[:-15],
         (3, 2, 1, 0), "record:malformed_json"),
    case("jsonl_pretty_printed_and_cr_line_ends", "pretty.jsonl",
         json.dumps(ev("jsonl_pretty", 1), indent=1).encode() + b"\n"  # one object over 11 lines
         + jl("jsonl_pretty", {}, {}).replace(b"\n", b"\r"),  # old Mac line ends: one line
         (12, 0, 12, 0), "record:malformed_json"),
    case("jsonl_empty_objects", "empty-objects.jsonl", b"{}\n { } \n", (2, 0, 2, 0), *MISSING_ALL),  # crashed (fixed)

    # ---- wrong types ----
    case("jsonl_wrong_types", "types.jsonl",
         jl("jsonl_wrong_types", {"user_id": 5}, {"user_id": True}, {"price": "12"}, {"product_id": "12.0"},
            {"product_id": [1]}, {"price": {"a": 1}}, {"event_type": 3}, {"timestamp": True}, {"product_id": 12.5},
            {"price": True}),
         (10, 4, 6, 0),
         "product_id:unparseable", "price:unparseable", "event_type:not_allowed", "timestamp:unparseable",
         expect={"user_id": ["5", "true", "jsonl_wrong_types-u3", "jsonl_wrong_types-u4"],
                 "price": [11.0, 12.0, 12.0, 14.0], "product_id": [101, 102, 103, 12]}),

    # ---- missing required fields, nulls, empty strings ----
    case("jsonl_missing_required", "missing.jsonl",
         jl("jsonl_missing_required", {"user_id": ...}, {"timestamp": ...}, {"event_type": ...},
            {"user_id": ..., "timestamp": ..., "event_type": ...}),
         (4, 0, 4, 0), *MISSING_ALL),
    case("jsonl_only_required_fields", "minimal.jsonl",
         jl("jsonl_only_required", dict.fromkeys(("event_id", "product_id", "category", "brand", "price", "session_id"),
                                                 ...)),
         (1, 1, 0, 0), expect={"price": [None], "product_id": [None], "brand": [None], "extras": [None]}),
    case("jsonl_nulls", "nulls.jsonl",
         jl("jsonl_nulls", {"user_id": None}, {"timestamp": None}, {"event_type": None}, {"price": None},
            {"product_id": None}, {"brand": None, "category": None, "session_id": None}),
         (6, 3, 3, 0), *MISSING_ALL,
         expect={"price": [None, 15.0, 16.0], "product_id": [104, None, 106], "brand": ["acme", "acme", None]}),
    case("jsonl_empty_strings", "empty-strings.jsonl",
         jl("jsonl_empty_strings", {"user_id": ""}, {"timestamp": ""}, {"event_type": ""}, {"price": ""},
            {"product_id": ""}, {"event_id": ""}, {"brand": "  ", "category": "", "session_id": " "},
            {"user_id": " \t"}),
         (8, 4, 4, 0), "user_id:bad_length", "timestamp:missing", "event_type:not_allowed",
         expect={"price": [None, 15.0, 16.0, 17.0], "product_id": [104, None, 106, 107],
                 "brand": ["acme", "acme", "acme", None], "session_id": ["s4", "s0", "s1", None]}),
    case("jsonl_control_characters", "control.jsonl",
         jl("jsonl_control_characters", {"user_id": "a\x00b"}, {"user_id": "a\u2028b"}, {"user_id": "\u200b"},
            {"user_id": "\t \n"}),
         (4, 3, 1, 0), "user_id:bad_length", expect={"user_id": ["a\x00b", "a\u2028b", "\u200b"]}),

    # ---- prices and product ids ----
    case("price_nan_inf_as_text", "nan-text.jsonl",
         jl("price_nan_inf_as_text", {"price": "NaN"}, {"price": "nan"}, {"price": "Infinity"}, {"price": "inf"},
            {"price": "-inf"}, {"price": "1e400"}),
         (6, 0, 6, 0), "price:finite", "price:below_minimum"),
    case("price_nan_inf_as_json_tokens", "nan-tokens.jsonl",  # json.dumps writes NaN, Infinity, -Infinity
         jl("price_nan_inf_as_json_tokens", {"price": math.nan}, {"price": math.inf}, {"price": -math.inf})
         + line("price_nan_inf_as_json_tokens", 4, '"user_id":"u","price":1e400'),  # overflows a double
         (4, 0, 4, 0), "price:finite", "price:below_minimum"),
    case("price_negative", "negative.jsonl",
         jl("price_negative", {"price": -0.01}, {"price": -100}, {"price": "-5"}, {"price": -0.0}, {"price": 0},
            {"price": "0.001"}),
         (6, 3, 3, 0), "price:below_minimum", expect={"price": [-0.0, 0.0, 0.001]}),
    case("price_unparseable", "price-text.jsonl",
         jl("price_unparseable", {"price": "12 EUR"}, {"price": "1,5"}, {"price": "0x10"}, {"price": "cheap"}),
         (4, 0, 4, 0), "price:unparseable"),
    case("product_id_bad", "product.jsonl",
         jl("product_id_bad", {"product_id": -5}, {"product_id": 12345678901234567890}, {"product_id": "abc"},
            {"product_id": " 7 "}, {"product_id": "1e3"}),
         (5, 2, 3, 0), "product_id:below_minimum", "product_id:unparseable", expect={"product_id": [7, 1000]}),

    # ---- event types ----
    case("event_type_unknown", "types-unknown.jsonl",
         jl("event_type_unknown", {"event_type": "click"}, {"event_type": "purchased"},
            {"event_type": "remove-from-cart"}, {"event_type": "v\u0456ew"}, {"event_type": "view\x00"}),
         (5, 0, 5, 0), "event_type:not_allowed"),
    case("event_type_case_insensitive", "types-case.jsonl",
         jl("event_type_case", {"event_type": "VIEW"}, {"event_type": " Cart "}, {"event_type": "Purchase"},
            {"event_type": "REMOVE_FROM_CART"}),
         (4, 4, 0, 0), expect={"event_type": ["view", "cart", "purchase", "remove_from_cart"]}),

    # ---- timestamps ----
    case("timestamps_accepted_formats", "ts-ok.jsonl",
         jl("timestamps_accepted", *({"timestamp": t} for t in ACCEPTED_TIMESTAMPS)),
         (len(ACCEPTED_TIMESTAMPS), len(ACCEPTED_TIMESTAMPS), 0, 0),
         expect={"timestamp": [T10] * len(ACCEPTED_TIMESTAMPS)}),
    case("timestamps_sub_second", "ts-fraction.jsonl",
         jl("timestamps_sub_second", {"timestamp": "2026-03-01T10:00:00.5Z"}, {"timestamp": "1772359200.25"},
            {"timestamp": 1772359200750}, {"timestamp": "2026-03-01T10:00:00.123456789+00:00"}),
         (4, 4, 0, 0), expect={"timestamp": [T10.replace(microsecond=m) for m in (500000, 250000, 750000, 123456)]}),
    case("timestamps_unparseable", "ts-bad.jsonl",
         jl("timestamps_unparseable", *({"timestamp": t} for t in UNPARSEABLE_TIMESTAMPS)),
         (len(UNPARSEABLE_TIMESTAMPS), 0, len(UNPARSEABLE_TIMESTAMPS), 0), "timestamp:unparseable"),
    case("timestamps_far_future", "ts-future.jsonl",
         jl("timestamps_far_future", *({"timestamp": t} for t in FAR_FUTURE),
            {"timestamp": (NOW + dt.timedelta(hours=1)).isoformat()}),  # within the one day of clock skew
         (len(FAR_FUTURE) + 1, 1, len(FAR_FUTURE), 0), "timestamp:not_in_future"),
    case("timestamps_far_past", "ts-past.jsonl",
         jl("timestamps_far_past", *({"timestamp": t} for t in FAR_PAST), {"timestamp": "2000-01-01T00:00:00Z"}),
         (len(FAR_PAST) + 1, 1, len(FAR_PAST), 0), "timestamp:below_minimum",
         expect={"timestamp": [dt.datetime(2000, 1, 1, tzinfo=UTC)]}),
    case("timestamps_epoch_beyond_datetime_range", "ts-huge.jsonl",  # epoch nanoseconds crashed the batch (fixed)
         jl("timestamps_huge", {"timestamp": 1772359200000000000}, {"timestamp": -99999999999999999},
            {"timestamp": "10000000000000000000"}, {}),
         (4, 1, 3, 0), "timestamp:unparseable"),

    # ---- duplicate event ids ----
    # A repeated id with the same content is a duplicate; with other content it is quarantined (first wins).
    case("duplicates_within_a_file", "dups.jsonl",
         jl("dups_in_file", {}, {"event_id": "dups_in_file-1", "price": 99.0}, {})
         + jsonl_bytes([ev("dups_in_file", 1)]),
         (4, 2, 1, 1), "event_id:conflict",
         expect={"event_id": ["dups_in_file-1", "dups_in_file-3"], "price": [11.0, 13.0]}),
    case("duplicates_of_derived_ids", "dups-derived.jsonl",  # no event_id: the same content in any timestamp format
         jsonl_bytes([ev("dups_derived", 1, event_id=..., timestamp=t)
                      for t in ("2026-03-01T10:00:00Z", 1772359200, "2026-03-01T12:00:00+02:00")]),
         (3, 1, 0, 2)),
    case("duplicate_of_a_quarantined_row", "dups-invalid.jsonl",  # a quarantined row claims no id
         jl("dups_invalid", {"price": -1}, {"event_id": "dups_invalid-1"}),
         (2, 1, 1, 0), "price:below_minimum", expect={"price": [12.0]}),
    Case("duplicates_across_files",
         (("a.jsonl", jsonl_bytes([ev("dups_files", 1), ev("dups_files", 2)])),
          ("b.jsonl", jsonl_bytes([ev("dups_files", 2, price=1.0), ev("dups_files", 3), ev("dups_files", 1)]))),
         (5, 3, 1, 1), frozenset({"event_id:conflict"}),
         expect={"event_id": ["dups_files-1", "dups_files-2", "dups_files-3"], "price": [11.0, 12.0, 13.0]}),
    Case("same_content_under_two_names",  # the second file is a redelivery: recorded, adds nothing
         (("first.jsonl", jl("same_content", {}, {})), ("again/copy.jsonl", jl("same_content", {}, {}))),
         (2, 2, 0, 0)),

    # ---- empty and zero-byte files ----
    case("zero_byte_jsonl", "zero.jsonl", b"", (0, 0, 0, 0)),
    case("blank_lines_only_jsonl", "blank.jsonl", b"\n\n  \r\n\t\n", (0, 0, 0, 0)),
    case("zero_byte_csv", "zero.csv", b"", (0, 0, 0, 0), in_mixture=False),
    case("header_only_csv", "header.csv", (CSV_HEADER + "\n").encode(), (0, 0, 0, 0)),
    case("zero_byte_gzip", "zero.jsonl.gz", b"", (0, 0, 0, 0), in_mixture=False),
    case("gzip_of_nothing", "nothing.jsonl.gz", gzip_bytes(b""), (0, 0, 0, 0)),
    rejected("zero_byte_parquet", "zero.parquet", b"", "file:unreadable_parquet", in_mixture=False),
    case("parquet_without_rows", "no-rows.parquet", parquet_bytes(pl.DataFrame(schema={"user_id": pl.String})),
         (0, 0, 0, 0)),

    # ---- byte order marks and encodings ----
    case("utf8_bom_jsonl", "bom.jsonl", b"\xef\xbb\xbf" + jl("bom_jsonl", {}, {}), (2, 2, 0, 0)),
    case("utf8_bom_csv", "bom.csv", b"\xef\xbb\xbf" + csv("bom_csv", CSV_HEADER, CSV_OK % (1, 1)), (1, 1, 0, 0),
         expect={"event_id": ["bom_csv-1"], "extras": [None]}),  # the first header is `event_id`
    case("utf8_bom_inside_a_file", "bom-twice.jsonl",  # two files concatenated: only the first BOM is dropped
         b"\xef\xbb\xbf" + jl("bom_twice", {}) + b"\xef\xbb\xbf" + jsonl_bytes([ev("bom_twice", 2)]),
         (2, 1, 1, 0), "record:malformed_json"),
    rejected("invalid_utf8_jsonl", "latin.jsonl", jl("invalid_utf8", {}) + b'{"user_id": "M\xfcller"}\n',
             "file:invalid_utf8"),
    rejected("latin1_csv", "latin.csv", "event_id,user_id\nl1,Müller\n".encode("latin-1"), "file:invalid_utf8"),
    rejected("binary_noise_as_jsonl", "image.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "file:invalid_utf8"),
    case("lone_surrogate_escape", "surrogate.jsonl",  # valid UTF-8 bytes, but "\udc00" is no text (crashed; fixed)
         line("surrogate", 1, '"user_id":"\\udc00x"') + jl("surrogate_ok", {}),
         (2, 1, 1, 0), "record:malformed_json"),

    # ---- very long strings, deep nesting ----
    case("very_long_strings", "long.jsonl",
         jl("very_long_strings", {"user_id": "u" * 257}, {"brand": "b" * 257}, {"category": "c" * 513},
            {"session_id": "s" * 257}, {"event_id": "e" * 257}, {"brand": "x" * 100_000},
            {"user_id": "\U0001f600" * 257}, {"user_id": "u" * 256}, {"user_id": "\U0001f600" * 256,
                                                                       "category": "c" * 512}),
         (9, 2, 7, 0),
         "user_id:bad_length", "brand:bad_length", "category:bad_length", "session_id:bad_length",
         "event_id:bad_length",
         expect={"user_id": ["u" * 256, "\U0001f600" * 256]}),
    case("nested_json_in_extras", "nested.jsonl",
         jl("nested_ok", {"payload": json.loads(nested(200))}, {"tags": ["a", {"b": [1, 2]}]}),
         (2, 2, 0, 0),
         expect={"extras": [json.dumps({"payload": json.dumps(json.loads(nested(200)))}, separators=(",", ":")),
                            '{"tags":"[\\"a\\", {\\"b\\": [1, 2]}]"}']}),  # only the row's own fields
    case("nested_json_too_deep", "deep.jsonl",  # 100,000 levels: a RecursionError crashed the batch (fixed)
         jl("nested_deep", {}) + line("nested_deep", 2, '"user_id":"u","x":' + "[" * 100_000 + "]" * 100_000),
         (2, 1, 1, 0), "record:malformed_json"),

    # ---- a line reads the same whatever its neighbours (the slow path disagreed; fixed) ----
    case("duplicate_json_keys", "dup-keys.jsonl",  # the first value of a repeated key wins
         line("dup_keys", 1, '"user_id":"first","user_id":"second"'), (1, 1, 0, 0), expect={"user_id": ["first"]}),
    case("duplicate_json_keys_next_to_a_broken_line", "dup-keys-slow.jsonl",
         line("dup_keys_slow", 1, '"user_id":"first","user_id":"second"') + BROKEN_OBJECT,
         (2, 1, 1, 0), "record:malformed_json", expect={"user_id": ["first"]}),
    case("float_ids_next_to_a_broken_line", "float-ids-slow.jsonl",  # 5.0 is "5" on both paths
         b'{"event_id":990001.0,"user_id":5.0,"timestamp":1772359200.0,"event_type":"view","session_id":1e3}\n'
         + BROKEN_OBJECT,
         (2, 1, 1, 0), "record:malformed_json",
         expect={"event_id": ["990001"], "user_id": ["5"], "session_id": ["1000"], "timestamp": [T10]}),

    # ---- CSV ----
    case("csv_reordered_headers", "reordered.csv",
         csv("csv_reordered", "price,event_type,timestamp,user_id,event_id", "2.5,view,2026-03-01T10:00:00Z,u1,{t}-1"),
         (1, 1, 0, 0), expect={"event_id": ["csv_reordered-1"], "price": [2.5], "user_id": ["u1"]}),
    case("csv_headers_padded_and_mixed_case", "mixed-case.csv",
         csv("csv_case", " Event_ID ,USER_ID,TimeStamp,Event_Type", "{t}-1,u1,2026-03-01T10:00:00Z,VIEW"),
         (1, 1, 0, 0), expect={"event_id": ["csv_case-1"], "event_type": ["view"]}),
    case("csv_missing_required_column", "no-timestamp.csv",
         csv("csv_no_ts", "event_id,user_id,event_type", "{t}-1,u1,view", "{t}-2,u2,cart"),
         (2, 0, 2, 0), "timestamp:missing"),
    case("csv_without_header_row", "no-header.csv",  # the first record is read as the header
         csv("csv_no_header", "csv_no_header-1,u1,2026-03-01T10:00:00Z,view",
             "csv_no_header-2,u2,2026-03-01T10:00:00Z,view"),
         (1, 0, 1, 0), *MISSING_ALL),
    case("csv_embedded_newlines_and_quotes", "quotes.csv",
         csv("csv_quotes", "event_id,user_id,timestamp,event_type,brand",
             '{t}-1,u1,2026-03-01T10:00:00Z,view,"it\'s ""quoted"", ok"',
             '{t}-2,"two\r\nlines",2026-03-01T10:00:00Z,view,"a\n\nb"'),
         (2, 2, 0, 0), expect={"user_id": ["u1", "two\r\nlines"], "brand": ['it\'s "quoted", ok', "a\n\nb"]}),
    rejected("csv_unterminated_quote", "open-quote.csv",
             csv("csv_open", CSV_HEADER, '{t}-1,"u1,2026-03-01T10:00:00Z,view,1'), "file:unreadable_csv"),
    rejected("csv_stray_quote", "stray-quote.csv",
             csv("csv_stray", CSV_HEADER, '{t}-1,u"1,2026-03-01T10:00:00Z,view,1'), "file:unreadable_csv"),
    rejected("csv_row_with_too_many_fields", "wide.csv",
             csv("csv_wide", CSV_HEADER, CSV_OK % (1, 1), CSV_OK % (2, 2) + ",surplus"), "file:unreadable_csv"),
    case("csv_row_with_too_few_fields", "short.csv",  # missing trailing fields are absent
         csv("csv_short", CSV_HEADER, "{t}-1,u1,2026-03-01T10:00:00Z", "{t}-2,u2,2026-03-01T10:00:00Z,view"),
         (2, 1, 1, 0), "event_type:missing", expect={"event_id": ["csv_short-2"], "price": [None]}),
    case("csv_blank_lines", "blank-lines.csv",  # a blank line is no record (was a phantom all-missing one; fixed)
         csv("csv_blank", CSV_HEADER, "", CSV_OK % (1, 1), "", "", CSV_OK % (2, 2), ""),
         (2, 2, 0, 0), expect={"event_id": ["csv_blank-1", "csv_blank-2"]}),
    case("csv_crlf", "crlf.csv", csv("csv_crlf", CSV_HEADER, CSV_OK % (1, 1), CSV_OK % (2, 2)).replace(b"\n", b"\r\n"),
         (2, 2, 0, 0), expect={"price": [1.5, 1.5]}),
    case("csv_bad_values", "bad-values.csv",
         csv("csv_bad", CSV_HEADER, "{t}-1,u1,2026-03-01T10:00:00Z,view,NaN", "{t}-2,u2,2026-03-01T10:00:00Z,view,-1",
             "{t}-3,u3,soon,view,1", "{t}-4,,2026-03-01T10:00:00Z,click,1", "{t}-5,u5,2026-03-01T10:00:00Z,view,"),
         (5, 1, 4, 0),
         "price:finite", "price:below_minimum", "timestamp:unparseable", "user_id:missing", "event_type:not_allowed",
         expect={"event_id": ["csv_bad-5"], "price": [None]}),
    case("csv_semicolon_delimited", "semicolon.csv",  # one column named by the whole header line, kept in extras
         csv("csv_semicolon", CSV_HEADER.replace(",", ";"), (CSV_OK % (1, 1)).replace(",", ";")),
         (1, 0, 1, 0), *MISSING_ALL),
    case("csv_rees46_aliases", "2019-Oct.csv",
         csv("rees46", "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session",
             "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,{t}-s1"),
         (1, 1, 0, 0),
         expect={"session_id": ["rees46-s1"], "category": [None], "extras": ['{"category_id":"2103807459595387724"}']}),

    # ---- gzip ----
    rejected("gzip_truncated", "cut.jsonl.gz", TRUNCATED_GZIP[: len(TRUNCATED_GZIP) // 2], "file:corrupt_compression"),
    rejected("gzip_missing_trailer", "no-trailer.jsonl.gz", TRUNCATED_GZIP[:-4], "file:corrupt_compression"),
    rejected("gzip_name_but_plain_text", "plain.jsonl.gz", jl("gz_plain", {}), "file:corrupt_compression"),
    rejected("gzip_with_trailing_garbage", "garbage.csv.gz", gzip_bytes(csv("gz_garbage", CSV_HEADER)) + b"garbage",
             "file:corrupt_compression"),
    case("gzip_concatenated_members", "members.jsonl.gz",
         gzip.compress(jl("gz_members", {})) + gzip.compress(jsonl_bytes([ev("gz_members", 2)])), (2, 2, 0, 0)),

    # ---- Parquet ----
    rejected("parquet_truncated", "cut.parquet", VALID_PARQUET[: len(VALID_PARQUET) // 2], "file:unreadable_parquet"),
    rejected("parquet_missing_footer", "no-footer.parquet", VALID_PARQUET[:-10], "file:unreadable_parquet"),
    rejected("parquet_name_but_csv", "csv.parquet", csv("pq_csv", CSV_HEADER, CSV_OK % (1, 1)),
             "file:unreadable_parquet"),
    case("parquet_schema_mismatch", "other-schema.parquet",
         parquet_bytes(pl.DataFrame({"a": [1, 2], "b": ["pq_other-1", "pq_other-2"]})), (2, 0, 2, 0), *MISSING_ALL),
    case("parquet_wrong_types", "typed.parquet",
         parquet_bytes(pl.DataFrame({
             "event_id": ["pq_typed-1", "pq_typed-2", "pq_typed-3", "pq_typed-4"],
             "user_id": [1, 2, 3, 4],
             "timestamp": [dt.datetime(2026, 3, 1, 10), dt.datetime(2026, 3, 1, 11), None, dt.datetime(2026, 3, 1, 12)],
             "event_type": ["view", "cart", "purchase", "view"],
             "price": [1.0, math.nan, math.inf, 2.0],
             "product_id": [1.5, 2.0, -1.0, 4.0],
         })),
         (4, 1, 3, 0), "product_id:unparseable", "price:finite", "product_id:below_minimum", "timestamp:missing",
         expect={"user_id": ["4"], "product_id": [4], "timestamp": [dt.datetime(2026, 3, 1, 12, tzinfo=UTC)]}),
    case("parquet_date_instead_of_timestamp", "dates.parquet",
         parquet_bytes(pl.DataFrame({"event_id": ["pq_date-1"], "user_id": ["u"], "timestamp": [dt.date(2026, 3, 1)],
                                     "event_type": ["view"]})),
         (1, 0, 1, 0), "timestamp:unparseable"),
    rejected("parquet_binary_invalid_utf8", "binary.parquet",  # raised out of the reader (fixed)
             parquet_bytes(pl.DataFrame({"event_id": ["pq_bin-1"], "user_id": [b"\xff\xfe"],
                                         "timestamp": ["2026-03-01T10:00:00Z"], "event_type": ["view"]})),
             "file:unreadable_parquet"),

    # ---- unsupported names ----
    rejected("unsupported_suffix", "events.json", jl("unsupported_json", {}), "file:unsupported_format"),
    rejected("no_suffix", "README", b"just text", "file:unsupported_format"),

    # ---- file names: spaces, unicode, dots inside names, shell and SQL characters ----
    case("name_with_spaces", "with spaces/my events (1).jsonl", jl("name_spaces", {}), (1, 1, 0, 0)),
    case("name_unicode", "données/événements 日本 🎉.jsonl", jl("name_unicode", {}), (1, 1, 0, 0)),
    case("name_with_dots_inside", "a..b/c..jsonl", jl("name_dots", {}), (1, 1, 0, 0)),  # `..` is not a path part
    case("name_shell_and_sql", "$(touch pwned); x'; DROP TABLE events; --.jsonl", jl("name_sql", {}), (1, 1, 0, 0)),
    case("name_with_tab_and_newline", "tab\tand\nnewline.jsonl", jl("name_newline", {}), (1, 1, 0, 0)),
    case("name_upper_case_suffix", "EVENTS.JSONL.GZ", gzip_bytes(jl("name_upper", {})), (1, 1, 0, 0)),

    # ---- values and keys that look like SQL or shell ----
    case("values_like_sql_and_shell", "sql.jsonl",
         jl("values_sql", SQL_AND_SHELL, {"event_id": "values_sql-2'); DELETE FROM events; --"}),
         (2, 2, 0, 0),
         expect={"user_id": [SQL_AND_SHELL["user_id"], "values_sql-u2"], "brand": [SQL_AND_SHELL["brand"], "acme"],
                 "event_id": ["values_sql-1", "values_sql-2'); DELETE FROM events; --"]}),
    case("keys_like_sql_and_reserved_names", "keys.jsonl",
         jl("keys_sql", {"'; DROP TABLE quarantine; --": "x", "source_row": 99, "source_file": "/etc/passwd",
                         "batch_id": "evil"}),
         (1, 1, 0, 0),
         expect={"source_row": [1], "extras": ['{"\'; drop table quarantine; --":"x","input_batch_id":"evil",'
                                               '"input_source_file":"/etc/passwd","input_source_row":"99"}']}),
]
# fmt: on


def test_the_corpus_covers_the_issue() -> None:
    assert len(CORPUS) >= 40
    assert len({c.id for c in CORPUS}) == len(CORPUS)
    for c in CORPUS:
        rows_in, valid, quarantined, duplicate = c.rows
        assert rows_in == valid + quarantined + duplicate, c.id
        assert bool(c.reasons) == (quarantined > 0), c.id
        assert all(re.match(REASON_CODE_PATTERN, r) for r in c.reasons), c.id


# --------------------------------------------------------------------------------------------------
# Running cases through the real ingestion
# --------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    report: IngestReport
    events: pl.DataFrame  # the warehouse's events, by source file and row
    quarantine: pl.DataFrame  # the warehouse's quarantine, by source file and row
    files: dict[str, str]  # ingested_files: key -> status


def ingest(landing: Path, lake: Lake, warehouse_path: Path, keys: Sequence[str]) -> Outcome:
    """Ingest `keys` (in that order) as one batch, then read back what the warehouse holds."""
    store = LocalLanding(landing)
    files = [store.stat(key) for key in keys]
    assert all(files)
    return ingest_files(store, [f for f in files if f], lake, warehouse_path)


def ingest_files(store: LocalLanding, files: list[LandingFile], lake: Lake, warehouse_path: Path) -> Outcome:
    batch_id = batch_id_for("stream", files)
    report = ingest_batch(
        store=store, files=files, lake=lake, warehouse_path=warehouse_path, batch_id=batch_id, mode="stream"
    )
    assert report.reconciles
    with warehouse.connect(warehouse_path, read_only=True) as con:
        assert warehouse.batch_reconciliation(con, batch_id)["ok"]
        events = con.sql("SELECT * FROM events ORDER BY source_file, source_row").pl()
        quarantine = con.sql("SELECT * FROM quarantine ORDER BY source_file, source_row").pl()
        statuses = dict(
            con.sql("SELECT source_file, status FROM ingested_files WHERE batch_id = ?", params=[batch_id]).fetchall()
        )
    assert_contract_and_lake_agree(lake, events, quarantine)
    return Outcome(report, events, quarantine, statuses)


def assert_contract_and_lake_agree(lake: Lake, events: pl.DataFrame, quarantine: pl.DataFrame) -> None:
    """Valid rows satisfy the contract, ids are unique, and the lake holds exactly the warehouse's rows."""
    EventRecord.validate(events.select(CONTRACT_COLUMNS))
    assert events["event_id"].n_unique() == events.height
    event_files = sorted((lake.storage.root / "events").glob("event_date=*/*.parquet"))
    lake_events = pl.read_parquet(event_files, hive_partitioning=True) if event_files else None
    key = ["event_id", "source_file", "source_row", "batch_id", "event_date"]
    if lake_events is None:
        assert events.height == 0
    else:
        EventRecord.validate(lake_events.select(CONTRACT_COLUMNS))
        assert lake_events.select(key).sort("event_id").equals(events.select(key).sort("event_id"))
        assert (
            lake_events.select(CONTRACT_COLUMNS)
            .sort("event_id")
            .equals(events.select(CONTRACT_COLUMNS).sort("event_id"))
        )
    quarantine_files = sorted((lake.storage.root / "quarantine").glob("*.parquet"))
    lake_quarantine = pl.read_parquet(quarantine_files) if quarantine_files else pl.DataFrame()

    def rows(frame: pl.DataFrame) -> list[tuple[object, ...]]:
        if frame.height == 0:
            return []
        picked = frame.select("batch_id", "source_file", "source_row", "reasons", "raw_record")
        return sorted(((*r[:3], tuple(r[3]), r[4]) for r in picked.iter_rows()), key=repr)

    assert rows(lake_quarantine) == rows(quarantine)


def expected_statuses(c: Case, prefix: str = "") -> dict[str, str]:
    seen: set[bytes] = set()
    statuses = {}
    for name, data in c.files:
        statuses[prefix + name] = "redelivered" if data in seen else ("rejected" if c.rejected else "ingested")
        seen.add(data)
    return statuses


def assert_case_outcome(c: Case, events: pl.DataFrame, quarantine: pl.DataFrame, keys: list[str]) -> None:
    """The rows of `c`'s files (`keys`) are exactly what the case expects."""
    mine = events.filter(pl.col("source_file").is_in(keys))
    held = quarantine.filter(pl.col("source_file").is_in(keys))
    assert mine.height == c.rows[1]
    assert held.height == c.rows[2]
    assert set(held["reasons"].explode().drop_nulls().to_list()) == c.reasons
    assert all(len(r) >= 1 for r in held["reasons"].to_list())
    for column, values in c.expect.items():
        assert mine[column].to_list() == values, column
    if c.rejected:
        whole = held.row(0, named=True)
        assert (whole["reasons"], whole["source_row"]) == ([c.rejected], None)
        data = c.files[0][1]
        raw = json.loads(whole["raw_record"])
        assert (raw["sha256"], raw["size_bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))


@pytest.mark.parametrize("c", CORPUS, ids=[c.id for c in CORPUS])
def test_corpus_case(c: Case, landing_dir: Path, lake: Lake, warehouse_path: Path) -> None:
    for name, data in c.files:
        write_landing(landing_dir, name, data)
    # A file literally named with spaces, unicode, quotes or `..` inside a name is listed as it is.
    assert sorted(f.key for f in LocalLanding(landing_dir).list_files(1000)) == sorted(name for name, _ in c.files)
    keys = [name for name, _ in c.files]
    outcome = ingest(landing_dir, lake, warehouse_path, keys)
    report = outcome.report
    assert (report.rows_in, report.rows_valid, report.rows_quarantined, report.rows_duplicate) == c.rows
    assert report.rows_duplicate_existing == 0
    assert report.files_rejected == (1 if c.rejected else 0)
    assert_case_outcome(c, outcome.events, outcome.quarantine, keys)
    assert outcome.files == expected_statuses(c)
    assert all(lake.ledger.has_file(f) for f in LocalLanding(landing_dir).list_files(1000))


def test_the_whole_corpus_in_one_batch_comes_out_file_by_file_as_alone(
    landing_dir: Path, lake: Lake, warehouse_path: Path
) -> None:
    cases = [c for c in CORPUS if c.in_mixture]
    contents = [data for c in cases for data in dict(c.files).values()]
    assert len(set(contents)) == len(contents) - sum(len(c.files) - len(set(dict(c.files).values())) for c in cases)
    keys_of: dict[str, list[str]] = {}
    for c in cases:
        keys_of[c.id] = [f"{c.id}/{name}" for name, _ in c.files]
        for key, (_, data) in zip(keys_of[c.id], c.files, strict=True):
            write_landing(landing_dir, key, data)
    order = [key for c in cases for key in keys_of[c.id]]
    outcome = ingest(landing_dir, lake, warehouse_path, order)
    report = outcome.report
    totals = [sum(c.rows[i] for c in cases) for i in range(4)]
    assert [report.rows_in, report.rows_valid, report.rows_quarantined, report.rows_duplicate] == totals
    assert report.files_rejected == sum(1 for c in cases if c.rejected)
    assert set(report.top_reasons) == set().union(*(c.reasons for c in cases))
    statuses: dict[str, str] = {}
    for c in cases:
        assert_case_outcome(c, outcome.events, outcome.quarantine, keys_of[c.id])
        statuses |= expected_statuses(c, prefix=f"{c.id}/")
    assert outcome.files == statuses


# --------------------------------------------------------------------------------------------------
# Duplicates across batches, unsafe names, files that change while they are read
# --------------------------------------------------------------------------------------------------


def event_ids(warehouse_path: Path) -> list[str]:
    with warehouse.connect(warehouse_path, read_only=True) as con:
        return [r[0] for r in con.sql("SELECT event_id FROM events ORDER BY event_id").fetchall()]


def test_duplicates_across_batches_and_redelivery(landing_dir: Path, lake: Lake, warehouse_path: Path) -> None:
    write_landing(landing_dir, "a.jsonl", jl("xb", {}, {}, {}))
    ingest(landing_dir, lake, warehouse_path, ["a.jsonl"])
    # xb-2 repeats an earlier batch's record exactly (a duplicate); xb-3 with another price conflicts.
    write_landing(landing_dir, "b.jsonl", jsonl_bytes([ev("xb", 3, price=1.0), ev("xb", 4), ev("xb", 2)]))
    write_landing(landing_dir, "again/a.jsonl", (landing_dir / "a.jsonl").read_bytes())
    outcome = ingest(landing_dir, lake, warehouse_path, ["b.jsonl", "again/a.jsonl"])
    r = outcome.report
    assert (r.rows_in, r.rows_valid, r.rows_quarantined, r.rows_duplicate_existing) == (3, 1, 1, 1)
    conflict = outcome.quarantine.filter(pl.col("reasons") == ["event_id:conflict"]).row(0, named=True)
    kept = json.loads(conflict["detail"])["kept"]
    assert (conflict["source_file"], conflict["source_row"], kept["source_file"], kept["source_row"]) == (
        "b.jsonl", 1, "a.jsonl", 3,
    )  # fmt: skip
    assert r.files_redelivered == ["again/a.jsonl"]
    assert outcome.events["price"].to_list() == [11.0, 12.0, 13.0, 14.0]  # xb-3 keeps its first price
    assert event_ids(warehouse_path) == ["xb-1", "xb-2", "xb-3", "xb-4"]


def test_landing_keys_never_leave_the_root(landing_dir: Path, lake: Lake, warehouse_path: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(jl("secret", {}))
    write_landing(landing_dir, "ok.jsonl", jl("inside", {}))
    write_landing(landing_dir, "x..y/..ok..jsonl", jl("inside_dots", {}))  # hidden: starts with "."
    write_landing(landing_dir, "x..y/ok..jsonl", jl("inside_dots", {}))
    os.symlink(secret, landing_dir / "link.jsonl")
    os.symlink(tmp_path, landing_dir / "linkdir")
    store = LocalLanding(landing_dir)
    listed = store.list_files(1000)
    assert sorted(f.key for f in listed) == ["ok.jsonl", "x..y/ok..jsonl"]
    root = landing_dir.resolve()
    for f in listed:
        assert (root / safe_relative_key(f.key)).resolve().is_relative_to(root)
    unsafe = ["../secret.jsonl", "x..y/../../secret.jsonl", str(secret), "/etc/passwd", "", "ok.jsonl\x00",
              "..\\secret.jsonl", "link.jsonl", "linkdir/secret.jsonl", "./../secret.jsonl"]  # fmt: skip
    for key in unsafe:
        with pytest.raises(ValueError):
            store.read(key)
        with pytest.raises(ValueError):
            store.stat(key)
    # A batch naming an unsafe key fails before it writes anything.
    forged = [listed[0], LandingFile(0.0, "../secret.jsonl", secret.stat().st_size, "1")]
    with pytest.raises(ValueError):
        ingest_batch(store=store, files=forged, lake=lake, warehouse_path=warehouse_path, batch_id="b", mode="stream")
    assert not warehouse_path.exists() and not lake.storage.root.exists()


def append(path: Path, data: bytes, *, bump_ns: int = 10**9) -> None:
    """Append like a producer that writes in place; the mtime moves on even on a coarse clock."""
    before = path.stat().st_mtime_ns
    with path.open("ab") as handle:
        handle.write(data)
    os.utime(path, ns=(before + bump_ns, before + bump_ns))


def test_a_file_that_changes_between_listing_and_reading(landing_dir: Path, lake: Lake, warehouse_path: Path) -> None:
    path = write_landing(landing_dir, "live.jsonl", jsonl_bytes([ev("live", i) for i in range(3)]))
    store = LocalLanding(landing_dir)
    [listed] = store.list_files(10)
    append(path, jsonl_bytes([ev("live", i) for i in range(3, 5)]))  # after the listing, before the read
    read_bytes = path.read_bytes()

    first = ingest_files(store, [listed], lake, warehouse_path).report
    # What was read (all 5 records) is ingested, once; the ledger ties the listed identity to the bytes read.
    assert (first.rows_in, first.rows_valid, first.rows_duplicate) == (5, 5, 0)
    assert lake.ledger.has_file(listed)
    assert lake.ledger.content_batch(hashlib.sha256(read_bytes).hexdigest()) == first.batch_id
    with warehouse.connect(warehouse_path, read_only=True) as con:
        recorded = con.sql("SELECT identity, content_sha256, status FROM ingested_files").fetchall()
    assert recorded == [(listed.identity, hashlib.sha256(read_bytes).hexdigest(), "ingested")]

    # The next listing sees a new identity (not in the ledger): its content is already in, so it is a no-op.
    [relisted] = store.list_files(10)
    assert relisted.identity != listed.identity and not lake.ledger.has_file(relisted)
    second = ingest_files(store, [relisted], lake, warehouse_path)
    assert (second.report.rows_in, second.report.files_redelivered) == (0, ["live.jsonl"])
    assert lake.ledger.has_file(relisted)
    assert event_ids(warehouse_path) == [f"live-{i}" for i in range(5)]

    # The producer appends again: a new identity and new content; only the new record is new.
    append(path, jsonl_bytes([ev("live", 5)]))
    [third_listed] = store.list_files(10)
    third = ingest_files(store, [third_listed], lake, warehouse_path).report
    assert (third.rows_in, third.rows_valid, third.rows_duplicate_existing) == (6, 1, 5)
    assert event_ids(warehouse_path) == [f"live-{i}" for i in range(6)]
    assert [f for f in store.list_files(10) if not lake.ledger.has_file(f)] == []


def test_a_file_read_while_it_is_written(landing_dir: Path, lake: Lake, warehouse_path: Path) -> None:
    full = jsonl_bytes([ev("growing", i) for i in range(4)])
    path = landing_dir / "growing.jsonl"  # a producer that writes in place instead of renaming
    path.write_bytes(full[:-12])  # caught in the middle of the last line
    store = LocalLanding(landing_dir)
    first = ingest_files(store, store.list_files(10), lake, warehouse_path)
    assert (first.report.rows_in, first.report.rows_valid, first.report.rows_quarantined) == (4, 3, 1)
    assert first.quarantine["reasons"].to_list() == [["record:malformed_json"]]
    assert first.quarantine["raw_record"].to_list() == [full[:-12].decode().splitlines()[-1]]

    append(path, full[-12:])
    second = ingest_files(store, store.list_files(10), lake, warehouse_path)
    r = second.report
    assert (r.rows_in, r.rows_valid, r.rows_quarantined, r.rows_duplicate_existing) == (4, 1, 0, 3)
    assert event_ids(warehouse_path) == [f"growing-{i}" for i in range(4)]
    assert second.quarantine.height == 1  # the partial line stays in quarantine, with the batch that read it


# --------------------------------------------------------------------------------------------------
# Property tests on the contract and the transform
# --------------------------------------------------------------------------------------------------

FIELDS = (*CONTRACT_COLUMNS[:-1], "event_time", "user_session", "category_code", "id", "campaign")
VALID_VALUE = {
    "event_id": st.sampled_from(["e1", "e2", "e3", "e4"]),
    "id": st.sampled_from(["e1", "e5"]),
    "user_id": st.sampled_from(["u1", "u2", "U 3"]),
    "timestamp": st.one_of(
        st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2026, 1, 1)).map(lambda d: d.isoformat() + "Z"),
        st.integers(946_684_800, 1_767_225_600),
        st.sampled_from(["2026-03-01 10:00:00 UTC", "2026-03-01T12:00:00+02:00", "1772359200000"]),
    ),
    "event_type": st.sampled_from([*EVENT_TYPES, "VIEW", " Cart "]),
    "product_id": st.integers(0, 10**9),
    "price": st.floats(0, 1e6),
}
VALID_VALUE["event_time"] = VALID_VALUE["timestamp"]
ODD_TEXT = ("", " ", "NaN", "inf", "-1", "1e400", "0", "12.0", "1999-12-31T23:59:59Z", "2999-01-01T00:00:00Z", "view")
ANY_VALUE = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.sampled_from([*ODD_TEXT, "x" * 300, "1e30", "-0"]),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
)


def value_of(name: str) -> st.SearchStrategy[object]:
    return st.one_of(VALID_VALUE.get(name, st.text(max_size=4)), ANY_VALUE)


VALID_RECORD = st.fixed_dictionaries(
    {name: VALID_VALUE[name] for name in ("user_id", "timestamp", "event_type")},
    optional={name: VALID_VALUE.get(name, st.text(max_size=4)) for name in FIELDS if name not in REQUIRED_COLUMNS},
)
ANY_RECORD = st.fixed_dictionaries({}, optional={name: value_of(name) for name in FIELDS})


@st.composite
def spoiled_record(draw: st.DrawFn) -> dict[str, object]:
    """A valid record with one field replaced by anything."""
    record = draw(VALID_RECORD)
    name = draw(st.sampled_from(FIELDS))
    record[name] = draw(ANY_VALUE)
    return record


RECORD = st.one_of(VALID_RECORD, spoiled_record(), ANY_RECORD)
MALFORMED_LINE = st.sampled_from(["{broken", "[1, 2]", "null", '{"a": }', "not json", '"text"', "{'a': 1}"])


@st.composite
def batch(draw: st.DrawFn) -> list[dict[str, object] | str]:
    """Records, exact repeats of some of them, and a few lines that are not JSON objects, shuffled."""
    items: list[dict[str, object] | str] = draw(st.lists(RECORD, max_size=10))
    if items:
        items += draw(st.lists(st.sampled_from(items), max_size=4))
    items += draw(st.lists(MALFORMED_LINE, max_size=3))
    return draw(st.permutations(items))


def as_text(value: object) -> str | None:
    """What the readers make of a JSON value."""
    return value if isinstance(value, str) or value is None else json.dumps(value)


def text_frames(items: list[dict[str, object] | str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Text columns as the readers produce them, built directly."""
    records = [(n, r) for n, r in enumerate(items, start=1) if isinstance(r, dict)]
    names = list(dict.fromkeys(k for _, r in records for k in r))
    frame = pl.DataFrame({"source_row": [n for n, _ in records]}, schema={"source_row": pl.Int64}).with_columns(
        *(pl.Series(name, [as_text(r.get(name)) for _, r in records], dtype=pl.String) for name in names),
        pl.lit("f.jsonl").alias("source_file"),
    )
    bad = [(n, r) for n, r in enumerate(items, start=1) if isinstance(r, str)]
    malformed = pl.DataFrame(
        {"source_row": [n for n, _ in bad], "raw_record": [r for _, r in bad], "source_file": ["f.jsonl"] * len(bad)},
        schema={"source_row": pl.Int64, "raw_record": pl.String, "source_file": pl.String},
    )
    return frame, malformed


def jsonl_of(items: list[dict[str, object] | str]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in items).encode()


def transform_file(name: str, data: bytes) -> TransformResult:
    parsed = read_landing_file(name, data)
    assert isinstance(parsed, ParsedFile)
    return transform(
        parsed.records.with_columns(pl.lit(name).alias("source_file")),
        parsed.malformed.with_columns(pl.lit(name).alias("source_file")),
    )


def assert_invariants(result: TransformResult, rows_in: int) -> None:
    valid, quarantine = result.valid, result.quarantine
    assert result.rows_in == rows_in == valid.height + quarantine.height + result.duplicates
    EventRecord.validate(valid.select(CONTRACT_COLUMNS))
    assert valid["event_id"].n_unique() == valid.height
    assert valid["event_date"].to_list() == [t.date() for t in valid["timestamp"].to_list()]
    for reasons in quarantine["reasons"].to_list():
        assert len(reasons) >= 1 and all(re.match(RECORD_REASON, r) for r in reasons)
    # No input row is both valid and quarantined; the rows in neither are the duplicates.
    valid_rows, held_rows = set(valid["source_row"].to_list()), set(quarantine["source_row"].to_list())
    assert not valid_rows & held_rows
    assert len(valid_rows) + len(held_rows) == rows_in - result.duplicates


def assert_same(a: TransformResult, b: TransformResult) -> None:
    assert a.valid.equals(b.valid) and a.quarantine.equals(b.quarantine)
    assert (a.rows_in, a.duplicates) == (b.rows_in, b.duplicates)


RECORD_REASON = r"^[a-z_]+:[a-z_]+$"  # the transform's codes (`file:*` ones come from the readers)
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(items=batch())
def test_property_transform_of_text_frames(items: list[dict[str, object] | str]) -> None:
    records, malformed = text_frames(items)
    result = transform(records, malformed)
    assert_invariants(result, rows_in=len(items))
    assert_same(result, transform(records, malformed))  # deterministic


KEY_SPELLINGS = st.sampled_from([str, str.upper, lambda k: f" {k.title()} "])


@PROPERTY_SETTINGS
@given(items=batch(), spell=KEY_SPELLINGS)
def test_property_transform_of_read_jsonl(items: list[dict[str, object] | str], spell: Callable[[str], str]) -> None:
    """Through the reader, with key names in any case; a record reads the same whatever its neighbours.

    `plain` holds the records alone (the columnar reader); `mixed` holds them between lines that are not
    JSON objects, so chunks go through the line-by-line fallback: valid rows and reasons must not differ.
    """
    items = [r if isinstance(r, str) else {spell(k): v for k, v in r.items()} for r in items]
    records = [r for r in items if isinstance(r, dict)]
    plain = transform_file("plain.jsonl", jsonl_of(records))
    assert_invariants(plain, rows_in=len(records))
    mixed = transform_file("plain.jsonl", jsonl_of([*items, BROKEN_OBJECT.decode().strip()]))
    assert_invariants(mixed, rows_in=len(items) + 1)
    assert plain.valid.drop("source_row").equals(mixed.valid.drop("source_row"))
    held = mixed.quarantine.filter(pl.col("reasons") != ["record:malformed_json"])
    # `detail` names the kept record's row, which the extra lines move.
    assert plain.quarantine.drop("source_row", "detail").equals(held.drop("source_row", "detail"))
    assert plain.duplicates == mixed.duplicates
