"""Ingest one batch of landing files: read, transform, write the lake, commit the warehouse.

Order matters for "nothing lost, nothing doubled":
1. parse every file and apply the contract (nothing is written yet);
2. under the warehouse's writer lock, drop rows whose event_id another batch already holds;
3. check rows in = valid + quarantined + duplicates, or fail before writing anything;
4. write lake Parquet atomically (file names from the batch id: a re-run overwrites);
5. commit rows, quarantine, audit and file records in one DuckDB transaction;
6. only then mark the landing files as ingested in the ledger.
A crash between any two steps leaves a state that re-running the same batch completes.

A JSONL file larger than `piece_bytes` is never held whole: it is read as a stream, in pieces
of whole lines, and each piece goes through steps 1-5 as its own part (`<batch id>-part00001`,
...; a part is a batch of its own in the audit table). The batch's own commit, with the small
files and every file record, comes last, so a file is recorded only once all its parts are in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from dataplatform.lib import warehouse
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LandingFile, LandingStore
from dataplatform.lib.readers import (
    FileRejection,
    ParsedFile,
    check_jsonl_stream,
    jsonl_pieces,
    read_landing_file,
    reads_in_pieces,
)
from dataplatform.lib.transform import QUARANTINE_SCHEMA, transform


class ReconciliationError(RuntimeError):
    """Rows in != valid + quarantined + duplicates: something would be lost or doubled."""


@dataclass
class IngestReport:
    batch_id: str
    mode: str
    files: list[str]
    files_redelivered: list[str] = field(default_factory=list)
    files_rejected: int = 0
    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_duplicate_in_batch: int = 0
    rows_duplicate_existing: int = 0
    event_dates: list[str] = field(default_factory=list)
    top_reasons: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)  # batch ids of the pieces of large files

    def absorb(self, part: IngestReport) -> None:
        """Add a part's counts to this batch's totals."""
        self.rows_in += part.rows_in
        self.rows_valid += part.rows_valid
        self.rows_quarantined += part.rows_quarantined
        self.rows_duplicate_in_batch += part.rows_duplicate_in_batch
        self.rows_duplicate_existing += part.rows_duplicate_existing
        self.event_dates = sorted({*self.event_dates, *part.event_dates})
        for reason, count in part.top_reasons.items():
            self.top_reasons[reason] = self.top_reasons.get(reason, 0) + count
        self.top_reasons = dict(sorted(self.top_reasons.items(), key=lambda item: -item[1]))
        for phase, seconds in part.seconds.items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @property
    def rows_duplicate(self) -> int:
        return self.rows_duplicate_in_batch + self.rows_duplicate_existing

    @property
    def quarantine_rate(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_valid + self.rows_quarantined + self.rows_duplicate

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_duplicate": self.rows_duplicate, "quarantine_rate": self.quarantine_rate}


def batch_id_for(prefix: str, files: Sequence[LandingFile]) -> str:
    """Stable id of a set of file versions: the same files always make the same batch."""
    digest = hashlib.sha256("\n".join(sorted(f.identity for f in files)).encode()).hexdigest()
    return f"{prefix}-{digest[:20]}"


@dataclass
class _ReadBatch:
    parsed: list[ParsedFile] = field(default_factory=list)
    rejected: list[FileRejection] = field(default_factory=list)
    redelivered: list[tuple[LandingFile, str]] = field(default_factory=list)
    accepted: list[tuple[LandingFile, str, str]] = field(default_factory=list)  # file, sha, status
    streamed: list[tuple[LandingFile, str]] = field(default_factory=list)  # large files to read in pieces, sha


def _check_streamed(store: LandingStore, file: LandingFile) -> FileRejection | tuple[LandingFile, str]:
    with closing(store.open(file.key)) as stream:
        sha, _, rejection = check_jsonl_stream(file.key, stream)
    return rejection or (file, sha)


def _read_files(
    store: LandingStore, files: Sequence[LandingFile], lake: Lake, batch_id: str, piece_bytes: int
) -> _ReadBatch:
    batch = _ReadBatch()
    seen_content: set[str] = set()
    for file in files:
        if reads_in_pieces(file.key, file.size, piece_bytes):
            result: ParsedFile | FileRejection | tuple[LandingFile, str] = _check_streamed(store, file)
        else:
            result = read_landing_file(file.key, store.read(file.key))
        sha = result[1] if isinstance(result, tuple) else result.content_sha256
        owner = lake.ledger.content_batch(sha)
        if sha in seen_content or (owner is not None and owner != batch_id):
            batch.redelivered.append((file, sha))
            continue
        seen_content.add(sha)
        if isinstance(result, tuple):
            batch.streamed.append(result)
            batch.accepted.append((file, sha, "ingested"))
            continue
        if isinstance(result, FileRejection):
            batch.rejected.append(result)
            batch.accepted.append((file, result.content_sha256, "rejected"))
        else:
            batch.parsed.append(result)
            batch.accepted.append((file, result.content_sha256, "ingested"))
    return batch


def _stack(frames: list[pl.DataFrame], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames, how="diagonal_relaxed")


def _rejections_as_quarantine(rejected: list[FileRejection]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source_file": [r.source_file for r in rejected],
            "source_row": [None] * len(rejected),
            "reasons": [[r.reason] for r in rejected],
            "raw_record": [
                json.dumps({"size_bytes": r.size, "sha256": r.content_sha256, "detail": r.detail, "preview": r.preview})
                for r in rejected
            ],
            "event_date": [None] * len(rejected),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _files_frame(read: _ReadBatch | None, batch_id: str, now: dt.datetime) -> pl.DataFrame:
    rows = [] if read is None else [(f, sha, status) for f, sha, status in read.accepted]
    rows += [] if read is None else [(f, sha, "redelivered") for f, sha in read.redelivered]
    return pl.DataFrame(
        {
            "source_file": [f.key for f, _, _ in rows],
            "identity": [f.identity for f, _, _ in rows],
            "content_sha256": [sha for _, sha, _ in rows],
            "size_bytes": [f.size for f, _, _ in rows],
            "batch_id": [batch_id] * len(rows),
            "status": [status for _, _, status in rows],
            "recorded_at": [now] * len(rows),
        },
        schema={
            "source_file": pl.String, "identity": pl.String, "content_sha256": pl.String, "size_bytes": pl.Int64,
            "batch_id": pl.String, "status": pl.String, "recorded_at": pl.Datetime("us", "UTC"),
        },
    )  # fmt: skip


DEFAULT_PIECE_BYTES = 64 * 1024 * 1024


def ingest_batch(
    *,
    store: LandingStore,
    files: Sequence[LandingFile],
    lake: Lake,
    warehouse_path: Path,
    batch_id: str,
    mode: str,
    partition_key: str | None = None,
    run_id: str | None = None,
    log: Callable[[str], None] = lambda _: None,
    piece_bytes: int = DEFAULT_PIECE_BYTES,
) -> IngestReport:
    """Ingest `files` from `store` as batch `batch_id`; safe to repeat after any crash."""
    clock = time.perf_counter()
    read = _read_files(store, files, lake, batch_id, piece_bytes)
    read_seconds = time.perf_counter() - clock
    report = IngestReport(batch_id=batch_id, mode=mode, files=[f.key for f in files])
    context = _PartContext(lake, warehouse_path, mode, partition_key, run_id)

    for file, sha in read.streamed:
        with closing(store.open(file.key)) as stream:
            for n, piece in enumerate(jsonl_pieces(file.key, stream, sha, piece_bytes), start=len(report.parts) + 1):
                part = _ingest_part(context, f"{batch_id}-part{n:05d}", [file.key], [piece], [], None)
                report.absorb(part)
                report.parts.append(part.batch_id)
                log(f"part {part.batch_id} of {file.key}: {part.rows_in} in, {part.rows_valid} valid")

    # The batch's own commit comes last and records every file: until it is in, a re-run redoes the batch.
    own = _ingest_part(context, batch_id, report.files, read.parsed, read.rejected, read)
    report.absorb(own)
    report.files_redelivered = own.files_redelivered
    report.files_rejected = own.files_rejected
    report.seconds["read"] += read_seconds

    for file, sha, _ in read.accepted:
        lake.ledger.record(file, sha, batch_id)
    for file, sha in read.redelivered:
        lake.ledger.record(file, sha, batch_id)
    log(
        f"batch {batch_id}: {report.rows_in} in = {report.rows_valid} valid + {report.rows_quarantined} quarantined"
        f" + {report.rows_duplicate} duplicates; {len(report.files_redelivered)} files redelivered"
        + (f"; {len(report.parts)} parts" if report.parts else "")
    )
    return report


@dataclass(frozen=True)
class _PartContext:
    lake: Lake
    warehouse_path: Path
    mode: str
    partition_key: str | None
    run_id: str | None


def _ingest_part(
    context: _PartContext,
    batch_id: str,
    file_keys: list[str],
    parsed: list[ParsedFile],
    rejected: list[FileRejection],
    read: _ReadBatch | None,
) -> IngestReport:
    """Steps 1-5 for one set of parsed records; `read` (the batch's own part only) adds the file records."""
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    report = IngestReport(batch_id=batch_id, mode=context.mode, files=file_keys)
    if read is not None:
        report.files_redelivered = [f.key for f, _ in read.redelivered]
    report.files_rejected = len(rejected)
    records = _stack(
        [p.records.with_columns(pl.lit(p.source_file).alias("source_file")) for p in parsed],
        {"source_file": pl.String, "source_row": pl.Int64},
    )
    malformed = _stack(
        [p.malformed.with_columns(pl.lit(p.source_file).alias("source_file")) for p in parsed],
        {"source_file": pl.String, "source_row": pl.Int64, "raw_record": pl.String},
    )
    report.seconds["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    result = transform(records, malformed)
    quarantine = pl.concat([result.quarantine, _rejections_as_quarantine(rejected)])
    report.seconds["transform"] = time.perf_counter() - clock

    with warehouse.connect(context.warehouse_path) as con:
        clock = time.perf_counter()
        taken = warehouse.ids_owned_by_other_batches(con, result.valid, batch_id)
        valid = result.valid.filter(~pl.col("event_id").is_in(taken.implode())) if taken.len() else result.valid
        report.rows_in = result.rows_in + len(rejected)
        report.rows_valid = valid.height
        report.rows_quarantined = quarantine.height
        report.rows_duplicate_in_batch = result.duplicates
        report.rows_duplicate_existing = result.valid.height - valid.height
        if not report.reconciles:
            raise ReconciliationError(f"batch {batch_id} does not reconcile: {report.as_dict()}")
        report.event_dates = sorted({str(d) for d in valid["event_date"].unique()})
        report.top_reasons = _reason_counts(quarantine)

        lake_rows = valid.with_columns(pl.lit(batch_id).alias("batch_id"))
        context.lake.write_events(lake_rows, batch_id)
        context.lake.write_quarantine(quarantine.with_columns(pl.lit(batch_id).alias("batch_id")), batch_id)
        report.seconds["write"] = time.perf_counter() - clock

        clock = time.perf_counter()
        now = dt.datetime.now(dt.UTC)
        commit = warehouse.BatchCommit(
            batch_id=batch_id,
            events=lake_rows.with_columns(pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("ingested_at")),
            quarantine=quarantine.with_columns(
                pl.lit(batch_id).alias("batch_id"), pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("quarantined_at")
            ),
            audit=_audit_row(report, context.partition_key, context.run_id, started, now),
            files=_files_frame(read, batch_id, now),
        )
        warehouse.commit_batch(con, commit)
        report.seconds["merge"] = time.perf_counter() - clock
    return report


def _reason_counts(quarantine: pl.DataFrame) -> dict[str, int]:
    if quarantine.height == 0:
        return {}
    counts = quarantine.select(pl.col("reasons").explode().value_counts(sort=True)).unnest("reasons")
    return dict(zip(counts["reasons"], counts["count"], strict=True))


def _audit_row(
    report: IngestReport, partition_key: str | None, run_id: str | None, started: dt.datetime, now: dt.datetime
) -> dict[str, Any]:
    return {
        "batch_id": report.batch_id,
        "mode": report.mode,
        "partition_key": partition_key,
        "run_id": run_id,
        "files": report.files,
        "files_redelivered": report.files_redelivered,
        "files_rejected": report.files_rejected,
        "rows_in": report.rows_in,
        "rows_valid": report.rows_valid,
        "rows_quarantined": report.rows_quarantined,
        "rows_duplicate": report.rows_duplicate,
        "rows_duplicate_in_batch": report.rows_duplicate_in_batch,
        "rows_duplicate_existing": report.rows_duplicate_existing,
        "started_at": started,
        "committed_at": now,
        "read_seconds": report.seconds.get("read"),
        "transform_seconds": report.seconds.get("transform"),
        "write_seconds": report.seconds.get("write"),
    }
