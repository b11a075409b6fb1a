"""Where files arrive: a local folder or an S3 prefix, behind one small interface.

File names are untrusted: a key is only ever a name relative to the landing root, a local
key that would leave the root (`..`, absolute paths, symlinks) is refused, and keys reach
storage and SQL only as values, never as code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from dataplatform.lib.storage import is_not_found, split_s3_uri

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


class LandingStore(Protocol):
    uri: str

    def list_files(self, limit: int) -> list[LandingFile]: ...

    def stat(self, key: str) -> LandingFile | None: ...

    def read(self, key: str) -> bytes: ...

    def open(self, key: str) -> IO[bytes]: ...  # a stream, for files too large to hold whole


def is_visible(key: str) -> bool:
    return not any(part.startswith(HIDDEN_PREFIXES) for part in PurePosixPath(key).parts)


def safe_relative_key(key: str) -> PurePosixPath:
    """The key as a relative path that cannot leave its root, or ValueError."""
    path = PurePosixPath(key)
    if not key or "\x00" in key or path.is_absolute() or ".." in path.parts or "\\" in key:
        raise ValueError(f"unsafe landing key: {key!r}")
    return path


class LocalLanding:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def list_files(self, limit: int) -> list[LandingFile]:
        """Oldest first, at most `limit` files (the rest wait for the next listing)."""
        files = sorted(self._walk(self.root, ""))
        return files[:limit]

    def _walk(self, folder: Path, prefix: str) -> Iterator[LandingFile]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(HIDDEN_PREFIXES) or entry.is_symlink():
                continue
            key = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), f"{key}/")
            elif entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                yield LandingFile(stat.st_mtime, key, stat.st_size, str(stat.st_mtime_ns))

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*safe_relative_key(key).parts)
        if path.is_symlink() or not path.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"landing key leaves the landing root: {key!r}")
        return path

    def stat(self, key: str) -> LandingFile | None:
        try:
            stat = self._path(key).stat()
        except FileNotFoundError:
            return None
        return LandingFile(stat.st_mtime, key, stat.st_size, str(stat.st_mtime_ns))

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def open(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")


class S3Landing:
    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}"

    def list_files(self, limit: int) -> list[LandingFile]:
        files: list[LandingFile] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                if key and not key.endswith("/") and is_visible(key):
                    modified = item["LastModified"].timestamp()
                    files.append(LandingFile(modified, key, item["Size"], item["ETag"].strip('"')))
        return sorted(files)[:limit]

    def stat(self, key: str) -> LandingFile | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.ClientError as exc:
            if is_not_found(exc):
                # A HEAD 404 is also what a missing bucket gives: that is an error, not a vanished file.
                self.client.head_bucket(Bucket=self.bucket)
                return None
            raise
        return LandingFile(head["LastModified"].timestamp(), key, head["ContentLength"], head["ETag"].strip('"'))

    def read(self, key: str) -> bytes:
        return self.open(key).read()

    def open(self, key: str) -> IO[bytes]:
        body: IO[bytes] = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        return body


def open_store(uri: str, s3_client: Callable[[], Any]) -> LandingStore:
    """A store for a local folder or an `s3://bucket/prefix` uri (the client is made only for S3)."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        return S3Landing(s3_client(), bucket, prefix)
    return LocalLanding(Path(uri))
