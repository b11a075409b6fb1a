"""Every warehouse table, declared once: its name, columns (Polars dtypes), key and the modules that write it.

The DDL that `warehouse.connect` runs, the frames written into a table, the keys an upsert replaces by
and the table names the UI shows are all read from here, so a table changes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from dataplatform.lib.contract import REQUIRED_COLUMNS, event_dtypes
from dataplatform.lib.features import SUMMARY_SCHEMA

DATABASE = "warehouse"  # the DuckDB file's catalog name, as the UI shows a table: warehouse.main.<table>

_TEXT, _INT, _BIGINT, _DOUBLE = pl.String(), pl.Int32(), pl.Int64(), pl.Float64()
_DATE, _TIME, _BOOL = pl.Date(), pl.Datetime("us", "UTC"), pl.Boolean()
_TEXTS, _DATES = pl.List(pl.String()), pl.List(pl.Date())


@dataclass(frozen=True)
class Table:
    """A warehouse table. `key` identifies a row (upserts replace by it); it is a primary key unless
    `key_enforced` is off. `added` are columns later releases added (nullable, last): warehouses made
    before them get them by ALTER TABLE."""

    name: str
    columns: pl.Schema
    writers: tuple[str, ...]  # the modules that write it
    key: tuple[str, ...] = ()
    required: tuple[str, ...] = ()  # NOT NULL
    key_enforced: bool = True
    added: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = {*self.key, *self.required, *self.added} - set(self.columns)
        if unknown:
            raise ValueError(f"table {self.name} names columns it does not have: {sorted(unknown)}")
        if self.added and tuple(self.columns)[-len(self.added) :] != self.added:
            raise ValueError(f"table {self.name}: added columns must be its last ones (a migration appends them)")

    @property
    def qualified_name(self) -> str:
        return f"{DATABASE}.main.{self.name}"

    def ddl(self) -> str:
        first = [name for name in self.columns if name not in self.added]
        lines = [
            f'"{name}" {duckdb_type(self.columns[name])}' + (" NOT NULL" if name in self.required else "")
            for name in first
        ]
        if self.key and self.key_enforced:
            lines.append("PRIMARY KEY (" + ", ".join(f'"{c}"' for c in self.key) + ")")
        statements = [f"CREATE TABLE IF NOT EXISTS {self.name} (" + ", ".join(lines) + ");"]
        statements += [
            f'ALTER TABLE {self.name} ADD COLUMN IF NOT EXISTS "{name}" {duckdb_type(self.columns[name])};'
            for name in self.added
        ]
        return "\n".join(statements)


def duckdb_type(dtype: pl.DataType) -> str:
    """The DuckDB type a Polars frame of `dtype` is written to."""
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        return duckdb_type(inner if isinstance(inner, pl.DataType) else inner()) + "[]"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMP WITH TIME ZONE" if dtype.time_zone else "TIMESTAMP"
    names = {pl.String: "VARCHAR", pl.Int32: "INTEGER", pl.Int64: "BIGINT", pl.Float64: "DOUBLE"}
    names |= {pl.Date: "DATE", pl.Boolean: "BOOLEAN"}
    return names[type(dtype)]


def _schema(**columns: pl.DataType) -> pl.Schema:
    return pl.Schema(columns)


_LINEAGE = _schema(source_file=_TEXT, source_row=_BIGINT, event_date=_DATE, batch_id=_TEXT, ingested_at=_TIME)

# Ingestion (lib/warehouse.BatchTransaction). Events are merged by event_id; no primary key index, whose
# upkeep would grow with the table at every merge.
EVENTS = Table(
    "events",
    pl.Schema({**event_dtypes(), **_LINEAGE}),
    ("dataplatform.lib.warehouse", "dataplatform.lib.retraction"),
    key=("event_id",),
    key_enforced=False,
    required=("event_id", *REQUIRED_COLUMNS, *_LINEAGE),
)
QUARANTINE = Table(
    "quarantine",
    _schema(
        batch_id=_TEXT, source_file=_TEXT, source_row=_BIGINT, reasons=_TEXTS, raw_record=_TEXT,
        event_date=_DATE,  # the day it counts on: its partition (history) or arrival day (stream)
        quarantined_at=_TIME,
        claimed_date=_DATE,  # the day of its own timestamp, when that parsed
        detail=_TEXT,  # JSON context of a reason (the record an event_id:conflict lost to)
    ),
    ("dataplatform.lib.warehouse", "dataplatform.lib.retraction"),
    required=("batch_id", "source_file", "reasons", "quarantined_at"),
    added=("claimed_date", "detail"),
)  # fmt: skip
INGEST_BATCHES = Table(
    "ingest_batches",
    _schema(
        batch_id=_TEXT, mode=_TEXT, partition_key=_TEXT, run_id=_TEXT, files=_TEXTS, files_redelivered=_TEXTS,
        files_rejected=_INT, rows_in=_BIGINT, rows_valid=_BIGINT, rows_quarantined=_BIGINT,
        rows_duplicate=_BIGINT, rows_duplicate_in_batch=_BIGINT, rows_duplicate_existing=_BIGINT,
        started_at=_TIME, committed_at=_TIME, read_seconds=_DOUBLE, transform_seconds=_DOUBLE,
        write_seconds=_DOUBLE,
    ),
    ("dataplatform.lib.warehouse",),
    key=("batch_id",),
    required=(
        "mode", "files", "files_redelivered", "files_rejected", "rows_in", "rows_valid", "rows_quarantined",
        "rows_duplicate", "rows_duplicate_in_batch", "rows_duplicate_existing", "started_at", "committed_at",
    ),
)  # fmt: skip
# Batches committing piece by piece (large files) until their audit row is in; see BatchTransaction.
OPEN_BATCHES = Table(
    "open_batches", _schema(batch_id=_TEXT, opened_at=_TIME), ("dataplatform.lib.warehouse",),
    key=("batch_id",), required=("opened_at",),
)  # fmt: skip
INGESTED_FILES = Table(
    "ingested_files",
    _schema(
        source_file=_TEXT, identity=_TEXT, content_sha256=_TEXT, size_bytes=_BIGINT, batch_id=_TEXT,
        status=_TEXT,  # ingested | redelivered | rejected
        recorded_at=_TIME,
        landed_at=_TIME,  # when the file landed (its modification time), for plausibility of arrival
    ),
    ("dataplatform.lib.warehouse",),
    required=("source_file", "identity", "content_sha256", "size_bytes", "batch_id", "status", "recorded_at"),
    added=("landed_at",),
)  # fmt: skip

# Certification of a day (defs/quality).
DAILY_EVENT_PROFILE = Table(
    "daily_event_profile",
    _schema(
        event_date=_DATE, events=_BIGINT, quarantined=_BIGINT, quarantine_rate=_DOUBLE, users=_BIGINT,
        events_view=_BIGINT, events_cart=_BIGINT, events_remove_from_cart=_BIGINT, events_purchase=_BIGINT,
        profiled_at=_TIME,
    ),
    ("dataplatform.defs.quality.assets",),
    key=("event_date",),
    required=(
        "events", "quarantined", "quarantine_rate", "users", "events_view", "events_cart",
        "events_remove_from_cart", "events_purchase", "profiled_at",
    ),
)  # fmt: skip
DISTRIBUTION_DRIFT = Table(
    "distribution_drift",
    _schema(
        event_date=_DATE, dataset=_TEXT, column_name=_TEXT, method=_TEXT, statistic=_DOUBLE, p_value=_DOUBLE,
        effect_metric=_TEXT, effect_size=_DOUBLE, threshold=_DOUBLE, drifted=_BOOL, null_share_shift=_DOUBLE,
        unseen_categories=_DOUBLE, n_reference=_BIGINT, n_current=_BIGINT, reason=_TEXT,
        thresholds_version=_TEXT, computed_at=_TIME,
    ),
    ("dataplatform.defs.quality.assets", "dataplatform.defs.monitoring.assets",
     "dataplatform.defs.monitoring.batch_drift"),
    key=("event_date", "dataset", "column_name"),
    key_enforced=False,
    required=("event_date", "dataset", "column_name", "drifted", "computed_at"),
)  # fmt: skip
# Records that passed the contract but not the plausibility rules (lib/plausibility.py), kept beside
# `events` (which stays the contract's record) and replaced whole when a day is judged again.
SUSPECT_EVENTS = Table(
    "suspect_events",
    _schema(
        event_id=_TEXT, event_date=_DATE, reasons=_TEXTS, batch_id=_TEXT, source_file=_TEXT,
        bands_version=_TEXT, judged_at=_TIME,
    ),
    ("dataplatform.defs.quality.plausibility",),
    key=("event_id",),
    key_enforced=False,
    required=("event_id", "event_date", "reasons", "bands_version", "judged_at"),
)  # fmt: skip
DAILY_PLAUSIBILITY = Table(
    "daily_plausibility",
    _schema(
        event_date=_DATE, events=_BIGINT, suspect=_BIGINT, suspect_share=_DOUBLE, bands_version=_TEXT,
        judged_at=_TIME,
    ),
    ("dataplatform.defs.quality.plausibility",),
    key=("event_date",),
    required=("events", "suspect", "suspect_share", "bands_version", "judged_at"),
)  # fmt: skip
# Each finished day's volumes against their weekday-adjusted bands (warehouse/events' volume_in_band);
# an abrupt, transient volume anomaly makes a day suspect (lib/suspects.py).
DAILY_VOLUME = Table(
    "daily_volume",
    _schema(
        event_date=_DATE, measure=_TEXT, value=_DOUBLE, low=_DOUBLE, high=_DOUBLE, weekday_factor=_DOUBLE,
        status=_TEXT, score=_DOUBLE, judged_at=_TIME,
    ),
    ("dataplatform.defs.quality.assets",),
    key=("event_date", "measure"),
    required=("value", "weekday_factor", "status", "judged_at"),
)  # fmt: skip
# Suspect days an operator accepted (lib/suspects.py): who, when and why.
ACCEPTED_DAYS = Table(
    "accepted_days",
    _schema(event_date=_DATE, accepted_by=_TEXT, accepted_at=_TIME, note=_TEXT),
    ("dataplatform.lib.suspects",),
    key=("event_date",),
    required=("accepted_by", "accepted_at", "note"),
)

# Lineage (lib/blast_radius.py reads it): what each day's certification, each training set and each
# retraction was made of. A model version's training set is its card's data fingerprint (the registry).
DAY_CERTIFICATIONS = Table(
    "day_certifications",
    _schema(event_date=_DATE, batches=_TEXTS, events=_BIGINT, passed=_BOOL, certified_at=_TIME),
    ("dataplatform.defs.quality.assets",),
    key=("event_date",),
    required=("batches", "events", "passed", "certified_at"),
)
TRAINING_SETS = Table(
    "training_sets",
    _schema(
        fingerprint=_TEXT,  # content hash of the training examples
        train_days=_DATES, holdout_days=_DATES,
        batches=_TEXTS,  # event batches the examples' features and labels read (lookbacks included)
        rows=_BIGINT, holdout_rows=_BIGINT, run_id=_TEXT, built_at=_TIME,
    ),
    ("dataplatform.defs.ml.assets",),
    key=("fingerprint",),
    required=("train_days", "holdout_days", "batches", "rows", "holdout_rows", "built_at"),
)  # fmt: skip
# Retractions (lib/retraction.py): the audit row, and the exact rows taken out of `events` (kept so that
# a revert restores them; the quarantine holds each as a record with reason `record:retracted`).
RETRACTIONS = Table(
    "retractions",
    _schema(
        retraction_id=_TEXT, selection=_TEXT,
        status=_TEXT,  # active | reverted
        records=_BIGINT, note=_TEXT, retracted_by=_TEXT, retracted_at=_TIME, affected=_TEXT, reverted_by=_TEXT,
        reverted_at=_TIME, revert_note=_TEXT,
    ),
    ("dataplatform.lib.retraction",),
    key=("retraction_id",),
    required=("selection", "status", "records", "note", "retracted_by", "retracted_at"),
)  # fmt: skip
RETRACTED_EVENTS = Table(
    "retracted_events",
    pl.Schema({"retraction_id": _TEXT, **EVENTS.columns}),
    ("dataplatform.lib.retraction",),
    key=("retraction_id", "event_id"),
    key_enforced=False,
)

# Features (defs/features): per-feature summaries of a day's examples, read by drift monitoring.
FEATURE_SUMMARIES = Table(
    "feature_summaries",
    pl.Schema(SUMMARY_SCHEMA),
    ("dataplatform.defs.features.assets",),
    key=("day", "feature"),
    key_enforced=False,
)

# Monitoring (defs/monitoring): the daily drift and performance histories and the thresholds they use.
DRIFT_REPORTS = Table(
    "drift_reports",
    _schema(
        event_date=_DATE, champion=_TEXT, features_drifted=_INT, drifted_features=_TEXT, domain_auc=_DOUBLE,
        domain_threshold=_DOUBLE, multivariate_drift=_BOOL, thresholds_version=_TEXT, thresholds=_TEXT,
        computed_at=_TIME, decision=_TEXT, impact=_DOUBLE, performance_holds=_BOOL, drift_since=_DATE,
    ),
    ("dataplatform.defs.monitoring.assets",),
    key=("event_date",),
    added=("decision", "impact", "performance_holds", "drift_since"),
)  # fmt: skip
# Each champion's learned thresholds, cached: the domain classifier's normal AUC, and the per-feature
# drift thresholds per current-sample size (lib/monitoring.py).
DOMAIN_THRESHOLDS = Table(
    "domain_thresholds",
    _schema(champion=_TEXT, normal_auc=_DOUBLE),
    ("dataplatform.defs.monitoring.assets",),
    key=("champion",),
)
DRIFT_THRESHOLDS = Table(
    "drift_thresholds",
    _schema(champion=_TEXT, size_bucket=_DOUBLE, version=_TEXT, thresholds=_TEXT),
    ("dataplatform.lib.monitoring",),
    key=("champion", "size_bucket"),
)
MODEL_PERFORMANCE = Table(
    "model_performance",
    _schema(
        event_date=_DATE, champion=_TEXT, estimated=_BOOL, n=_BIGINT, positives=_BIGINT, auc=_DOUBLE,
        auc_low=_DOUBLE, auc_high=_DOUBLE, precision=_DOUBLE, recall=_DOUBLE, recall_at_k=_DOUBLE,
        expected_auc=_DOUBLE, band_low=_DOUBLE, status=_TEXT, computed_at=_TIME,
    ),
    ("dataplatform.defs.monitoring.assets",),
    key=("event_date",),
)  # fmt: skip

# Retraining (defs/ml): every challenger's promotion decision and why.
MODEL_DECISIONS = Table(
    "model_decisions",
    _schema(
        decided_at=_TIME, challenger=_TEXT, champion=_TEXT, promoted=_BOOL, reason=_TEXT,
        challenger_metrics=_TEXT, champion_metrics=_TEXT, run_id=_TEXT, trigger=_TEXT, onset=_DATE,
        auc_gain=_DOUBLE, training_seconds=_DOUBLE, training_rows=_BIGINT, comparison=_TEXT,
    ),
    ("dataplatform.defs.ml.assets",),
    key=("challenger",),
    key_enforced=False,
    required=("decided_at", "challenger", "promoted", "reason"),
    added=("trigger", "onset", "auc_gain", "training_seconds", "training_rows", "comparison"),
)  # fmt: skip

TABLES: tuple[Table, ...] = (
    EVENTS, QUARANTINE, INGEST_BATCHES, OPEN_BATCHES, INGESTED_FILES, DAILY_EVENT_PROFILE, DISTRIBUTION_DRIFT,
    SUSPECT_EVENTS, DAILY_PLAUSIBILITY, DAILY_VOLUME, ACCEPTED_DAYS, DAY_CERTIFICATIONS, TRAINING_SETS,
    RETRACTIONS, RETRACTED_EVENTS, FEATURE_SUMMARIES, DRIFT_REPORTS, DOMAIN_THRESHOLDS, DRIFT_THRESHOLDS,
    MODEL_PERFORMANCE, MODEL_DECISIONS,
)  # fmt: skip

VIEWS_SQL = """
CREATE OR REPLACE VIEW suspect_reasons AS
    WITH exploded AS (SELECT event_date, unnest(reasons) AS reason FROM suspect_events)
    SELECT event_date, reason, count(*) AS records FROM exploded GROUP BY ALL;
CREATE OR REPLACE VIEW quarantine_reasons AS
    WITH exploded AS (
        SELECT CAST(quarantined_at AS DATE) AS quarantine_date, unnest(reasons) AS reason FROM quarantine
    )
    SELECT quarantine_date, reason, count(*) AS records FROM exploded GROUP BY ALL;
CREATE OR REPLACE VIEW events_daily AS
    SELECT event_date, event_type, count(*) AS events, count(DISTINCT user_id) AS users
    FROM events GROUP BY ALL;
"""

SCHEMA_SQL = "\n".join(table.ddl() for table in TABLES) + VIEWS_SQL
