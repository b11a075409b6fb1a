"""The lake on both backends: a local folder and S3 (moto's server over HTTP, nothing mocked)."""

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dataplatform.lib import featurestore, lakeread
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LandingFile
from dataplatform.lib.storage import LocalStorage, NotFoundError, S3Storage

BUCKET = "lake-bucket"


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    if request.param == "local":
        return Lake.local(tmp_path / "lake")
    client = request.getfixturevalue("s3_client")
    client.create_bucket(Bucket=BUCKET)
    return Lake(S3Storage(client, BUCKET, "prod/lake"))


def events(days: list[str], batch_id: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [f"{batch_id}-{i}" for i in range(len(days))],
            "timestamp": [dt.datetime.fromisoformat(f"{d}T12:00:00+00:00") for d in days],
            "event_date": [dt.date.fromisoformat(d) for d in days],
            "batch_id": batch_id,
        }
    )


NO_QUARANTINE = pl.DataFrame()


def write_batch(lake: Lake, batch_id: str, valid: pl.DataFrame, quarantine: pl.DataFrame = NO_QUARANTINE) -> None:
    writer = lake.batch_writer(batch_id)
    writer.write(valid, quarantine)
    writer.finish()


def test_a_rerun_of_a_batch_replaces_its_files_and_removes_days_it_no_longer_has(lake: Lake) -> None:
    write_batch(lake, "b1", events(["2026-03-01", "2026-03-02"], "b1"))
    write_batch(lake, "b2", events(["2026-03-02"], "b2"))
    assert lakeread.batch_ids_for_day(lake, "2026-03-02") == ["b1", "b2"]

    # The same batch again, now with rows of other days only: its old files go, the other batch's stay.
    write_batch(lake, "b1", events(["2026-03-02", "2026-03-03", "2026-03-03"], "b1"))
    assert lake.event_keys("2026-03-01") == []
    assert lakeread.batch_ids_for_day(lake, "2026-03-02") == ["b1", "b2"]
    both = lakeread.events_for_days(lake, ["2026-03-01", "2026-03-02", "2026-03-03"])
    assert both.height == 4 and both["event_id"].n_unique() == 4
    assert both.filter(pl.col("event_date") == dt.date(2026, 3, 3)).height == 2


def test_pieces_of_a_batch_map_back_to_it_and_an_aborted_attempt_leaves_nothing(lake: Lake) -> None:
    writer = lake.batch_writer("b1")
    writer.write(events(["2026-03-01"], "b1"), NO_QUARANTINE, piece="p00001")
    writer.write(events(["2026-03-01"], "b1").with_columns(pl.lit("x").alias("event_id")), NO_QUARANTINE)
    writer.finish()
    assert lakeread.batch_ids_for_day(lake, "2026-03-01") == ["b1"]
    assert [k.rsplit("/", 1)[1] for k in lake.batch_event_keys("b1")] == ["b1.p00001.parquet", "b1.parquet"]

    retry = lake.batch_writer("b1")
    retry.write(events(["2026-03-05"], "b1"), NO_QUARANTINE, piece="p00001")
    retry.abort()  # files the earlier attempt had stay; this attempt's new day goes
    assert lake.event_keys("2026-03-05") == [] and len(lake.batch_event_keys("b1")) == 2
    with pytest.raises(ValueError):
        lake.batch_writer("a.b")  # a dot would make piece names ambiguous


def test_quarantine_files_scan_as_one_frame_and_an_empty_rerun_removes_its_file(lake: Lake) -> None:
    old = pl.DataFrame({"raw_record": ["{"], "event_date": [dt.date(2026, 3, 1)], "batch_id": ["b1"]})
    new = old.with_columns(pl.lit("b2").alias("batch_id"), pl.lit(["x:y"]).alias("reasons"))
    no_events = events([], "b0")
    write_batch(lake, "b2", no_events, new)
    write_batch(lake, "b1", no_events, old)  # an older file without the `reasons` column
    assert lake.read(lake.quarantine_keys()).sort("batch_id").to_dicts() == [
        {**old.row(0, named=True), "reasons": None},  # every file's columns, null where a file lacks one
        new.row(0, named=True),
    ]
    write_batch(lake, "b1", no_events, old.clear())
    assert [k.rsplit("/", 1)[1] for k in lake.quarantine_keys()] == ["b2.parquet"]


def test_the_ledger_records_files_and_content_once(lake: Lake) -> None:
    file = LandingFile(modified=1.0, key="a.jsonl", size=10, version="1")
    ledger = lake.ledger
    assert not ledger.has_file(file) and ledger.content_batch("0" * 64) is None
    ledger.record(file, "0" * 64, "b1")
    ledger.record(LandingFile(modified=2.0, key="copy.jsonl", size=10, version="2"), "0" * 64, "b2")
    assert ledger.has_file(file) and ledger.content_batch("0" * 64) == "b1"  # the first batch keeps the content
    assert sorted(e.key for e in ledger.entries()) == ["a.jsonl", "copy.jsonl"]
    with pytest.raises(ValueError):
        ledger.content_batch("../../x")


