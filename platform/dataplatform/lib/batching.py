"""What the landing sensor does on each tick, as pure logic.

Given the listing, the ledger and the batches already requested, decide which new
micro-batches to request and which failed ones to retry. The state survives in the
sensor's cursor. A run_key is never reused by Dagster (dagster-io/dagster#15982), so a
retry of a failed batch gets the same batch id with a new attempt number in its run_key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum

from dataplatform.lib.ingest import batch_id_for
from dataplatform.lib.landing import LandingFile

# A requested run that Dagster has no record of after this long is treated as lost.
LOST_RUN_SECONDS = 300.0
# Batches that used up their attempts are remembered (so they are not retried on every
# tick) up to this many; an operator re-runs them from the UI or changes the files.
MAX_REMEMBERED_FAILURES = 1000


class RunOutcome(Enum):
    UNKNOWN = "unknown"  # no run with this run_key yet
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class BatchLimits:
    max_files: int
    max_bytes: int
    max_batches_per_tick: int
    settle_seconds: float
    max_attempts: int
    # Runs in flight at once. DuckDB takes one writer at a time, so more runs only queue; with
    # two, the next run starts up while the current one writes, and files that arrive
    # meanwhile gather into the next batch instead of each paying a run's start-up alone.
    max_in_flight: int = 2


@dataclass
class PendingBatch:
    batch_id: str
    keys: list[str]
    identities: list[str]
    attempt: int
    requested_at: float

    @property
    def run_key(self) -> str:
        return f"{self.batch_id}:attempt-{self.attempt}"


@dataclass
class SensorState:
    pending: dict[str, PendingBatch] = field(default_factory=dict)  # by batch id
    failed: dict[str, list[str]] = field(default_factory=dict)  # batch id -> identities

    @classmethod
    def from_cursor(cls, cursor: str | None) -> SensorState:
        if not cursor:
            return cls()
        raw = json.loads(cursor)
        return cls(
            pending={k: PendingBatch(**v) for k, v in raw.get("pending", {}).items()},
            failed=raw.get("failed", {}),
        )

    def to_cursor(self) -> str:
        return json.dumps({"pending": {k: asdict(v) for k, v in self.pending.items()}, "failed": self.failed})


@dataclass
class TickPlan:
    requests: list[PendingBatch]
    state: SensorState
    notes: list[str]


# Compressed and columnar files hold several times their size in memory once read; batches are
# bounded by this estimate (measured: zstd Parquet of demo events is about 7x smaller than JSONL).
EXPANSION = {".parquet": 8, ".gz": 8}


def estimated_bytes(file: LandingFile) -> int:
    suffix = "." + file.key.rsplit(".", 1)[-1].lower() if "." in file.key else ""
    return file.size * EXPANSION.get(suffix, 1)


def group_into_batches(files: Sequence[LandingFile], max_files: int, max_bytes: int) -> list[list[LandingFile]]:
    """Consecutive groups in arrival order, bounded by count and estimated bytes (a huge file goes alone)."""
    batches: list[list[LandingFile]] = []
    current: list[LandingFile] = []
    size = 0
    for file in files:
        weight = estimated_bytes(file)
        if current and (len(current) >= max_files or size + weight > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(file)
        size += weight
    if current:
        batches.append(current)
    return batches


def plan_tick(
    listed: Sequence[LandingFile],
    state: SensorState,
    *,
    is_ingested: Callable[[LandingFile], bool],
    run_outcome: Callable[[str], RunOutcome],
    now: float,
    limits: BatchLimits,
) -> TickPlan:
    notes: list[str] = []
    requests: list[PendingBatch] = []
    new_state = SensorState(pending={}, failed=dict(state.failed))
    for batch_id, batch in state.pending.items():
        outcome = run_outcome(batch.run_key)
        if outcome is RunOutcome.SUCCESS:
            continue
        lost = outcome is RunOutcome.UNKNOWN and now - batch.requested_at > LOST_RUN_SECONDS
        if outcome is RunOutcome.FAILURE or lost:
            if batch.attempt >= limits.max_attempts:
                new_state.failed[batch_id] = batch.identities
                notes.append(f"batch {batch_id} failed {batch.attempt} times; left for an operator")
                continue
            retry = PendingBatch(batch_id, batch.keys, batch.identities, batch.attempt + 1, now)
            requests.append(retry)
            new_state.pending[batch_id] = retry
            notes.append(f"retrying batch {batch_id} (attempt {retry.attempt})")
            continue
        new_state.pending[batch_id] = batch
    while len(new_state.failed) > MAX_REMEMBERED_FAILURES:
        new_state.failed.pop(next(iter(new_state.failed)))

    claimed = {i for b in new_state.pending.values() for i in b.identities}
    claimed |= {i for identities in new_state.failed.values() for i in identities}
    fresh = [
        f
        for f in sorted(listed)
        if f.identity not in claimed and now - f.modified >= limits.settle_seconds and not is_ingested(f)
    ]
    room = max(0, min(limits.max_batches_per_tick - len(requests), limits.max_in_flight - len(new_state.pending)))
    for group in group_into_batches(fresh, limits.max_files, limits.max_bytes)[:room]:
        batch = PendingBatch(
            batch_id=batch_id_for("stream", group),
            keys=[f.key for f in group],
            identities=[f.identity for f in group],
            attempt=1,
            requested_at=now,
        )
        # The same files can come back after earlier runs of this batch (they vanished mid-run,
        # or the cursor was reset): continue after the attempts Dagster already knows.
        outcome = run_outcome(batch.run_key)
        while outcome in (RunOutcome.SUCCESS, RunOutcome.FAILURE) and batch.attempt <= limits.max_attempts:
            batch.attempt += 1
            outcome = run_outcome(batch.run_key)
        if batch.attempt > limits.max_attempts:
            new_state.failed[batch.batch_id] = batch.identities
            notes.append(f"batch {batch.batch_id} has used its {limits.max_attempts} attempts; left for an operator")
            continue
        if outcome is RunOutcome.UNKNOWN:
            requests.append(batch)
        new_state.pending[batch.batch_id] = batch  # a run already in progress is adopted, not repeated
    return TickPlan(requests, new_state, notes)
