"""Training examples in the lake: one Parquet file per day, rewritten atomically."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pandera.polars as pa
import polars as pl

from dataplatform.lib.features import CATEGORICAL_FEATURES, EXAMPLE_SCHEMA, NUMERIC_FEATURES
from dataplatform.lib.lake import Lake, write_parquet_atomically

EXAMPLES_DIR = Path("features") / "training_examples"
TRAINING_SETS_DIR = Path("ml") / "training_sets"


def examples_path(lake: Lake, day: dt.date | str) -> Path:
    return lake.root / EXAMPLES_DIR / f"event_date={day}" / "examples.parquet"


def write_examples(lake: Lake, day: dt.date | str, examples: pl.DataFrame) -> Path:
    path = examples_path(lake, day)
    write_parquet_atomically(examples, path)
    return path


def read_examples(lake: Lake, days: Sequence[dt.date | str]) -> pl.DataFrame:
    """Examples of the given days that exist (an empty frame when none do)."""
    paths = [p for p in (examples_path(lake, d) for d in days) if p.exists()]
    return pl.read_parquet(paths) if paths else pl.DataFrame()


def example_days(lake: Lake) -> list[dt.date]:
    root = lake.root / EXAMPLES_DIR
    return sorted(
        dt.date.fromisoformat(p.parent.name.split("=", 1)[1]) for p in root.glob("event_date=*/examples.parquet")
    )


def training_set_path(lake: Lake, fingerprint: str, part: str) -> Path:
    """Snapshot of a training set (`part` = train | holdout), named by its data fingerprint."""
    if not fingerprint.isalnum():
        raise ValueError(f"bad fingerprint {fingerprint!r}")
    return lake.root / TRAINING_SETS_DIR / f"{fingerprint}-{part}.parquet"


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
    write_parquet_atomically(holdout, training_set_path(lake, fingerprint, "holdout"))
    write_parquet_atomically(train, training_set_path(lake, fingerprint, "train"))
