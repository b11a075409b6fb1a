"""What every domain's wiring shares: the settings, the owners, the warehouse writer pool, the daily
partitions and how the events table looks in the UI."""

import dagster as dg

from dataplatform.lib import tables
from dataplatform.lib.contract import REQUIRED_COLUMNS, column_descriptions, event_dtypes
from dataplatform.lib.settings import Settings

# The settings (DP_* variables) Dagster needs when it imports the definitions: the partitions' start, the
# sensor interval and the training config's defaults (which the retraining sensor's holdout must agree
# with). Everything else a run or a tick reads comes from the resources, which read the settings when the
# definitions are built (defs/resources.py).
SETTINGS = Settings.from_env()
OWNERS = ["team:data-platform"]
# One writer at a time: every step that writes the DuckDB warehouse takes a slot of this pool.
WRITER_POOL = "duckdb_writer"
daily_partitions = dg.DailyPartitionsDefinition(start_date=SETTINGS.history_start, end_offset=1)
EVENTS_TABLE = tables.EVENTS.qualified_name


def daily_check(name: str, asset: dg.AssetKey, description: str, *, blocking: bool = False) -> dg.AssetCheckSpec:
    """A check that judges one day of a daily-partitioned asset."""
    return dg.AssetCheckSpec(
        name, asset=asset, description=description, blocking=blocking, partitions_def=daily_partitions
    )


def events_table_metadata() -> dict[str, object]:
    """The definition metadata of an asset that writes the events table: its name and column schema."""
    return {"dagster/column_schema": events_column_schema(), "dagster/table_name": EVENTS_TABLE}


def events_column_schema() -> dg.TableSchema:
    """The UI's column schema, generated from the contract."""
    descriptions = column_descriptions()
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                str(dtype),
                description=descriptions.get(name),
                constraints=dg.TableColumnConstraints(nullable=name not in (*REQUIRED_COLUMNS, "event_id")),
            )
            for name, dtype in event_dtypes().items()
        ]
    )
