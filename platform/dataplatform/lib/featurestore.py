"""Training examples in the lake: one Parquet file per day, rewritten atomically; training-set snapshots."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandera.polars as pa
import polars as pl

from dataplatform.lib.features import CATEGORICAL_FEATURES, EXAMPLE_SCHEMA, NUMERIC_FEATURES
from dataplatform.lib.lake import Lake

EXAMPLES_DIR = "features/training_examples"
EXAMPLES_FILE = "examples.parquet"
# Lineage of a day's examples: the event days and batches its features and labels read.
INPUTS_DIR = "features/example_inputs"
INPUTS_SCHEMA = {"feature_day": pl.Date, "input_day": pl.Date, "batch_id": pl.String, "events": pl.UInt32}
TRAINING_SETS_DIR = "ml/training_sets"


def examples_key(day: dt.date | str) -> str:
    return f"{EXAMPLES_DIR}/event_date={dt.date.fromisoformat(str(day))}/{EXAMPLES_FILE}"


def write_examples(lake: Lake, day: dt.date | str, examples: pl.DataFrame) -> str:
    """Write the day's examples; returns where they are (a path or an s3:// URI)."""
    key = examples_key(day)
    lake.write_parquet(key, examples)
    return lake.describe(key)


def example_inputs(day: dt.date | str, events: pl.DataFrame) -> pl.DataFrame:
    """What the examples of `day` were built from: events per (event day, batch) of the frame they read."""
    if events.height == 0:
        return pl.DataFrame(schema=INPUTS_SCHEMA)
    return (
        events.group_by(pl.col("event_date").alias("input_day"), "batch_id")
        .len("events")
        .select(pl.lit(dt.date.fromisoformat(str(day))).alias("feature_day"), "input_day", "batch_id", "events")
        .cast(INPUTS_SCHEMA)  # type: ignore[arg-type]
        .sort("input_day", "batch_id")
    )


def write_example_inputs(lake: Lake, day: dt.date | str, inputs: pl.DataFrame) -> None:
    lake.write_parquet(f"{INPUTS_DIR}/event_date={dt.date.fromisoformat(str(day))}/inputs.parquet", inputs)


def read_example_inputs(lake: Lake, days: Sequence[dt.date | str] | None = None) -> pl.DataFrame:
    """The recorded inputs of the given feature days (of every day when `days` is None)."""
    keys = [k for k in lake.storage.keys(INPUTS_DIR) if k.endswith("/inputs.parquet")]
    if days is not None:
        wanted = {f"event_date={dt.date.fromisoformat(str(d))}" for d in days}
        keys = [k for k in keys if k.split("/")[-2] in wanted]
    return lake.read(keys) if keys else pl.DataFrame(schema=INPUTS_SCHEMA)


def read_examples(lake: Lake, days: Sequence[dt.date | str]) -> pl.DataFrame:
    """Examples of the given days that exist (an empty frame when none do)."""
    stored = set(lake.storage.keys(EXAMPLES_DIR))
    return lake.read([k for k in (examples_key(d) for d in days) if k in stored])


def example_days(lake: Lake) -> list[dt.date]:
    keys = lake.storage.keys(EXAMPLES_DIR)
    return sorted(
        dt.date.fromisoformat(k.split("/")[-2].split("=", 1)[1]) for k in keys if k.endswith(f"/{EXAMPLES_FILE}")
    )


def training_set_key(fingerprint: str, part: str) -> str:
    """Snapshot of a training set (`part` = train | holdout), named by its data fingerprint."""
    if not fingerprint.isalnum() or part not in ("train", "holdout"):
        raise ValueError(f"bad training set name {fingerprint!r}, {part!r}")
    return f"{TRAINING_SETS_DIR}/{fingerprint}-{part}.parquet"


def read_training_set(lake: Lake, fingerprint: str, part: str) -> pl.DataFrame | None:
    """A stored training-set snapshot, or None when it is not (or no longer) there."""
    key = training_set_key(fingerprint, part)
    return lake.read([key]) if lake.storage.exists(key) else None


def training_contract() -> pa.DataFrameSchema:
    """The training-example contract: keys present, labels 0/1, numeric features finite or null."""
    columns: dict[str, pa.Column] = {
        "example_id": pa.Column(pl.String, nullable=False, unique=True),
        "user_id": pa.Column(pl.String, nullable=False),
        "product_id": pa.Column(pl.Int64, nullable=False),
        "example_time": pa.Column(EXAMPLE_SCHEMA["example_time"], nullable=False),
        "event_date": pa.Column(pl.Date, nullable=False),
        "label": pa.Column(pl.Int8, nullable=False, checks=pa.Check.isin([0, 1])),
    }
    finite = pa.Check(lambda data: data.lazyframe.select(pl.col(data.key).is_finite()), name="finite")
    for name in NUMERIC_FEATURES:
        columns[name] = pa.Column(EXAMPLE_SCHEMA[name], nullable=True, checks=finite)
    for name in CATEGORICAL_FEATURES:
        columns[name] = pa.Column(EXAMPLE_SCHEMA[name], nullable=True)
    return pa.DataFrameSchema(columns, strict="filter", name="TrainingExample")


def write_training_set(lake: Lake, fingerprint: str, train: pl.DataFrame, holdout: pl.DataFrame) -> None:
    """Keep what a model trained and was judged on, so drift can be measured against it later."""
    lake.write_parquet(training_set_key(fingerprint, "holdout"), holdout)
    lake.write_parquet(training_set_key(fingerprint, "train"), train)
