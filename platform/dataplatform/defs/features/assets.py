"""Feature assets: point-in-time training examples per day, their distributions, and snapshots."""

import datetime as dt

import dagster as dg
import polars as pl

from dataplatform.defs.common.conventions import OWNERS, WRITER_POOL, daily_check, daily_partitions
from dataplatform.defs.common.keys import FEATURE_DISTRIBUTIONS, TRAINING_EXAMPLES, WAREHOUSE_EVENTS
from dataplatform.defs.resources import LakehouseResource
from dataplatform.lib import features, featurestore, lakeread, tables, warehouse
from dataplatform.lib.quality import ContractReport, check_contract, markdown_table

HISTORY_DAYS = features.DEFAULT_HISTORY.days
HORIZON = features.DEFAULT_HORIZON


def _schema() -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in features.EXAMPLE_SCHEMA.items()])


@dg.asset(
    key=TRAINING_EXAMPLES,
    deps=[WAREHOUSE_EVENTS],
    partitions_def=daily_partitions,
    group_name="features",
    description=(
        "One example per product view of the day: will this user buy this product within "
        f"{HORIZON.days} day(s)? Features (user activity over 1h/1d/7d/28d, user x product and user x category "
        "history, product popularity, conversion and price, session position, time of day) use only events "
        "strictly before the view: point-in-time correct. A day's labels are mature once events up to the "
        "day's end plus the horizon are in; metadata says which. Stored as lake Parquet."
    ),
    kinds={"duckdb", "polars", "parquet"},
    owners=OWNERS,
    metadata={"dagster/column_schema": _schema()},
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        daily_check(
            "examples_conform",
            TRAINING_EXAMPLES,
            "Examples follow the training contract (unique ids, 0/1 labels, finite features). Blocking.",
            blocking=True,
        )
    ],
)
def training_examples(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key)
    lake = lakehouse.lake()
    days = [day - dt.timedelta(days=i) for i in range(HISTORY_DAYS, -HORIZON.days - 1, -1)]
    events = lakeread.events_for_days(lake, days)
    examples = (
        features.build_training_examples(events, days=[day])
        if events.height
        else pl.DataFrame(schema=features.EXAMPLE_SCHEMA)
    )
    latest = events["timestamp"].max() if events.height else None
    mature = bool(latest and features.labelled_days(latest, [day]))
    location = featurestore.write_examples(lake, day, examples)
    inputs = featurestore.example_inputs(day, events)
    featurestore.write_example_inputs(lake, day, inputs)
    report = check_contract(examples, model=featurestore.training_contract(), id_column="example_id")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": examples.height,
            "label_rate": dg.MetadataValue.float(float(examples["label"].mean() or 0.0) if examples.height else 0.0),
            "labels_mature": mature,
            "latest_event_seen": str(latest),
            "path": location,
            "input_batches": inputs["batch_id"].n_unique(),
        },
        check_results=[_examples_conform(report)],
    )


def _examples_conform(report: ContractReport) -> dg.AssetCheckResult:
    metadata = {"failing_rows": report.failing_rows, "failures": dg.MetadataValue.md(markdown_table(report.reasons))}
    return dg.AssetCheckResult(check_name="examples_conform", passed=report.passed, metadata=metadata)


@dg.asset(
    key=FEATURE_DISTRIBUTIONS,
    deps=[TRAINING_EXAMPLES],
    partitions_def=daily_partitions,
    group_name="features",
    description=(
        "Per-feature summaries of the day's examples (quantiles, mean, null share, top categories) in the "
        "warehouse table `feature_summaries`, so monitoring reads cached summaries instead of rescanning history."
    ),
    kinds={"polars", "duckdb"},
    owners=OWNERS,
    pool=WRITER_POOL,
    automation_condition=dg.AutomationCondition.eager(),
)
def feature_distributions(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key)
    examples = featurestore.read_examples(lakehouse.lake(), [day])
    if examples.height == 0:
        return dg.MaterializeResult(metadata={"features": 0, "rows": 0})
    summaries = features.feature_summaries(examples, day=day)
    with lakehouse.connect() as con:
        warehouse.replace_rows(con, tables.FEATURE_SUMMARIES, summaries)
    numeric = summaries.filter(pl.col("kind") == "numeric")
    return dg.MaterializeResult(
        metadata={
            "features": summaries.height,
            "rows": examples.height,
            **{f"null_share_{r['feature']}": float(r["null_share"] or 0.0) for r in summaries.iter_rows(named=True)},
            "summary": dg.MetadataValue.md(
                markdown_table(numeric.select("feature", "null_share", "mean", "p50", "p95"), limit=40)
            ),
        }
    )
