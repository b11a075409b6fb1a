"""The event contract applied by the shared transform: parsing, reason codes, ids, aliases."""

import datetime as dt
import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplatform.lib.contract import CONTRACT_COLUMNS, EventRecord
from dataplatform.lib.readers import ParsedFile, as_text, read_landing_file
from dataplatform.lib.transform import _parse_timestamp, apply_aliases, parse_records, split_repeats, transform
from factories import event, jsonl_bytes, parquet_bytes


def run(records: list[dict[str, object]] | bytes, name: str = "f.jsonl"):
    data = records if isinstance(records, bytes) else jsonl_bytes(records)
    parsed = read_landing_file(name, data)
    assert isinstance(parsed, ParsedFile)
    return transform(
        parsed.records.with_columns(pl.lit(name).alias("source_file")),
        parsed.malformed.with_columns(pl.lit(name).alias("source_file")),
    )


def reasons_of(result) -> dict[int, list[str]]:
    return {row["source_row"]: row["reasons"] for row in result.quarantine.iter_rows(named=True)}


def test_valid_events_pass_and_satisfy_the_contract() -> None:
    result = run([event(i) for i in range(20)])
    assert result.valid.height == 20 and result.quarantine.height == 0
    EventRecord.validate(result.valid.select(CONTRACT_COLUMNS))
    assert result.valid["event_date"].to_list()[0] == dt.date(2026, 3, 1)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"user_id": ...}, "user_id:missing"),
        ({"user_id": None}, "user_id:missing"),
        ({"user_id": ""}, "user_id:bad_length"),
        ({"user_id": "x" * 300}, "user_id:bad_length"),
        ({"timestamp": ...}, "timestamp:missing"),
        ({"timestamp": "last tuesday"}, "timestamp:unparseable"),
        ({"timestamp": "1999-12-31T23:59:59+00:00"}, "timestamp:below_minimum"),
        ({"timestamp": "2999-01-01T00:00:00+00:00"}, "timestamp:not_in_future"),
        ({"event_type": ...}, "event_type:missing"),
        ({"event_type": "click"}, "event_type:not_allowed"),
        ({"price": -1}, "price:below_minimum"),
        ({"price": "NaN"}, "price:finite"),
        ({"price": "inf"}, "price:finite"),
        ({"price": "cheap"}, "price:unparseable"),
        ({"product_id": "abc"}, "product_id:unparseable"),
        ({"product_id": -5}, "product_id:below_minimum"),
        ({"user_id": {"nested": 1}}, "user_id:structured"),  # structure where the contract wants an id
    ],
)
def test_each_violation_gets_its_own_reason_code(overrides: dict[str, object], reason: str) -> None:
    result = run([event(1), event(2, **overrides)])
    assert reasons_of(result) == {2: [reason]}
    assert result.valid["event_id"].to_list() == ["e1"]


def test_several_violations_in_one_record_are_all_named() -> None:
    result = run([event(1, user_id="", event_type="buy", price=-3)])
    assert reasons_of(result)[1] == ["event_type:not_allowed", "price:below_minimum", "user_id:bad_length"]


def test_unparseable_required_value_is_not_also_reported_missing() -> None:
    result = run([event(1, timestamp="soon")])
    assert reasons_of(result)[1] == ["timestamp:unparseable"]


def test_quarantine_keeps_the_raw_record_so_it_can_be_replayed() -> None:
    result = run([event(1, event_type="click")])
    raw = result.quarantine["raw_record"][0]
    assert '"event_type":"click"' in raw and '"user_id":"u1"' in raw


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-03-01T10:00:00+00:00",
        "2026-03-01T12:00:00+02:00",
        "2026-03-01T10:00:00Z",
        "2026-03-01 10:00:00 UTC",
        "2026-03-01T10:00:00.000+0000",
        "2026-03-01 10:00:00",  # no offset: read as UTC
        1772359200,  # epoch seconds
        1772359200000,  # epoch milliseconds
        "1772359200.0",
    ],
)
def test_timestamp_formats_parse_to_the_same_utc_instant(timestamp: object) -> None:
    result = run([event(1, timestamp=timestamp)])
    assert result.valid["timestamp"].to_list() == [dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)]


def test_derived_event_id_is_deterministic_and_format_independent() -> None:
    first = run([event(1, event_id=..., timestamp="2026-03-01T10:00:00Z")])
    second = run([event(1, event_id=..., timestamp=1772359200)])
    other = run([event(1, event_id=..., timestamp=1772359201)])
    assert first.valid["event_id"].to_list() == second.valid["event_id"].to_list()
    assert first.valid["event_id"][0] != other.valid["event_id"][0]


