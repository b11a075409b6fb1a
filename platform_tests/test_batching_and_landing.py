"""The landing zone's listing and safety rules, and the sensor's per-tick planning."""

import os
from pathlib import Path

import pytest

from dataplatform.lib.batching import (
    LOST_RUN_SECONDS,
    BatchLimits,
    RunOutcome,
    SensorState,
    group_into_batches,
    plan_tick,
)
from dataplatform.lib.landing import LandingFile, LocalLanding
from dataplatform.lib.storage import safe_relative_key
from factories import write_landing

LIMITS = BatchLimits(
    max_files=3, max_bytes=1000, max_batches_per_tick=2, settle_seconds=5, max_attempts=2, max_in_flight=3
)
NOW = 10_000.0


def files(n: int, size: int = 100, age: float = 60) -> list[LandingFile]:
    return [LandingFile(NOW - age - n + i, f"f{i:03d}.jsonl", size, f"v{i}") for i in range(n)]


def plan(listed, state=None, ingested=(), outcome=RunOutcome.IN_PROGRESS, now=NOW, limits=LIMITS):
    """One tick; runs the state already requested have `outcome`, other run keys are unknown."""
    state = state or SensorState()
    done = {f.identity for f in ingested}
    requested = {batch.run_key for batch in state.pending.values()}
    return plan_tick(
        listed,
        state,
        is_ingested=lambda f: f.identity in done,
        run_outcome=lambda key: outcome if key in requested else RunOutcome.UNKNOWN,
        now=now,
        limits=limits,
    )


def test_batches_are_bounded_by_count_and_bytes_in_arrival_order() -> None:
    listed = files(7)
    assert [[f.key for f in b] for b in group_into_batches(listed, 3, 10_000)] == [
        ["f000.jsonl", "f001.jsonl", "f002.jsonl"], ["f003.jsonl", "f004.jsonl", "f005.jsonl"], ["f006.jsonl"]
    ]  # fmt: skip
    big = [LandingFile(1, "big", 5000, "v"), LandingFile(2, "small", 10, "v")]
    assert [len(b) for b in group_into_batches(big, 3, 1000)] == [1, 1]


def test_a_tick_requests_bounded_batches_and_remembers_them() -> None:
    result = plan(files(10))
    assert [len(b.keys) for b in result.requests] == [3, 3]  # two batches per tick at most
    assert set(result.state.pending) == {b.batch_id for b in result.requests}
    assert all(b.run_key.endswith(":attempt-1") for b in result.requests)
    again = plan(files(10), SensorState.from_cursor(result.state.to_cursor()))
    assert [b.keys for b in again.requests] == [[f"f{i:03d}.jsonl" for i in range(6, 9)]]  # 3 in flight at most


def test_files_arriving_while_runs_are_in_flight_gather_into_one_batch() -> None:
    one_at_a_time = BatchLimits(**{**LIMITS.__dict__, "max_in_flight": 1, "max_files": 100})
    first = plan(files(1), limits=one_at_a_time)
    busy = plan(files(5), first.state, limits=one_at_a_time)
    assert busy.requests == []  # the first batch is still running
    done = plan(files(5), busy.state, ingested=files(1), outcome=RunOutcome.SUCCESS, limits=one_at_a_time)
    assert [len(b.keys) for b in done.requests] == [4]


def test_compressed_and_parquet_files_count_by_their_size_in_memory() -> None:
    small = [
        LandingFile(1, "a.parquet", 200, "v"),
        LandingFile(2, "b.jsonl.gz", 200, "v"),
        LandingFile(3, "c.jsonl", 200, "v"),
    ]
    assert [len(b) for b in group_into_batches(small, 10, 1000)] == [1, 1, 1]
    assert [len(b) for b in group_into_batches(small, 10, 10_000)] == [3]


def test_files_still_settling_or_already_ingested_are_not_requested() -> None:
    listed = [*files(2), LandingFile(NOW - 1, "fresh.jsonl", 10, "v")]
    result = plan(listed, ingested=listed[:1])
    assert [b.keys for b in result.requests] == [["f001.jsonl"]]


