"""Small builders of test inputs: events, and landing files written the way producers do."""

import gzip
import io
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
from dagster_aws.s3 import S3Resource

from dataplatform.defs.resources import (
    AlertWebhookResource,
    FileStoreResource,
    LakehouseResource,
    ModelRegistryResource,
)


def event(n: int, **overrides: object) -> dict[str, object]:
    """A valid event; `n` makes it unique."""
    record: dict[str, object] = {
        "event_id": f"e{n}",
        "user_id": f"u{n % 7}",
        "timestamp": f"2026-03-0{1 + n % 3}T10:{n % 60:02d}:00+00:00",
        "event_type": ("view", "cart", "purchase", "remove_from_cart")[n % 4],
        "product_id": 100 + n % 11,
        "category": "electronics.phone",
        "brand": "acme",
        "price": 10.0 + n,
        "session_id": f"s{n % 5}",
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not ...}


def jsonl_bytes(records: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def write_landing(folder: Path, name: str, data: bytes) -> Path:
    """Write like a well-behaved producer: hidden temp name, then rename."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data)


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def local_resources(root: Path) -> dict[str, Any]:
    """The platform's resources on local folders under `root` (landing files settle at once)."""
    s3 = S3Resource(region_name="us-east-1")
    return {
        "landing": FileStoreResource(uri=str(root / "landing"), s3=s3, settle_seconds=0),
        "history": FileStoreResource(uri=str(root / "history"), s3=s3),
        "lakehouse": LakehouseResource(
            s3=S3Resource(), lake_uri=str(root / "lake"), warehouse_path=str(root / "wh.duckdb")
        ),
        "models": ModelRegistryResource(root=str(root / "models"), s3=s3),
        "alerts": AlertWebhookResource(),
    }
