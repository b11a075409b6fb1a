"""Where files arrive: a local folder or an S3 prefix, read through the platform's one storage layer
(lib/storage.py) with untrusted names.

File names are untrusted: a key is only ever a name relative to the landing root, a local
key that would leave the root (`..`, absolute paths, symlinks) is refused, and keys reach
storage and SQL only as values, never as code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from dataplatform.lib.storage import LocalStorage, ObjectInfo, ObjectStorage, S3Storage, split_s3_uri

# Producers write `.name.tmp` or `_name` first and rename when done; such names are not data yet.
HIDDEN_PREFIXES = (".", "_")


@dataclass(frozen=True, order=True)
class LandingFile:
    """A file as listed: enough to tell whether it is new or changed since we last saw it."""

    modified: float  # epoch seconds; first field so that sorting gives arrival order
    key: str  # posix path relative to the landing root
    size: int
    version: str  # S3 ETag, or mtime in ns locally

    @property
    def identity(self) -> str:
        return f"{self.key}\x1f{self.size}\x1f{self.version}"

    @classmethod
    def of(cls, info: ObjectInfo) -> LandingFile:
        return cls(info.modified, info.key, info.size, info.version)


class LandingStore(Protocol):
    uri: str

    def list_files(self, limit: int) -> list[LandingFile]: ...

    def stat(self, key: str) -> LandingFile | None: ...

    def read(self, key: str) -> bytes: ...

    def open(self, key: str) -> IO[bytes]: ...  # a stream, for files too large to hold whole


class Landing:
    """The landing zone over object storage opened with untrusted names: listed oldest first, read only."""

    def __init__(self, storage: ObjectStorage, uri: str) -> None:
        self.storage, self.uri = storage, uri

    def list_files(self, limit: int) -> list[LandingFile]:
        """Oldest first, at most `limit` files (the rest wait for the next listing)."""
        return sorted(LandingFile.of(info) for info in self.storage.objects("", HIDDEN_PREFIXES))[:limit]

    def stat(self, key: str) -> LandingFile | None:
        info = self.storage.stat(key)
        return LandingFile.of(info) if info else None

    def read(self, key: str) -> bytes:
        return self.storage.read(key)

    def open(self, key: str) -> IO[bytes]:
        return self.storage.open(key)


class LocalLanding(Landing):
    def __init__(self, root: Path) -> None:
        self.root = root
        super().__init__(LocalStorage(root, untrusted_names=True), str(root))


class S3Landing(Landing):
    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        storage = S3Storage(client, bucket, prefix, untrusted_names=True)
        super().__init__(storage, f"s3://{bucket}/{storage.prefix}/" if storage.prefix else f"s3://{bucket}/")


def open_store(uri: str, s3_client: Callable[[], Any]) -> LandingStore:
    """A store for a local folder or an `s3://bucket/prefix` uri (the client is made only for S3)."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        return S3Landing(s3_client(), bucket, prefix)
    return LocalLanding(Path(uri))