def test_derived_ids_distinguish_where_an_absent_field_sits() -> None:
    a = run([event(1, event_id=..., brand=..., category="x")])
    b = run([event(1, event_id=..., brand="x", category=...)])
    assert a.valid["event_id"][0] != b.valid["event_id"][0]


def test_identical_repeats_are_duplicates_and_conflicting_repeats_are_quarantined() -> None:
    result = run([event(1), event(2), event(1), event(1, price=99.0), event(2, user_id="other")])
    assert result.duplicates == 1  # the byte-identical repeat of e1
    assert result.valid.filter(pl.col("event_id") == "e1")["price"].to_list() == [11.0]  # the first one wins
    conflicts = result.quarantine.filter(pl.col("reasons") == ["event_id:conflict"]).sort("source_row")
    assert conflicts["source_row"].to_list() == [4, 5]
    assert [json.loads(r)["price"] for r in conflicts["raw_record"]] == ["99", "12"]  # the record the producer sent
    kept = [json.loads(d)["kept"] for d in conflicts["detail"]]
    assert [(k["source_file"], k["source_row"]) for k in kept] == [("f.jsonl", 1), ("f.jsonl", 2)]
    assert conflicts["claimed_date"].to_list() == [dt.date(2026, 3, 2), dt.date(2026, 3, 3)]
    assert result.rows_in == result.valid.height + result.quarantine.height + result.duplicates


def test_rees46_csv_is_read_through_aliases() -> None:
    csv = (
        b"event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
        b"2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,"
        b"72d76fde-8bb3-4e00-8c23-a032dfed738c\n"
        b"2019-10-01 00:00:01 UTC,purchase,3900821,2053013552326770905,appliances.water_heater,aqua,33.20,"
        b"554748717,9333dfbd-b87a-4708-9857-6336556b0fcc\n"
    )
    result = run(csv, name="2019-Oct.csv")
    assert result.quarantine.height == 0
    row = result.valid.row(1, named=True)
    assert row["session_id"] == "9333dfbd-b87a-4708-9857-6336556b0fcc"
    assert row["category"] == "appliances.water_heater"
    assert row["extras"] == '{"category_id":"2053013552326770905"}'
    assert result.valid["category"][0] is None  # empty text is "absent"


def test_unknown_columns_are_kept_in_extras_and_never_crash() -> None:
    result = run([event(1, campaign="spring", nested={"a": [1, 2]}), event(2)])
    extras = result.valid.sort("event_id")["extras"].to_list()
    assert extras[0] == '{"campaign":"spring","nested":"{\\"a\\": [1, 2]}"}'
    assert extras[1] is None


def test_mixed_alias_and_contract_names_in_one_file_coalesce() -> None:
    result = run([event(1), event(2, timestamp=..., event_time="2026-03-02T00:00:00Z")])
    assert result.valid.height == 2


def test_values_that_look_like_sql_are_just_text() -> None:
    result = run([event(1, user_id="x'); DROP TABLE events; --", brand="$(rm -rf /)")])
    assert result.valid["user_id"].to_list() == ["x'); DROP TABLE events; --"]


def test_a_json_object_or_array_in_a_text_field_is_a_type_error() -> None:
    result = run(
        [
            event(1, user_id={"a": 1}),
            event(2, session_id=[1, 2]),
            event(3, event_id={"id": 3}),
            event(4, brand={"name": "acme"}, category=["a", "b"]),
            event(5, event_type={"t": "view"}),
            event(6, brand="[unbranded]", category="{not json"),  # text that only looks like structure
        ]
    )
    assert reasons_of(result) == {
        1: ["user_id:structured"],
        2: ["session_id:structured"],
        3: ["event_id:structured"],
        4: ["brand:structured", "category:structured"],
        5: ["event_type:structured"],
    }
    assert result.valid["brand"].to_list() == ["[unbranded]"]


