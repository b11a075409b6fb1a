"""The lake: validated events as date-partitioned Parquet, quarantine Parquet, and the ledger.

The lake lives in object storage (`dataplatform.lib.storage`): a local folder by default,
an S3 prefix in production. Every file appears under its final name only once it is
complete, so readers never see a partial file. File names derive from the batch id, so
re-running a batch overwrites its own files instead of adding new ones.

The ledger records which landing files are ingested (by identity and by content hash). It
is plain objects, so sensors can read it without touching the single-writer DuckDB file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from dataplatform.lib.landing import LandingFile
from dataplatform.lib.storage import LocalStorage, ObjectStorage, open_storage, write_atomically

EVENTS_DIR = "events"
QUARANTINE_DIR = "quarantine"
LEDGER_DIR = "_ledger"
BATCHES_DIR = "_batches"  # per batch: the files it wrote, so a re-run can remove stale ones


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def write_parquet_atomically(frame: pl.DataFrame, path: Path) -> None:
    write_atomically(path, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True))


def _union_schema(schemas: Sequence[Mapping[str, pl.DataType]], keys: Sequence[str]) -> dict[str, pl.DataType]:
    union: dict[str, pl.DataType] = {}
    for schema, key in zip(schemas, keys, strict=True):
        for name, dtype in schema.items():
            if union.setdefault(name, dtype) != dtype:
                raise TypeError(f"column {name!r} is {dtype} in {key} but {union[name]} in an earlier file")
    return union


@dataclass(frozen=True)
class Lake:
    storage: ObjectStorage

    @classmethod
    def local(cls, root: Path | str) -> Lake:
        return cls(LocalStorage(root))

    @classmethod
    def open(cls, uri: str, s3_client: Callable[[], Any]) -> Lake:
        """A folder path, or `s3://bucket/prefix` (the client factory is called only for S3)."""
        return cls(open_storage(uri, s3_client))

    def describe(self, key: str = "") -> str:
        return self.storage.describe(key)

    # --- Parquet ---

    def write_parquet(self, key: str, frame: pl.DataFrame) -> None:
        path = self.storage.local_path(key)
        if path is not None:  # straight to disk, no in-memory copy of the file
            write_parquet_atomically(frame, path)
        else:
            self.storage.write(key, _parquet_bytes(frame))

    def scan(self, keys: Sequence[str]) -> pl.LazyFrame:
        """The files as one frame: every column of any file (null where a file lacks it), in order of
        appearance; a column whose type differs between files is an error, never a silent cast."""
        if not keys:
            raise ValueError("no files to scan")
        paths = [self.storage.local_path(k) for k in keys]
        if all(p is not None for p in paths):
            schema = _union_schema([pl.read_parquet_schema(p) for p in paths], keys)  # type: ignore[arg-type]
            return pl.scan_parquet(paths, schema=schema, missing_columns="insert")  # type: ignore[arg-type]
        frames = [pl.read_parquet(io.BytesIO(self.storage.read(k))) for k in keys]
        _union_schema([f.schema for f in frames], keys)
        return pl.concat(frames, how="diagonal").lazy()

    def read(self, keys: Sequence[str]) -> pl.DataFrame:
        return self.scan(keys).collect() if keys else pl.DataFrame()

    # --- events and quarantine ---

    @staticmethod
    def event_key(day: dt.date | str, batch_id: str) -> str:
        return f"{EVENTS_DIR}/event_date={day}/{batch_id}.parquet"

    def event_keys(self, day: dt.date | str | None = None) -> list[str]:
        """Event files of one day, or of every day."""
        folder = f"{EVENTS_DIR}/event_date={day}" if day is not None else EVENTS_DIR
        return [k for k in self.storage.keys(folder) if k.endswith(".parquet")]

    def batch_event_keys(self, batch_id: str) -> list[str]:
        """The event files one batch wrote (from its manifest; empty for an unknown batch)."""
        try:
            keys = json.loads(self.storage.read(f"{BATCHES_DIR}/{batch_id}.json"))
        except LookupError:
            return []
        return [k for k in keys if k.startswith(f"{EVENTS_DIR}/")]

    def quarantine_keys(self) -> list[str]:
        return [k for k in self.storage.keys(QUARANTINE_DIR) if k.endswith(".parquet")]

    def batch_writer(self, batch_id: str) -> BatchWriter:
        return BatchWriter(self, batch_id)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.storage)


def batch_of_file(key: str) -> str:
    """The batch id in a lake file name: `<batch id>.parquet`, or `<batch id>.<piece>.parquet` for a piece."""
    return key.rsplit("/", 1)[-1].removesuffix(".parquet").split(".", 1)[0]


class BatchWriter:
    """The lake files of one batch attempt, written piece by piece.

    The batch's manifest (`_batches/<batch id>.json`) names every file before it is written, so a
    file of an attempt that died is always found again; `finish` removes what earlier attempts wrote
    and this one did not (other event dates, more pieces), and `abort` removes what this one wrote.
    Batch ids contain no dot, so `<batch id>.<piece>` file names map back to their batch.
    """

    def __init__(self, lake: Lake, batch_id: str) -> None:
        if "." in batch_id:
            raise ValueError(f"a batch id has no dot: {batch_id!r}")
        self.lake, self.batch_id = lake, batch_id
        self.manifest = f"{BATCHES_DIR}/{batch_id}.json"
        try:
            self.earlier = set(json.loads(lake.storage.read(self.manifest)))
        except LookupError:
            self.earlier = set()
        self.written: list[str] = []

    def _name(self, keys: list[str]) -> None:
        self.lake.storage.write(self.manifest, json.dumps(sorted(self.earlier | {*self.written, *keys})).encode())

    def write(self, valid: pl.DataFrame, quarantine: pl.DataFrame, piece: str | None = None) -> list[str]:
        """One file per event date of `valid`, and one quarantine file; `piece` names a piece of a large file."""
        name = f"{self.batch_id}.{piece}" if piece else self.batch_id
        parts = valid.sort("event_date").partition_by("event_date", as_dict=True, maintain_order=True)
        files = {Lake.event_key(event_date, name): part.drop("event_date") for (event_date,), part in parts.items()}
        if quarantine.height:
            files[f"{QUARANTINE_DIR}/{name}.parquet"] = quarantine
        self._name(list(files))
        for key, frame in files.items():
            self.lake.write_parquet(key, frame)
        self.written += files
        return list(files)

    def finish(self) -> None:
        for stale in sorted(self.earlier - set(self.written)):
            self.lake.storage.delete(stale)
        self.lake.storage.write(self.manifest, json.dumps(sorted(self.written)).encode())

    def abort(self) -> None:
        """Remove this attempt's files that no earlier attempt had (for a failure the batch will not retry)."""
        for key in sorted(set(self.written) - self.earlier):
            self.lake.storage.delete(key)
        self.lake.storage.write(self.manifest, json.dumps(sorted(self.earlier)).encode())


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class LedgerEntry:
    key: str
    identity: str
    content_sha256: str
    batch_id: str
    recorded_at: str