def test_same_files_make_the_same_batch_id_and_a_changed_file_a_new_one() -> None:
    first = plan(files(2)).requests[0]
    assert plan(files(2)).requests[0].batch_id == first.batch_id
    changed = [files(2)[0], LandingFile(NOW - 60, "f001.jsonl", 101, "v1-new")]
    assert plan(changed).requests[0].batch_id != first.batch_id


def test_failed_batch_is_retried_with_a_new_run_key_then_left_for_an_operator() -> None:
    first = plan(files(2))
    retry = plan(files(2), first.state, outcome=RunOutcome.FAILURE)
    assert [b.run_key.rsplit(":", 1)[1] for b in retry.requests] == ["attempt-2"]
    assert retry.requests[0].batch_id == first.requests[0].batch_id
    given_up = plan(files(2), retry.state, outcome=RunOutcome.FAILURE)
    assert given_up.requests == [] and list(given_up.state.failed) == [first.requests[0].batch_id]
    # Still not requested on later ticks, until the files change.
    assert plan(files(2), given_up.state).requests == []


def test_succeeded_batches_leave_the_cursor() -> None:
    first = plan(files(2))
    done = plan(files(2), first.state, ingested=files(2), outcome=RunOutcome.SUCCESS)
    assert done.requests == [] and done.state.pending == {}


def test_a_run_dagster_never_created_is_requested_again_after_a_while() -> None:
    first = plan(files(2))
    soon = plan(files(2), first.state, outcome=RunOutcome.UNKNOWN, now=NOW + 10)
    assert soon.requests == []
    later = plan(files(2), first.state, outcome=RunOutcome.UNKNOWN, now=NOW + LOST_RUN_SECONDS + 1)
    assert [b.attempt for b in later.requests] == [2]


def test_files_that_return_after_a_finished_run_get_a_fresh_run_key() -> None:
    used = {plan(files(2)).requests[0].run_key}
    result = plan_tick(
        files(2),
        SensorState(),
        is_ingested=lambda _: False,
        run_outcome=lambda key: RunOutcome.SUCCESS if key in used else RunOutcome.UNKNOWN,
        now=NOW,
        limits=LIMITS,
    )
    assert [b.attempt for b in result.requests] == [2]


def test_a_run_already_in_progress_is_adopted_not_requested_again() -> None:
    key = plan(files(2)).requests[0].run_key
    result = plan_tick(
        files(2),
        SensorState(),  # a lost cursor
        is_ingested=lambda _: False,
        run_outcome=lambda k: RunOutcome.IN_PROGRESS if k == key else RunOutcome.UNKNOWN,
        now=NOW,
        limits=LIMITS,
    )
    assert result.requests == [] and [b.run_key for b in result.state.pending.values()] == [key]


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a\x00b", "a\\..\\b"])
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        safe_relative_key(key)


def test_local_listing_skips_hidden_temp_and_symlinked_entries(landing_dir: Path, tmp_path: Path) -> None:
    write_landing(landing_dir, "a.jsonl", b"{}\n")
    write_landing(landing_dir, "nested/b.csv", b"x\n")
    (landing_dir / ".c.jsonl.tmp").write_bytes(b"partial")
    (landing_dir / "_processed").mkdir()
    (landing_dir / "_processed" / "d.jsonl").write_bytes(b"{}\n")
    secret = tmp_path / "secret.jsonl"
    secret.write_text("{}\n")
    os.symlink(secret, landing_dir / "link.jsonl")
    os.symlink(tmp_path, landing_dir / "linkdir")
    store = LocalLanding(landing_dir)
    assert sorted(f.key for f in store.list_files(100)) == ["a.jsonl", "nested/b.csv"]
    with pytest.raises(ValueError):
        store.read("link.jsonl")
    with pytest.raises(ValueError):
        store.read("../secret.jsonl")
    assert store.stat("missing.jsonl") is None


def test_listing_is_oldest_first_and_bounded(landing_dir: Path) -> None:
    for i, name in enumerate(["c.jsonl", "a.jsonl", "b.jsonl"]):
        path = write_landing(landing_dir, name, b"{}\n")
        os.utime(path, (1000 + i, 1000 + i))
    assert [f.key for f in LocalLanding(landing_dir).list_files(2)] == ["c.jsonl", "a.jsonl"]
