"""Resources shared by every domain: where files arrive, the warehouse (DuckDB) and the lakehouse (lake +
warehouse)."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource
from pydantic import Field

from dataplatform.lib import warehouse
from dataplatform.lib.alerts import Alert, deliver
from dataplatform.lib.batching import BatchLimits
from dataplatform.lib.lake import Lake
from dataplatform.lib.landing import LandingStore, open_store
from dataplatform.lib.registry import ModelRegistry
from dataplatform.lib.settings import Settings
from dataplatform.lib.storage import open_storage


class FileStoreResource(dg.ConfigurableResource):
    """A folder of files: a local path, or `s3://bucket/prefix` read through dagster-aws."""

    uri: str
    s3: S3Resource
    settle_seconds: float = Field(
        default=1.0, description="A file younger than this may still be written to; it waits for the next tick"
    )

    def store(self, subfolder: str | None = None) -> LandingStore:
        uri = self.uri.rstrip("/") + (f"/{subfolder}" if subfolder else "")
        return open_store(uri, self.s3.get_client)


class IngestionPolicyResource(dg.ConfigurableResource):
    """How landing files become micro-batches, and when a file is read in pieces (DP_* settings; the UI's
    list of resources shows the values in force)."""

    max_listed_files: int = Field(description="Files one listing of the landing zone or history returns at most")
    batch_max_files: int = Field(description="Files in one micro-batch at most")
    batch_max_bytes: int = Field(description="Estimated in-memory bytes of one micro-batch at most")
    max_batches_per_tick: int = Field(description="Runs one sensor tick requests at most")
    max_attempts: int = Field(description="Attempts of a failed batch before it is left to an operator")
    max_in_flight: int = Field(description="Micro-batch runs queued or running at once")
    piece_bytes: int = Field(description="A file larger than this in memory is read and committed in pieces")

    def batch_limits(self, settle_seconds: float) -> BatchLimits:
        return BatchLimits(
            max_files=self.batch_max_files,
            max_bytes=self.batch_max_bytes,
            max_batches_per_tick=self.max_batches_per_tick,
            settle_seconds=settle_seconds,
            max_attempts=self.max_attempts,
            max_in_flight=self.max_in_flight,
        )


class RetrainingPolicyResource(dg.ConfigurableResource):
    """When the drift retraining sensor may retrain again (DP_RETRAIN_COOLDOWN_DAYS)."""

    cooldown_days: int = Field(description="Days of data between drift-triggered retrains")


def ingestion_policy(settings: Settings) -> IngestionPolicyResource:
    """The resource's fields carry the settings' names."""
    return IngestionPolicyResource(**{name: getattr(settings, name) for name in IngestionPolicyResource.model_fields})


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse file as dagster-duckdb's `DuckDBResource`: an asset of the platform's or of a
    user's that takes `warehouse: DuckDBResource` gets it. It differs from the base class in three ways.
    While another process holds the file's single writer lock, `get_connection()` retries at least every
    2 s for up to `lock_wait_seconds`; the base class doubles its pause ten times (the last one 51 s), so
    it can sleep long after a micro-batch has let go. A writing connection creates any declared table
    (lib/tables.py) that is missing, and every connection reads and writes times in UTC. Besides,
    `get_connection(read_only=True)` opens the file read-only. `connection_config` passes DuckDB settings
    (`memory_limit`, `threads`) as in the base class."""

    lock_wait_seconds: float = Field(
        default=warehouse.LOCK_WAIT_SECONDS, description="How long a connection waits for the writer lock"
    )

    @contextmanager
    def get_connection(self, *, read_only: bool = False) -> Iterator[Any]:
        with warehouse.connect(
            Path(self.database),
            read_only=read_only,
            wait_seconds=self.lock_wait_seconds,
            config=self.connection_config,
        ) as con:
            yield con


class LakehouseResource(dg.ConfigurableResource):
    """The lake (Parquet, quarantine, ledger: a folder or `s3://bucket/prefix`) and the warehouse."""

    lake_uri: str
    warehouse: WarehouseResource
    s3: S3Resource

    def lake(self) -> Lake:
        return Lake.open(self.lake_uri, self.s3.get_client)

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[Any]:
        with self.warehouse.get_connection(read_only=read_only) as con:
            yield con


class ModelRegistryResource(dg.ConfigurableResource):
    """The model registry: a local folder or `s3://bucket/prefix` (artifacts verified by sha256 before loading)."""

    root: str
    s3: S3Resource

    def registry(self) -> ModelRegistry:
        return ModelRegistry(open_storage(self.root, self.s3.get_client))


class AlertWebhookResource(dg.ConfigurableResource):
    """Where alerts go besides the log: a webhook URL (a secret: it may carry a token)."""

    url: str | None = Field(default=None, description="Webhook URL, from the environment (DP_ALERT_WEBHOOK_URL)")
    timeout_seconds: float = 5.0

    def send(self, alert: Alert, log: Any = None) -> bool:
        return deliver(alert, self.url, timeout_seconds=self.timeout_seconds, **({"log": log} if log else {}))


def _env_secret(name: str) -> dg.EnvVar | None:
    """An EnvVar for a secret that is set; None when it is not (the feature is then off)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def s3_resource(settings: Settings) -> S3Resource:
    """S3 through dagster-aws; keys come from the environment only, via EnvVar."""
    secrets: dict[str, Any] = {
        field: _env_secret(name)
        for field, name in (
            ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
            ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
            ("aws_session_token", "AWS_SESSION_TOKEN"),
        )
        if os.environ.get(name)
    }
    return S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region, **secrets)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    s3 = s3_resource(settings)
    warehouse_db = WarehouseResource(database=str(settings.warehouse_path))
    return {
        "landing": FileStoreResource(uri=settings.landing_uri, s3=s3, settle_seconds=settings.settle_seconds),
        "history": FileStoreResource(uri=settings.history_uri, s3=s3),
        "ingestion": ingestion_policy(settings),
        "retraining": RetrainingPolicyResource(cooldown_days=settings.retrain_cooldown_days),
        "warehouse": warehouse_db,
        "lakehouse": LakehouseResource(lake_uri=settings.lake_uri, warehouse=warehouse_db, s3=s3),
        "alerts": AlertWebhookResource(url=_env_secret("DP_ALERT_WEBHOOK_URL")),
        "models": ModelRegistryResource(root=settings.models_uri, s3=s3),
    }


@dg.definitions
def resources() -> dg.Definitions:
    # Read when the definitions are built, so that definitions built again see the environment as it is then.
    return dg.Definitions(resources=build_resources(Settings.from_env()))