def test_training_examples_and_sets_round_trip(lake: Lake) -> None:
    frame = pl.DataFrame({"example_id": ["e1", "e2"], "label": [0, 1]})
    location = featurestore.write_examples(lake, "2026-03-02", frame)
    assert location.endswith("features/training_examples/event_date=2026-03-02/examples.parquet")
    assert featurestore.example_days(lake) == [dt.date(2026, 3, 2)]
    assert featurestore.read_examples(lake, ["2026-03-01", "2026-03-02"]).equals(frame)
    featurestore.write_training_set(lake, "abc123", frame, frame.head(1))
    assert featurestore.read_training_set(lake, "abc123", "holdout").height == 1  # type: ignore[union-attr]
    assert featurestore.read_training_set(lake, "missing", "train") is None


@pytest.mark.parametrize("key", ["../escape", "events/../../x", "/abs", "events/a b.parquet", "events/$(rm)"])
def test_keys_cannot_leave_the_root(lake: Lake, key: str) -> None:
    with pytest.raises(ValueError):
        lake.storage.write(key, b"x")


def test_missing_objects_and_hidden_names(lake: Lake, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        lake.storage.read("events/none.parquet")
    lake.storage.write("events/event_date=2026-03-01/b.parquet", b"x")
    lake.storage.write("events/event_date=2026-03-01/.b.parquet.tmp", b"partial")  # a writer's temp name
    assert lake.storage.keys("events") == ["events/event_date=2026-03-01/b.parquet"]
    assert lake.storage.children("events") == ["event_date=2026-03-01"]
    lake.storage.delete("events/event_date=2026-03-01/b.parquet")
    lake.storage.delete("events/event_date=2026-03-01/b.parquet")  # deleting twice is fine
    assert not lake.storage.exists("events/event_date=2026-03-01/b.parquet")


def test_describe_names_the_place(lake: Lake, tmp_path: Path) -> None:
    expected = str(tmp_path / "lake") if isinstance(lake.storage, LocalStorage) else f"s3://{BUCKET}/prod/lake"
    assert lake.describe() == expected
    assert lake.describe("events/x.parquet") == f"{expected}/events/x.parquet"


def test_an_s3_lake_writes_only_whole_objects_under_its_prefix(s3_client: Any) -> None:
    s3_client.create_bucket(Bucket=BUCKET)
    lake = Lake(S3Storage(s3_client, BUCKET, "prod/lake"))
    write_batch(lake, "b1", events(["2026-03-01"], "b1"))
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == ["prod/lake/_batches/b1.json", "prod/lake/events/event_date=2026-03-01/b1.parquet"]
    body = s3_client.get_object(Bucket=BUCKET, Key=keys[1])["Body"].read()
    assert body[:4] == b"PAR1" and body[-4:] == b"PAR1"


def test_a_column_whose_type_changed_between_files_is_an_error_not_a_cast(lake: Lake) -> None:
    write_batch(lake, "b1", events(["2026-03-01"], "b1"))
    write_batch(lake, "b2", events(["2026-03-01"], "b2").with_columns(pl.col("event_id").cast(pl.Categorical)))
    with pytest.raises(TypeError, match="event_id"):
        lake.read(lake.event_keys())


@pytest.fixture(params=["local", "s3"])
def landing_storage(request: pytest.FixtureRequest, tmp_path: Path) -> LocalStorage | S3Storage:
    """The storage layer opened as the landing zone opens it: names from other systems."""
    if request.param == "local":
        return LocalStorage(tmp_path / "landing", untrusted_names=True)
    client = request.getfixturevalue("s3_client")
    client.create_bucket(Bucket=BUCKET)
    return S3Storage(client, BUCKET, "incoming", untrusted_names=True)


def test_one_storage_layer_serves_untrusted_landing_names_local_and_s3_alike(
    landing_storage: LocalStorage | S3Storage,
) -> None:
    for key in ("a b (1).jsonl", "vendor/2026/ü.csv", "_partial.jsonl", "vendor/.x.tmp"):
        landing_storage.write(key, key.encode())
    listed = sorted(landing_storage.objects("", hidden=(".", "_")))
    assert [(info.key, info.size) for info in listed] == [("a b (1).jsonl", 13), ("vendor/2026/ü.csv", 18)]
    stat = landing_storage.stat("a b (1).jsonl")
    assert stat is not None and (stat.size, stat.version) == (13, listed[0].version)
    assert landing_storage.stat("gone.jsonl") is None
    with landing_storage.open("vendor/2026/ü.csv") as stream:
        assert stream.read() == "vendor/2026/ü.csv".encode()
    with pytest.raises(ValueError):
        LocalStorage(Path("lake")).write("a b (1).jsonl", b"x")  # the lake's own keys stay strict