@dataclass(frozen=True)
class Ledger:
    """Marker objects: `_ledger/files/<sha(identity)>.json` and `_ledger/content/<sha256 of content>.json`."""

    storage: ObjectStorage

    @staticmethod
    def _identity_key(identity: str) -> str:
        return f"{LEDGER_DIR}/files/{_digest(identity)}.json"

    @staticmethod
    def _content_key(content_sha256: str) -> str:
        if len(content_sha256) != 64 or not content_sha256.isalnum():
            raise ValueError(f"not a sha256: {content_sha256!r}")
        return f"{LEDGER_DIR}/content/{content_sha256}.json"

    def has_file(self, file: LandingFile) -> bool:
        return self.storage.exists(self._identity_key(file.identity))

    def content_batch(self, content_sha256: str) -> str | None:
        """The batch that ingested this content, if any."""
        try:
            owner: str | None = json.loads(self.storage.read(self._content_key(content_sha256)))["batch_id"]
            return owner
        except LookupError:
            return None

    def entries(self) -> list[LedgerEntry]:
        return [LedgerEntry(**json.loads(self.storage.read(k))) for k in self.storage.keys(f"{LEDGER_DIR}/files")]

    def record(self, file: LandingFile, content_sha256: str, batch_id: str, *, ingested: bool = True) -> None:
        """Mark the file version as seen; `ingested=False` (a rejected file) marks only the version.

        Only ingested content may make a later file a redelivery: a file rejected for its name or
        format, fixed and delivered again with the same bytes, must be read.
        """
        entry = LedgerEntry(file.key, file.identity, content_sha256, batch_id, dt.datetime.now(dt.UTC).isoformat())
        data = json.dumps(entry.__dict__).encode()
        content_key = self._content_key(content_sha256)
        # The content marker names the first batch that ingested the content and never changes.
        if ingested and not self.storage.exists(content_key):
            self.storage.write(content_key, data)
        self.storage.write(self._identity_key(file.identity), data)
