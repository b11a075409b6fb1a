"""Plain settings from the environment, each with a default that works on a laptop.

Secrets are not settings: credentials reach Dagster resources only through `dg.EnvVar`
(see `dataplatform.defs.resources`). The README's configuration table lists these names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    landing_uri: str  # local folder or s3://bucket/prefix
    history_uri: str  # local folder or s3://bucket/prefix, one `event_date=YYYY-MM-DD/` folder per day
    lake_uri: str  # local folder or s3://bucket/prefix
    warehouse_path: Path
    s3_endpoint_url: str | None
    aws_region: str
    history_start: str
    batch_max_files: int
    batch_max_bytes: int
    piece_bytes: int  # a file larger than this in memory is read in pieces of about this size
    settle_seconds: float
    sensor_interval_seconds: int
    max_listed_files: int
    max_batches_per_tick: int
    max_attempts: int
    max_in_flight: int
    models_uri: str  # local folder or s3://bucket/prefix
    train_days: int
    holdout_days: int
    gate_max_corruption: float
    retrain_cooldown_days: int

    @classmethod
    def from_env(cls) -> Settings:
        if os.environ.get("DP_LAKE_DIR"):  # renamed: a silently ignored old name would start an empty lake
            raise ValueError("DP_LAKE_DIR was renamed DP_LAKE_URI (a folder or s3://bucket/prefix); set that instead")
        data_dir = Path(_env("DP_DATA_DIR", str(REPO_ROOT / "data"))).resolve()
        return cls(
            data_dir=data_dir,
            landing_uri=_env("DP_LANDING_URI", str(data_dir / "landing")),
            history_uri=_env("DP_HISTORY_URI", str(data_dir / "history")),
            lake_uri=_env("DP_LAKE_URI", str(data_dir / "lake")),
            warehouse_path=Path(_env("DP_WAREHOUSE_PATH", str(data_dir / "warehouse" / "warehouse.duckdb"))),
            s3_endpoint_url=os.environ.get("DP_S3_ENDPOINT_URL") or None,
            aws_region=_env("AWS_REGION", "us-east-1"),
            history_start=_env("DP_HISTORY_START", "2026-01-01"),
            batch_max_files=int(_env("DP_BATCH_MAX_FILES", "200")),
            batch_max_bytes=int(_env("DP_BATCH_MAX_BYTES", str(256 * 1024 * 1024))),
            piece_bytes=int(_env("DP_PIECE_BYTES", str(64 * 1024 * 1024))),
            settle_seconds=float(_env("DP_SETTLE_SECONDS", "1")),
            sensor_interval_seconds=int(_env("DP_SENSOR_INTERVAL_SECONDS", "5")),
            max_listed_files=int(_env("DP_MAX_LISTED_FILES", "20000")),
            max_batches_per_tick=int(_env("DP_MAX_BATCHES_PER_TICK", "10")),
            max_attempts=int(_env("DP_MAX_ATTEMPTS", "3")),
            max_in_flight=int(_env("DP_MAX_IN_FLIGHT", "2")),
            models_uri=_env("DP_MODELS_URI", str(data_dir / "models")),
            train_days=int(_env("DP_TRAIN_DAYS", "14")),
            holdout_days=int(_env("DP_HOLDOUT_DAYS", "2")),
            gate_max_corruption=float(_env("DP_GATE_MAX_CORRUPTION", "0.05")),
            retrain_cooldown_days=int(_env("DP_RETRAIN_COOLDOWN_DAYS", "3")),
        )
