"""Ingestion assets: streaming micro-batches from the landing zone, daily batches of history.

Both run the same `ingest_batch` (one transform, one writer) and both write the lake's
`events` Parquet and the warehouse's `events`, `quarantine`, `ingest_batches` tables.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from dataplatform.defs.common.conventions import OWNERS, WRITER_POOL, daily_partitions, events_table_metadata
from dataplatform.defs.common.keys import HISTORY_EVENTS, LANDING_EVENTS
from dataplatform.defs.ingestion.metadata import reconcile_check_spec, reconciliation_check, report_metadata
from dataplatform.defs.resources import FileStoreResource, IngestionPolicyResource, LakehouseResource
from dataplatform.lib import warehouse
from dataplatform.lib.batching import group_into_batches
from dataplatform.lib.ingest import IngestReport, batch_id_for, ingest_batch
from dataplatform.lib.landing import LandingFile, LandingStore

KINDS = {"polars", "parquet", "duckdb"}


class LandingBatchConfig(dg.Config):
    """Set by the landing sensor. Left empty, the run takes the files waiting in the landing zone."""

    batch_id: str = Field(default="", description="Stable id of the batch; derived from the files when empty")
    files: list[str] = Field(default_factory=list, description="Landing keys of the batch's files")


def _ingest(
    context: dg.AssetExecutionContext,
    store: LandingStore,
    files: Sequence[LandingFile],
    lakehouse: LakehouseResource,
    batch_id: str,
    *,
    mode: str,
    piece_bytes: int,
    partition_key: str | None = None,
) -> tuple[IngestReport, dict[str, Any]]:
    report = ingest_batch(
        store=store,
        files=files,
        lake=lakehouse.lake(),
        warehouse_path=Path(lakehouse.warehouse.database),
        batch_id=batch_id,
        mode=mode,
        partition_key=partition_key,
        run_id=context.run.run_id,
        log=context.log.info,
        piece_bytes=piece_bytes,
    )
    with lakehouse.connect() as con:
        check = warehouse.batch_reconciliation(con, batch_id)
    return report, check


def _waiting_files(
    store: LandingStore, lakehouse: LakehouseResource, ingestion: IngestionPolicyResource
) -> list[LandingFile]:
    ledger = lakehouse.lake().ledger
    listed = [f for f in store.list_files(ingestion.max_listed_files) if not ledger.has_file(f)]
    batches = group_into_batches(listed, ingestion.batch_max_files, ingestion.batch_max_bytes)
    return batches[0] if batches else []


def events_ingestion_asset(
    key: dg.AssetKey, *, description: str, mode: str, kinds: set[str], **options: Any
) -> Callable[[Callable[..., dg.MaterializeResult]], dg.AssetsDefinition]:
    """The decorator of an asset that ingests files into the events table, in `mode` (streaming or batch):
    it takes the writer pool and carries the table's schema and the blocking reconciliation check."""
    return dg.asset(
        key=key,
        group_name="ingestion",
        description=description,
        kinds=kinds,
        owners=OWNERS,
        tags={"mode": mode},
        pool=WRITER_POOL,
        metadata=events_table_metadata(),
        check_specs=[reconcile_check_spec(key)],
        **options,
    )


@events_ingestion_asset(
    LANDING_EVENTS,
    description=(
        "Streaming ingestion. Each materialization is one micro-batch of files from the landing zone, "
        "requested by the `landing_files_sensor`: records are validated against the event contract, valid "
        "events land in date-partitioned Parquet (`lake/events/event_date=...`) and are merged into the "
        "warehouse table `events` by `event_id`; invalid records go to `quarantine` with their reasons."
    ),
    mode="streaming",
    kinds=KINDS,
)
def landing_events(
    context: dg.AssetExecutionContext,
    config: LandingBatchConfig,
    landing: FileStoreResource,
    lakehouse: LakehouseResource,
    ingestion: IngestionPolicyResource,
) -> dg.MaterializeResult:
    store = landing.store()
    if config.files:
        found = [store.stat(key) for key in config.files]
        files = [f for f in found if f is not None]
        vanished = sorted(set(config.files) - {f.key for f in files})
        if vanished:
            context.log.warning(f"{len(vanished)} files vanished before ingestion: {vanished[:10]}")
    else:
        files = _waiting_files(store, lakehouse, ingestion)
    batch_id = config.batch_id or batch_id_for("stream", files)
    report, check = _ingest(
        context, store, files, lakehouse, batch_id, mode="stream", piece_bytes=ingestion.piece_bytes
    )
    return dg.MaterializeResult(
        metadata={**report_metadata([report]), "landing_uri": store.uri},
        check_results=[reconciliation_check(LANDING_EVENTS, [check])],
    )


@events_ingestion_asset(
    HISTORY_EVENTS,
    description=(
        "Batch ingestion of historical dumps, one daily partition per folder `event_date=YYYY-MM-DD/` under "
        "the history location (local folder or S3). Same contract, transform and writers as streaming; a "
        "backfill over a date range runs as a single run."
    ),
    mode="batch",
    kinds=KINDS | {"s3"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def history_events(
    context: dg.AssetExecutionContext,
    history: FileStoreResource,
    lakehouse: LakehouseResource,
    ingestion: IngestionPolicyResource,
) -> dg.MaterializeResult:
    reports: list[IngestReport] = []
    checks: list[dict[str, Any]] = []
    for day in context.partition_keys:
        store = history.store(f"event_date={day}")
        files = store.list_files(ingestion.max_listed_files)
        batch_id = batch_id_for(f"history-{day}", files)
        report, check = _ingest(
            context, store, files, lakehouse, batch_id, mode="history", piece_bytes=ingestion.piece_bytes,
            partition_key=day,
        )  # fmt: skip
        reports.append(report)
        checks.append(check)
    return dg.MaterializeResult(
        metadata={**report_metadata(reports), "history_uri": history.uri},
        check_results=[reconciliation_check(HISTORY_EVENTS, checks)],
    )
