"""Drift of one landing micro-batch, on demand: its features against the champion's training window."""

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from dataplatform.defs.common.conventions import OWNERS, WRITER_POOL
from dataplatform.defs.common.keys import BATCH_DRIFT, CHAMPION, LANDING_EVENTS
from dataplatform.defs.monitoring.assets import DRIFT_FEATURES, drift_scores
from dataplatform.defs.resources import LakehouseResource, ModelRegistryResource
from dataplatform.lib import drift, features, featurestore, lakeread, tables, warehouse
from dataplatform.lib.lake import Lake
from dataplatform.lib.monitoring import champion_thresholds
from dataplatform.lib.quality import drift_table, markdown_table


class BatchDriftConfig(dg.Config):
    batch_id: str = Field(
        default="", description="A landing batch id (metadata of ingestion/landing_events); empty: the newest one"
    )


@dg.asset(
    key=BATCH_DRIFT,
    deps=[LANDING_EVENTS, CHAMPION],
    group_name="monitoring",
    description=(
        "On demand: the features of one landing micro-batch (the newest, or the `batch_id` given in the "
        "launchpad) against the champion's training window, with thresholds learned at the batch's own size, "
        "so a suspicious batch can be judged before the nightly drift report. Features use the lake's history "
        "before each event, exactly as training examples do. Rows go to `distribution_drift` "
        "(dataset `batch:<batch id>`)."
    ),
    kinds={"scipy", "duckdb"},
    owners=OWNERS,
    pool=WRITER_POOL,
)
def batch_drift(
    context: dg.AssetExecutionContext,
    config: BatchDriftConfig,
    lakehouse: LakehouseResource,
    models: ModelRegistryResource,
) -> dg.MaterializeResult:
    lake = lakehouse.lake()
    batch_id = config.batch_id or _latest_stream_batch(lakehouse)
    if not batch_id:  # nothing streamed yet: nothing to judge (a full `./dp materialize` runs this too)
        return dg.MaterializeResult(metadata={"status": "no landing batch ingested yet"})
    batch = lake.read(lake.batch_event_keys(batch_id))
    if batch.height == 0:
        message = f"batch {batch_id!r} has no events in the lake ({lake.describe()})"
        if config.batch_id:  # asked for by name: say so loudly
            raise dg.Failure(message)
        return dg.MaterializeResult(metadata={"status": message, "batch_id": batch_id})  # e.g. written before manifests
    champion = models.registry().champion()
    reference = featurestore.read_training_set(lake, champion.data_fingerprint, "train") if champion else None
    if champion is None or reference is None:
        return dg.MaterializeResult(metadata={"status": "no champion model yet", "batch_id": batch_id})
    days = sorted(batch["timestamp"].dt.date().unique().to_list())
    examples = _batch_examples(lake, batch, days)
    if examples.height == 0:
        return dg.MaterializeResult(metadata={"status": "the batch has no product views", "batch_id": batch_id})
    table, results, thresholds = _judge_batch(lakehouse, champion.version, reference, examples, batch_id, days[-1])
    drifted = table.filter(pl.col("drifted"))["column_name"].to_list()
    context.log.info(f"batch {batch_id}: {examples.height} examples, drifted: {', '.join(drifted) or 'none'}")
    return dg.MaterializeResult(
        metadata=_batch_metadata(batch_id, examples.height, table, results, champion.version, thresholds.version)
    )


def _judge_batch(
    lakehouse: LakehouseResource,
    champion: str,
    reference: pl.DataFrame,
    examples: pl.DataFrame,
    batch_id: str,
    day: dt.date,
) -> tuple[pl.DataFrame, list[drift.ColumnDrift], drift.Thresholds]:
    """Compare the batch's examples with the champion's training set at the batch's size; record the rows."""
    columns = list(DRIFT_FEATURES)
    with lakehouse.connect() as con:
        thresholds = champion_thresholds(con, champion, reference, examples.height, DRIFT_FEATURES)
        results = drift.compare(reference.select(columns), examples.select(columns), thresholds=thresholds)
        table = drift_table(results, event_date=day, dataset=f"batch:{batch_id}", thresholds_version=thresholds.version)
        warehouse.replace_rows(con, tables.DISTRIBUTION_DRIFT, table)
    return table, results, thresholds


def _batch_metadata(
    batch_id: str,
    examples: int,
    table: pl.DataFrame,
    results: list[drift.ColumnDrift],
    champion: str,
    thresholds_version: str,
) -> dict[str, Any]:
    drifted = table.filter(pl.col("drifted"))["column_name"].to_list()
    return {
        "batch_id": batch_id,
        "examples": examples,
        "decision": "drift" if drifted else "stable",
        "features_drifted": len(drifted),
        "drifted_features": dg.MetadataValue.json(drifted),
        "scores": dg.MetadataValue.json(drift_scores(results)),
        "champion": champion,
        "thresholds_version": thresholds_version,
        "table": dg.MetadataValue.md(
            markdown_table(table.select("column_name", "effect_size", "threshold", "p_value", "drifted"), limit=40)
        ),
    }


def _latest_stream_batch(lakehouse: LakehouseResource) -> str | None:
    """The last streamed micro-batch with valid rows (None before the first)."""
    with lakehouse.connect(read_only=True) as con:
        batch_id: str | None = warehouse.scalar(
            con,
            "SELECT batch_id FROM ingest_batches WHERE mode = 'stream' AND rows_valid > 0 ORDER BY committed_at DESC",
        )
    return batch_id


def _batch_examples(lake: Lake, batch: pl.DataFrame, days: list[dt.date]) -> pl.DataFrame:
    """The batch's events (on `days`) as training examples, their features computed over the history they need."""
    history = sorted({day - dt.timedelta(days=i) for day in days for i in range(features.DEFAULT_HISTORY.days + 1)})
    events = lakeread.events_for_days(lake, history)
    return features.build_training_examples(events, days=days).filter(
        pl.col("example_id").is_in(batch["event_id"].implode())
    )
