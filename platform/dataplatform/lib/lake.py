"""The lake: validated events as date-partitioned Parquet, quarantine Parquet, and the ledger.

Every file appears under its final name only once it is complete (written to a hidden
temporary name in the same folder, flushed, then renamed), so readers never see a partial
file. File names derive from the batch id, so re-running a batch overwrites its own files
instead of adding new ones.

The ledger records which landing files are ingested (by identity and by content hash). It
is plain files, so sensors can read it without touching the single-writer DuckDB file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dataplatform.lib.landing import LandingFile

EVENTS_DIR = "events"
QUARANTINE_DIR = "quarantine"
LEDGER_DIR = "_ledger"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` for a hidden temp file beside `path`, make it durable, rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            write(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except Exception as exc:
            # Fix (platform_tests/test_faults.py, full disk): a full disk surfaced as an error naming no file
            # (Polars: a ComputeError "...No space left on device (os error 28)"); say which file failed.
            message = f"cannot write {path}: {exc}"
            raise (OSError(exc.errno, message) if isinstance(exc, OSError) else OSError(message)) from exc
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def write_parquet_atomically(frame: pl.DataFrame, path: Path) -> None:
    write_atomically(path, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True))


@dataclass(frozen=True)
class Lake:
    root: Path

    @property
    def events_root(self) -> Path:
        return self.root / EVENTS_DIR

    @property
    def quarantine_root(self) -> Path:
        return self.root / QUARANTINE_DIR

    def events_glob(self) -> str:
        return str(self.events_root / "event_date=*" / "*.parquet")

    def quarantine_glob(self) -> str:
        return str(self.quarantine_root / "*.parquet")

    def write_events(self, valid: pl.DataFrame, batch_id: str) -> list[Path]:
        """One file per event date for this batch; stale files of an earlier attempt are removed."""
        written: list[Path] = []
        for (event_date,), part in (
            valid.sort("event_date").partition_by("event_date", as_dict=True, maintain_order=True).items()
        ):
            path = self.events_root / f"event_date={event_date}" / f"{batch_id}.parquet"
            write_parquet_atomically(part.drop("event_date"), path)
            written.append(path)
        keep = set(written)
        for stale in self.events_root.glob(f"event_date=*/{batch_id}.parquet"):
            if stale not in keep:
                stale.unlink()
        return written

    def write_quarantine(self, quarantine: pl.DataFrame, batch_id: str) -> Path | None:
        path = self.quarantine_root / f"{batch_id}.parquet"
        if quarantine.height == 0:
            path.unlink(missing_ok=True)
            return None
        write_parquet_atomically(quarantine, path)
        return path

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.root / LEDGER_DIR)


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
    """Marker files: `files/<sha(identity)>.json` and `content/<sha256 of content>.json`."""

    root: Path

    def _identity_path(self, identity: str) -> Path:
        return self.root / "files" / f"{_digest(identity)}.json"

    def _content_path(self, content_sha256: str) -> Path:
        return self.root / "content" / f"{content_sha256}.json"

    def has_file(self, file: LandingFile) -> bool:
        return self._identity_path(file.identity).exists()

    def content_batch(self, content_sha256: str) -> str | None:
        """The batch that ingested this content, if any."""
        path = self._content_path(content_sha256)
        try:
            return json.loads(path.read_text())["batch_id"]
        except FileNotFoundError:
            return None

    def record(self, file: LandingFile, content_sha256: str, batch_id: str) -> None:
        entry = LedgerEntry(file.key, file.identity, content_sha256, batch_id, dt.datetime.now(dt.UTC).isoformat())
        text = json.dumps(entry.__dict__)
        content_path = self._content_path(content_sha256)
        # The content marker names the first batch that ingested the content and never changes.
        if not content_path.exists():
            write_atomically(content_path, lambda tmp: tmp.write_text(text))
        write_atomically(self._identity_path(file.identity), lambda tmp: tmp.write_text(text))
