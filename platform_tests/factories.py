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
    WarehouseResource,
    build_resources,
)
from dataplatform.lib import warehouse
from dataplatform.lib.ingest import DEFAULT_PIECE_BYTES, IngestReport, batch_id_for, ingest_batch
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LocalLanding
from dataplatform.lib.settings import Settings


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
    warehouse_db = WarehouseResource(database=str(root / "wh.duckdb"))
    built = build_resources(Settings.from_env())
    return {
        "landing": FileStoreResource(uri=str(root / "landing"), s3=s3, settle_seconds=0),
        "history": FileStoreResource(uri=str(root / "history"), s3=s3),
        # The settings' resources as the code location builds them.
        **{key: built[key] for key in ("ingestion", "retraining")},
        "warehouse": warehouse_db,
        "lakehouse": LakehouseResource(s3=s3, lake_uri=str(root / "lake"), warehouse=warehouse_db),
        "models": ModelRegistryResource(root=str(root / "models"), s3=s3),
        "alerts": AlertWebhookResource(),
    }


def ingest_landing(
    landing: Path,
    lake: Lake,
    warehouse_path: Path,
    *,
    prefix: str = "stream",
    piece_bytes: int = DEFAULT_PIECE_BYTES,
    store: LocalLanding | None = None,
) -> IngestReport:
    """Every file waiting in a landing folder, as one batch."""
    store = store or LocalLanding(landing)
    files = store.list_files(1000)
    return ingest_batch(
        store=store, files=files, lake=lake, warehouse_path=warehouse_path,
        batch_id=batch_id_for(prefix, files), mode="stream", piece_bytes=piece_bytes,
    )  # fmt: skip


def warehouse_snapshot(warehouse_path: Path) -> dict[str, pl.DataFrame]:
    """What the warehouse holds, as comparable frames (load times left out)."""
    with warehouse.connect(warehouse_path, read_only=True) as con:
        return {
            "events": con.sql("SELECT * EXCLUDE (ingested_at) FROM events ORDER BY event_id").pl(),
            "quarantine": con.sql(
                "SELECT * EXCLUDE (quarantined_at) FROM quarantine ORDER BY source_file, source_row"
            ).pl(),
            "batches": con.sql("SELECT rows_in, rows_valid, rows_quarantined, rows_duplicate FROM ingest_batches").pl(),
            "files": con.sql("SELECT source_file, status, content_sha256 FROM ingested_files ORDER BY ALL").pl(),
        }
