"""Object storage under one root: a local folder or an S3 prefix, behind the same small API.

Every file the platform reads or writes goes through here: the lake and the model registry, whose
keys this package builds from constants, validated ids and dates (every part is checked against a
strict pattern), and the landing zone, whose names come from other systems (`untrusted_names`: any
characters, but a local name that would leave the root, through `..`, an absolute path or a symlink,
is refused; an S3 key is a name, not a path, and cannot leave its prefix). A write is atomic per key:
locally a hidden temporary file is made durable and renamed into place, and an S3 PUT never shows a
partial object.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final, NamedTuple, Protocol

BUCKET_RE: Final = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
KEY_PART_RE: Final = re.compile(r"[A-Za-z0-9._=\-]+")


class NotFoundError(LookupError):
    """No object under that key."""


class ObjectInfo(NamedTuple):
    """An object as listed or stat-ed."""

    key: str  # relative to the storage root
    size: int
    modified: float  # epoch seconds
    version: str  # S3 ETag, or the modification time in ns locally


def _check_parts(key: str, what: str) -> list[str]:
    parts = key.split("/") if key else []
    if any(p in (".", "..") or not KEY_PART_RE.fullmatch(p) for p in parts):
        raise ValueError(f"unsafe {what} {key!r}")
    return parts


def safe_relative_key(key: str) -> PurePosixPath:
    """An untrusted name as a relative path that cannot leave its root, or ValueError."""
    path = PurePosixPath(key)
    if not key or "\x00" in key or path.is_absolute() or ".." in path.parts or "\\" in key:
        raise ValueError(f"unsafe key: {key!r}")
    return path


def _is_hidden(key: str, hidden: tuple[str, ...]) -> bool:
    return any(part.startswith(hidden) for part in key.split("/"))


class ObjectStorage(Protocol):
    def read(self, key: str) -> bytes: ...  # raises NotFoundError

    def write(self, key: str, data: bytes) -> None: ...  # atomic per key

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...  # a missing key is fine

    def keys(self, folder: str) -> list[str]: ...  # every key below `folder`, sorted

    def objects(self, folder: str = "", hidden: tuple[str, ...] = (".",)) -> Iterator[ObjectInfo]: ...

    def stat(self, key: str) -> ObjectInfo | None: ...  # None when there is no such object

    def open(self, key: str) -> IO[bytes]: ...  # a stream, for files too large to hold whole

    def children(self, folder: str) -> list[str]: ...  # immediate sub-folder names

    def local_path(self, key: str) -> Path | None: ...  # the file, when storage is local

    def describe(self, key: str = "") -> str: ...  # a path or s3:// URI for messages and metadata


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` for a hidden temp file beside `path`, make it durable, rename it into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            write(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
    except Exception as exc:
        # Fix (platform_tests/test_faults.py, full disk): a full disk surfaced as an error naming no file
        # (Polars: a ComputeError "...No space left on device (os error 28)"); say which file failed.
        message = f"cannot write {path}: {exc}"
        raise (OSError(exc.errno, message) if isinstance(exc, OSError) else OSError(message)) from exc


class LocalStorage:
    def __init__(self, root: Path | str, *, untrusted_names: bool = False) -> None:
        self.root, self.untrusted_names = Path(root), untrusted_names

    def _path(self, key: str) -> Path:
        if not self.untrusted_names:
            return self.root.joinpath(*_check_parts(key, "storage key"))
        path = self.root.joinpath(*safe_relative_key(key).parts)
        if path.is_symlink() or not path.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"key leaves the storage root: {key!r}")
        return path

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{key} not found in {self.describe()}") from None

    def write(self, key: str, data: bytes) -> None:
        write_atomically(self._path(key), lambda tmp: tmp.write_bytes(data))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, folder: str) -> list[str]:
        return sorted(info.key for info in self.objects(folder))

    def objects(self, folder: str = "", hidden: tuple[str, ...] = (".",)) -> Iterator[ObjectInfo]:
        """Every file below `folder`, in no order; hidden names and symlinks are skipped at every level."""
        yield from self._walk(self._path(folder) if folder else self.root, f"{folder}/" if folder else "", hidden)

    def _walk(self, path: Path, prefix: str, hidden: tuple[str, ...]) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(hidden) or entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), f"{prefix}{entry.name}/", hidden)
            elif entry.is_file(follow_symlinks=False):
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed since the folder was read
                    continue
                yield ObjectInfo(f"{prefix}{entry.name}", stat.st_size, stat.st_mtime, str(stat.st_mtime_ns))

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            stat = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, stat.st_size, stat.st_mtime, str(stat.st_mtime_ns))

    def open(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")

    def children(self, folder: str) -> list[str]:
        path = self._path(folder)
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def describe(self, key: str = "") -> str:
        return str(self._path(key)) if key else str(self.root)


class S3Storage:
    def __init__(self, client: Any, bucket: str, prefix: str = "", *, untrusted_names: bool = False) -> None:
        if not BUCKET_RE.fullmatch(bucket):
            raise ValueError(f"invalid bucket name {bucket!r}")
        self.client, self.bucket, self.prefix = client, bucket, "/".join(_check_parts(prefix.strip("/"), "S3 prefix"))
        self.untrusted_names = untrusted_names

    def _key(self, key: str) -> str:
        parts = key.split("/") if self.untrusted_names and key else _check_parts(key, "storage key")
        return "/".join([self.prefix, *parts] if self.prefix else parts)

    def read(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise NotFoundError(f"{key} not found in {self.describe()}") from None
        content: bytes = response["Body"].read()
        return content

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as error:
            if is_not_found(error):
                return None
            raise
        return head

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _list(self, folder: str, **options: str) -> list[dict[str, Any]]:
        base = self._key(folder)
        prefix = base.rstrip("/") + "/" if base else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, **options)
        return list(pages)

    def keys(self, folder: str) -> list[str]:
        return sorted(info.key for info in self.objects(folder))

    def objects(self, folder: str = "", hidden: tuple[str, ...] = (".",)) -> Iterator[ObjectInfo]:
        """Every object below `folder`, in no order; keys with a hidden part are skipped."""
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in self._list(folder):
            for item in page.get("Contents", []):
                key = item["Key"][strip:]
                if key and not key.endswith("/") and not _is_hidden(key, hidden):
                    yield ObjectInfo(key, item["Size"], item["LastModified"].timestamp(), item["ETag"].strip('"'))

    def stat(self, key: str) -> ObjectInfo | None:
        head = self._head(key)
        if head is None:
            # A HEAD 404 is also what a missing bucket gives: that is an error, not a vanished object.
            self.client.head_bucket(Bucket=self.bucket)
            return None
        return ObjectInfo(key, head["ContentLength"], head["LastModified"].timestamp(), head["ETag"].strip('"'))

    def open(self, key: str) -> IO[bytes]:
        body: IO[bytes] = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        return body

    def children(self, folder: str) -> list[str]:
        prefix = self._key(folder).rstrip("/") + "/"
        names = [
            cp["Prefix"][len(prefix) :].rstrip("/")
            for page in self._list(folder, Delimiter="/")
            for cp in page.get("CommonPrefixes", [])
        ]
        return sorted(n for n in names if not n.startswith("."))

    def local_path(self, key: str) -> Path | None:
        return None

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key) if key else self.prefix}".rstrip("/")


# The codes S3 answers for an object that is not there: a GET gives NoSuchKey, a HEAD only the status.
S3_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def is_not_found(error: Any) -> bool:
    """Whether a botocore ClientError says that the object is not there."""
    return error.response.get("Error", {}).get("Code") in S3_NOT_FOUND_CODES


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> (`bucket`, `some/prefix`)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"not an s3 uri: {uri!r}")
    return bucket, prefix.strip("/")


def open_storage(uri: str, s3_client: Callable[[], Any], *, untrusted_names: bool = False) -> ObjectStorage:
    """A folder path, or `s3://bucket/prefix` through the given client factory (dagster-aws in Dagster)."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        return S3Storage(s3_client(), bucket, prefix, untrusted_names=untrusted_names)
    return LocalStorage(uri, untrusted_names=untrusted_names)


def s3_client_from_env() -> Any:
    """A boto3 S3 client for command-line tools: endpoint from DP_S3_ENDPOINT_URL, credentials from boto3's chain."""
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", endpoint_url=os.environ.get("DP_S3_ENDPOINT_URL") or None, region_name=region)
