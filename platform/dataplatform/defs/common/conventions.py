"""What every domain's wiring shares: the settings, the owners, the warehouse writer pool, the daily
partitions and how the events table looks in the UI."""

import dagster as dg

from dataplatform.lib import tables
from dataplatform.lib.contract import REQUIRED_COLUMNS, column_descriptions, event_dtypes
from dataplatform.lib.settings import Settings

SETTINGS = Settings.from_env()
OWNERS = ["team:data-platform"]
# One writer at a time: every step that writes the DuckDB warehouse takes a slot of this pool.
WRITER_POOL = "duckdb_writer"
daily_partitions = dg.DailyPartitionsDefinition(start_date=SETTINGS.history_start, end_offset=1)
EVENTS_TABLE = tables.EVENTS.qualified_name


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
