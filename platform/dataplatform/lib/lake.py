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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from dataplatform.lib.landing import LandingFile
from dataplatform.lib.storage import LocalStorage, ObjectStorage, open_storage, write_atomically

EVENTS_DIR = "events"
QUARANTINE_DIR = "quarantine"
LEDGER_DIR = "_ledger"
BATCHES_DIR = "_batches"  # per batch: the event files it wrote, so a re-run can remove stale ones


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def write_parquet_atomically(frame: pl.DataFrame, path: Path) -> None:
    write_atomically(path, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True))


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
        """The files as one frame with the first file's columns (missing ones null, extra ones dropped)."""
        paths = [self.storage.local_path(k) for k in keys]
        if all(p is not None for p in paths):
            return pl.scan_parquet(paths, missing_columns="insert", extra_columns="ignore")  # type: ignore[arg-type]
        frames = [pl.read_parquet(io.BytesIO(self.storage.read(k))) for k in keys]
        if not frames:
            raise ValueError("no files to scan")
        return pl.concat(frames, how="diagonal_relaxed").select(frames[0].columns).lazy()

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
            return list(json.loads(self.storage.read(f"{BATCHES_DIR}/{batch_id}.json")))
        except LookupError:
            return []

    def quarantine_keys(self) -> list[str]:
        return [k for k in self.storage.keys(QUARANTINE_DIR) if k.endswith(".parquet")]

    def write_events(self, valid: pl.DataFrame, batch_id: str) -> list[str]:
        """One file per event date for this batch; files an earlier attempt wrote for other dates are removed."""
        parts = valid.sort("event_date").partition_by("event_date", as_dict=True, maintain_order=True)
        keys = [self.event_key(event_date, batch_id) for (event_date,) in parts]
        manifest = f"{BATCHES_DIR}/{batch_id}.json"
        try:
            earlier = set(json.loads(self.storage.read(manifest)))
        except LookupError:
            earlier = set()
        # Name every file before writing it, so a run killed mid-way leaves nothing a re-run cannot find.
        self.storage.write(manifest, json.dumps(sorted(earlier | set(keys))).encode())
        for key, part in zip(keys, parts.values(), strict=True):
            self.write_parquet(key, part.drop("event_date"))
        for stale in sorted(earlier - set(keys)):
            self.storage.delete(stale)
        self.storage.write(manifest, json.dumps(keys).encode())
        return keys

    def write_quarantine(self, quarantine: pl.DataFrame, batch_id: str) -> str | None:
        key = f"{QUARANTINE_DIR}/{batch_id}.parquet"
        if quarantine.height == 0:
            self.storage.delete(key)
            return None
        self.write_parquet(key, quarantine)
        return key

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.storage)


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
            return json.loads(self.storage.read(self._content_key(content_sha256)))["batch_id"]
        except LookupError:
            return None

    def entries(self) -> list[LedgerEntry]:
        return [LedgerEntry(**json.loads(self.storage.read(k))) for k in self.storage.keys(f"{LEDGER_DIR}/files")]

    def record(self, file: LandingFile, content_sha256: str, batch_id: str) -> None:
        entry = LedgerEntry(file.key, file.identity, content_sha256, batch_id, dt.datetime.now(dt.UTC).isoformat())
        data = json.dumps(entry.__dict__).encode()
        content_key = self._content_key(content_sha256)
        # The content marker names the first batch that ingested the content and never changes.
        if not self.storage.exists(content_key):
            self.storage.write(content_key, data)
        self.storage.write(self._identity_key(file.identity), data)