# Timestamps spelled like the canonical form, and near misses of it, for the fast-path property below.
TIMESTAMP_TEXT = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(dt.UTC)).map(
        lambda d: d.isoformat()
    ),
    st.builds(
        lambda d, sep, frac, offset: d.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + offset,
        st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1)),
        st.sampled_from(["T", "t", " ", "  "]),
        st.sampled_from(["", ".5", ".123456", ".1234567891", "."]),
        st.sampled_from(["", "Z", "z", " UTC", "+02:00", "-0530", "+00", "+24:00", "+02:00:00", " +01:00"]),
    ),
    st.from_regex(r"\A-?\d{1,16}(\.\d{1,3})?\Z"),
    st.text(alphabet="0123456789-:T. +Zz", max_size=32),
)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(TIMESTAMP_TEXT, min_size=1, max_size=20))
def test_property_timestamps_read_by_the_fast_path_read_as_the_full_parser_reads_them(texts: list[str]) -> None:
    typed, _ = parse_records(
        apply_aliases(
            pl.DataFrame({"timestamp": texts}).with_columns(
                pl.lit("f").alias("source_file"), pl.lit(1, dtype=pl.Int64).alias("source_row")
            )
        )
    )
    full = pl.DataFrame({"timestamp": [t.strip() for t in texts]}).select(_parse_timestamp(pl.col("timestamp")))
    assert typed["timestamp"].to_list() == full["timestamp"].to_list()


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["e1", "e2", "e3", "e4"]), st.sampled_from([1.0, 2.0, None]), st.sampled_from(["a", "b"])
        ),
        min_size=1,
        max_size=30,
    )
)
def test_property_repeats_split_as_a_window_over_every_row_splits_them(
    rows: list[tuple[str, float | None, str]],
) -> None:
    valid = pl.DataFrame(
        [
            {
                **{c: None for c in CONTRACT_COLUMNS},
                "event_id": eid,
                "price": price,
                "user_id": user,
                "source_file": "f",
                "source_row": n,
                "event_date": dt.date(2026, 3, 1),
            }
            for n, (eid, price, user) in enumerate(rows, start=1)
        ],
        schema_overrides={"price": pl.Float64, "source_row": pl.Int64},
    )
    unique, conflicts, duplicates = split_repeats(valid)
    # The reference: every row against the first row of its event_id, row by row.
    first: dict[str, tuple[float | None, str, int]] = {}
    want_conflicts, want_duplicates = [], 0
    for n, (eid, price, user) in enumerate(rows, start=1):
        if eid not in first:
            first[eid] = (price, user, n)
        elif first[eid][:2] == (price, user):
            want_duplicates += 1
        else:
            want_conflicts.append((n, first[eid][2]))
    assert unique["source_row"].to_list() == sorted(n for *_, n in first.values())
    assert sorted(zip(conflicts["source_row"], conflicts["kept_row"], strict=True)) == want_conflicts
    assert duplicates == want_duplicates


TIME_ZONES = st.sampled_from([None, "UTC", "Europe/Berlin", "America/Los_Angeles"])
TYPED_ROW = st.fixed_dictionaries(
    {
        "event_id": st.sampled_from(["e1", "e2", "e3", None]),
        "user_id": st.sampled_from(["u1", " u2 ", "", None]),
        "timestamp": st.one_of(
            st.none(), st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1))
        ),
        "event_type": st.sampled_from(["view", "PURCHASE", "teleport", None]),
        "product_id": st.one_of(st.none(), st.integers(-5, 2**31 - 1)),
        "price": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.just(-0.0)),
        "brand": st.sampled_from(["acme", "", None]),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(TYPED_ROW, min_size=1, max_size=12),
    time_zone=TIME_ZONES,
    time_unit=st.sampled_from(["us", "ms"]),
    product_dtype=st.sampled_from([pl.Int64, pl.Int32]),
)
def test_property_typed_parquet_gives_the_records_its_text_gives(
    rows: list[dict[str, object]], time_zone: str | None, time_unit: str, product_dtype: pl.DataType
) -> None:
    # The fast path keeps Parquet's types where the contract takes them; the slow path is what the reader
    # did before: every column as text, parsed back. Both must place every record the same way.
    frame = pl.DataFrame(
        rows,
        schema={
            **dict.fromkeys(["event_id", "user_id", "event_type", "brand"], pl.String),
            "timestamp": pl.Datetime(time_unit),
            "product_id": product_dtype,
            "price": pl.Float64,
        },
    )
    if time_zone:
        frame = frame.with_columns(
            pl.col("timestamp").dt.replace_time_zone(time_zone, ambiguous="null", non_existent="null")
        )
    typed = read_landing_file("f.parquet", parquet_bytes(frame))
    assert isinstance(typed, ParsedFile)
    assert typed.records.schema["timestamp"] != pl.String  # the fast path ran
    as_text_records = typed.records.select(as_text(name, dtype) for name, dtype in typed.records.schema.items())
    source = pl.lit("f.parquet").alias("source_file")
    fast = transform(typed.records.with_columns(source), typed.malformed.with_columns(source))
    slow = transform(
        as_text_records.with_columns(pl.col("source_row").cast(pl.Int64), source), typed.malformed.with_columns(source)
    )
    assert fast.valid.equals(slow.valid)
    assert fast.quarantine.equals(slow.quarantine)
    assert fast.duplicates == slow.duplicates
