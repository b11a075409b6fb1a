"""Object storage under one root: a local folder or an S3 prefix, behind the same small API.

The lake and the model registry both keep their files here. Keys are `/`-separated and
built by this package from constants, validated ids and dates; every part is still checked
against a strict pattern, so a key can never climb out of its root. A write is atomic per
key: locally a hidden temporary file is made durable and renamed into place, and an S3
PUT never shows a partial object.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

BUCKET_RE: Final = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
KEY_PART_RE: Final = re.compile(r"[A-Za-z0-9._=\-]+")


class NotFoundError(LookupError):
    """No object under that key."""


def _check_parts(key: str, what: str) -> list[str]:
    parts = key.split("/") if key else []
    if any(p in (".", "..") or not KEY_PART_RE.fullmatch(p) for p in parts):
        raise ValueError(f"unsafe {what} {key!r}")
    return parts


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


class ObjectStorage(Protocol):
    def read(self, key: str) -> bytes: ...  # raises NotFoundError

    def write(self, key: str, data: bytes) -> None: ...  # atomic per key

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...  # a missing key is fine

    def keys(self, folder: str) -> list[str]: ...  # every key below `folder`, sorted

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
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_parts(key, "storage key"))

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
        base = self._path(folder)
        if not base.is_dir():
            return []
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
            relative = Path(dirpath).relative_to(self.root).as_posix()
            found.extend(f"{relative}/{name}" for name in filenames if not _is_hidden(name))
        return sorted(found)

    def children(self, folder: str) -> list[str]:
        path = self._path(folder)
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir() if p.is_dir() and not _is_hidden(p.name))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def describe(self, key: str = "") -> str:
        return str(self._path(key)) if key else str(self.root)


class S3Storage:
    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        if not BUCKET_RE.fullmatch(bucket):
            raise ValueError(f"invalid bucket name {bucket!r}")
        self.client, self.bucket, self.prefix = client, bucket, "/".join(_check_parts(prefix.strip("/"), "S3 prefix"))

    def _key(self, key: str) -> str:
        parts = _check_parts(key, "storage key")
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
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as error:
            if is_not_found(error):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _list(self, folder: str, **options: str) -> list[dict[str, Any]]:
        prefix = self._key(folder).rstrip("/") + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, **options)
        return list(pages)

    def keys(self, folder: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        found = [obj["Key"][strip:] for page in self._list(folder) for obj in page.get("Contents", [])]
        return sorted(k for k in found if not any(_is_hidden(part) for part in k.split("/")))

    def children(self, folder: str) -> list[str]:
        prefix = self._key(folder).rstrip("/") + "/"
        names = [
            cp["Prefix"][len(prefix) :].rstrip("/")
            for page in self._list(folder, Delimiter="/")
            for cp in page.get("CommonPrefixes", [])
        ]
        return sorted(n for n in names if not _is_hidden(n))

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


def open_storage(uri: str, s3_client: Callable[[], Any]) -> ObjectStorage:
    """A folder path, or `s3://bucket/prefix` through the given client factory (dagster-aws in Dagster)."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        return S3Storage(s3_client(), bucket, prefix)
    return LocalStorage(uri)


def s3_client_from_env() -> Any:
    """A boto3 S3 client for command-line tools: endpoint from DP_S3_ENDPOINT_URL, credentials from boto3's chain."""
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", endpoint_url=os.environ.get("DP_S3_ENDPOINT_URL") or None, region_name=region)
