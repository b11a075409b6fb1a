"""Data quality, tiers 1 and 2, per day of events.

`warehouse/events` (daily) certifies one day of the `events` table: the day's rows pass the
contract again, ids are unique, every batch that wrote the day reconciles, and the lake and
the warehouse agree. Its blocking checks keep a bad day away from features and training.
`quality/event_distributions` (daily) compares the day's distributions with the days before.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from dataplatform.defs.common.conventions import (
    OWNERS,
    WRITER_POOL,
    daily_check,
    daily_partitions,
    events_table_metadata,
)
from dataplatform.defs.common.keys import EVENT_DISTRIBUTIONS, HISTORY_EVENTS, LANDING_EVENTS, WAREHOUSE_EVENTS
from dataplatform.defs.resources import LakehouseResource
from dataplatform.lib import drift, lakeread, tables, warehouse
from dataplatform.lib.contract import QuarantineRecord
from dataplatform.lib.lake import Lake
from dataplatform.lib.quality import (
    VOLUME_MIN_RELATIVE_SPREAD,
    BandStatus,
    check_contract,
    day_profile,
    drift_table,
    failure_table,
    learned_band,
    markdown_table,
    percent_shares,
    quarantine_failures,
    volume_table,
)
from dataplatform.lib.suspects import REFERENCE_DAYS, SHIFT_PERSIST_DAYS, suspect_days

PROFILE_HISTORY_DAYS = 28
# Columns compared day by day: what a recommender's features are built from.
DISTRIBUTION_COLUMNS = ("price", "hour_of_day", "event_type", "category", "brand")

# A quarantine-rate band never narrower than half a percentage point: a history of exact
# zeros must not turn one bad record into an alarm.
QUARANTINE_RATE_MIN_SPREAD = 0.005


EVENTS_CHECKS = [
    daily_check(
        "schema_conforms",
        WAREHOUSE_EVENTS,
        "Every stored row of the day passes the event contract again (Pandera). Blocking.",
        blocking=True,
    ),
    daily_check(
        "event_id_unique",
        WAREHOUSE_EVENTS,
        "No event_id appears twice in the day, in the lake or in the warehouse. Blocking.",
        blocking=True,
    ),
    daily_check(
        "day_reconciles",
        WAREHOUSE_EVENTS,
        "Every batch that wrote the day reconciles (rows in = valid + quarantined + duplicates) and the lake and "
        "the warehouse hold the same event ids for the day. Blocking.",
        blocking=True,
    ),
    daily_check(
        "quarantine_conforms",
        WAREHOUSE_EVENTS,
        "The day's quarantined records follow the quarantine contract: source file, row, raw record and at "
        "least one well-formed reason code each.",
    ),
    daily_check(
        "quarantine_rate_in_band",
        WAREHOUSE_EVENTS,
        "The day's quarantine rate against a band learned from the previous days (median ± 3 robust sd): "
        "WARN above the band, ERROR above median + 6 sd.",
    ),
    daily_check(
        "volume_in_band",
        WAREHOUSE_EVENTS,
        "Events per day and per event type inside the band learned from previous days (WARN).",
    ),
]


def _profile_history(con: Any, day: dt.date) -> pl.DataFrame:
    return con.sql(
        "SELECT * FROM daily_event_profile WHERE event_date < ? AND event_date >= ? ORDER BY event_date",
        params=[day, day - dt.timedelta(days=PROFILE_HISTORY_DAYS)],
    ).pl()


def _band_check(name: str, value: float, history: list[float], **band_args: Any) -> dg.AssetCheckResult:
    band = learned_band(history, **band_args)
    status = band.status(value) if band else BandStatus.NO_HISTORY
    severity = dg.AssetCheckSeverity.ERROR if status is BandStatus.FAR_HIGH else dg.AssetCheckSeverity.WARN
    metadata: dict[str, Any] = {"value": float(value), "status": status.value, "history_days": len(history)}
    if band:
        metadata.update({"band_low": band.low, "band_high": band.high, "band_far_high": band.far_high})
    return dg.AssetCheckResult(
        check_name=name,
        passed=status in (BandStatus.OK, BandStatus.NO_HISTORY),
        severity=severity,
        metadata=metadata,
    )


def _volume_check(con: Any, profile: dict[str, Any], history: pl.DataFrame, day: dt.date) -> dg.AssetCheckResult:
    """Each volume against a band learned on weekday-adjusted history (the band shown in today's units).
    A finished day's judgement is kept in `daily_volume`, where lib/suspects reads volume anomalies."""
    table = volume_table(profile, history, day, min_relative_width=VOLUME_MIN_RELATIVE_SPREAD)
    if day < dt.datetime.now(dt.UTC).date():  # today is still filling: its low volume is no anomaly
        warehouse.replace_day(
            con,
            tables.DAILY_VOLUME,
            day,
            table.with_columns(event_date=pl.lit(day), judged_at=pl.lit(dt.datetime.now(dt.UTC))),
        )
    outside_statuses = [BandStatus.LOW.value, BandStatus.HIGH.value, BandStatus.FAR_HIGH.value]
    outside = table.filter(pl.col("status").is_in(outside_statuses))
    return dg.AssetCheckResult(
        check_name="volume_in_band",
        passed=outside.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"measures_outside": outside.height, "volumes": dg.MetadataValue.md(markdown_table(table))},
    )


def _record_certification(
    lakehouse: LakehouseResource, day: dt.date, events: pl.DataFrame, checks: list[dg.AssetCheckResult]
) -> None:
    """Lineage: which batches the day's certification judged, and whether its blocking checks passed."""
    blocking = {spec.name for spec in EVENTS_CHECKS if spec.blocking}
    row = {
        "event_date": day,
        "batches": sorted(events["batch_id"].unique().to_list()) if events.height else [],
        "events": events.height,
        "passed": all(c.passed for c in checks if c.check_name in blocking),
        "certified_at": dt.datetime.now(dt.UTC),
    }
    with lakehouse.connect() as con:
        rows = pl.DataFrame([row], schema_overrides={"batches": pl.List(pl.String)})
        warehouse.replace_rows(con, tables.DAY_CERTIFICATIONS, rows)


@dg.asset(
    key=WAREHOUSE_EVENTS,
    deps=[HISTORY_EVENTS, LANDING_EVENTS],
    partitions_def=daily_partitions,
    group_name="warehouse",
    description=(
        "One day of the warehouse table `events`, certified: its checks re-validate the stored rows against the "
        "contract, prove every record reconciles, and compare the day's quarantine rate and volumes with what "
        "the previous days learned. Features and training read only certified days."
    ),
    kinds={"duckdb", "polars", "pandera"},
    owners=OWNERS,
    pool=WRITER_POOL,
    metadata=events_table_metadata(),
    check_specs=EVENTS_CHECKS,
)
def warehouse_events(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key)
    lake = lakehouse.lake()
    events = lakeread.events_for_days(lake, [day])
    quarantine = lakeread.quarantine_for_days(lake, [day])
    with lakehouse.connect() as con:
        reconciled = _reconcile_day(con, lake, day, events)
        history = _profile_history(con, day)
        # Retracted records are quarantined by an operator's decision, not by the producer: the day's
        # quarantine rate (and the training gate's corruption share) is what a run without them shows.
        retracted = quarantine.filter(pl.col("reasons").list.contains(warehouse.RETRACTED_REASON)).height
        profile = day_profile(events, quarantine.height - retracted)
        row = pl.DataFrame([{"event_date": day, **profile, "profiled_at": dt.datetime.now(dt.UTC)}])
        warehouse.replace_rows(con, tables.DAILY_EVENT_PROFILE, row)
        volume = _volume_check(con, profile, history, day)
    checks = [
        *_day_checks(events, quarantine, reconciled),
        _band_check(
            "quarantine_rate_in_band",
            profile["quarantine_rate"],
            history["quarantine_rate"].to_list() if history.height else [],
            min_width=QUARANTINE_RATE_MIN_SPREAD,
            floor=0.0,
        ),
        volume,
    ]
    _record_certification(lakehouse, day, events, checks)
    context.log.info(f"{day}: {profile}")
    return dg.MaterializeResult(metadata=_day_metadata(day, events, quarantine, profile), check_results=checks)


@dataclass(frozen=True)
class DayReconciliation:
    """How the lake's and the warehouse's copies of a day agree, and every batch of the day with them."""

    duplicates_in_lake: int
    duplicates_in_warehouse: int
    only_in_warehouse: int
    only_in_lake: int
    batches: list[dict[str, Any]]  # warehouse.batch_reconciliation of each batch with files of the day

    @property
    def failing_batches(self) -> list[dict[str, Any]]:
        return [b for b in self.batches if not b["ok"]]


def _reconcile_day(con: Any, lake: Lake, day: dt.date, events: pl.DataFrame) -> DayReconciliation:
    lake_ids = events["event_id"] if events.height else pl.Series("event_id", [], dtype=pl.String)
    warehouse_only, lake_only, warehouse_dupes = warehouse.day_id_reconciliation(con, day, lake_ids)
    batches = [warehouse.batch_reconciliation(con, b) for b in lakeread.batch_ids_for_day(lake, day)]
    lake_dupes = events.height - events["event_id"].n_unique() if events.height else 0
    return DayReconciliation(lake_dupes, int(warehouse_dupes), int(warehouse_only), int(lake_only), batches)


def _day_checks(
    events: pl.DataFrame, quarantine: pl.DataFrame, reconciled: DayReconciliation
) -> list[dg.AssetCheckResult]:
    """Tier 1 of the day: its records against the contract, unique ids, lake and warehouse agreeing."""
    contract = check_contract(events) if events.height else None
    quarantine_contract = check_contract(quarantine, model=QuarantineRecord, id_column="source_file")
    failing = reconciled.failing_batches
    return [
        dg.AssetCheckResult(
            check_name="schema_conforms",
            passed=contract is None or contract.passed,
            metadata={
                "rows": events.height,
                "failing_rows": contract.failing_rows if contract else 0,
                "failures": dg.MetadataValue.md(markdown_table(contract.reasons) if contract else "_no rows_"),
            },
        ),
        dg.AssetCheckResult(
            check_name="event_id_unique",
            passed=reconciled.duplicates_in_lake == 0 and reconciled.duplicates_in_warehouse == 0,
            metadata={
                "duplicates_in_lake": reconciled.duplicates_in_lake,
                "duplicates_in_warehouse": reconciled.duplicates_in_warehouse,
            },
        ),
        dg.AssetCheckResult(
            check_name="day_reconciles",
            passed=not failing and reconciled.only_in_warehouse == 0 and reconciled.only_in_lake == 0,
            metadata={
                "batches": len(reconciled.batches),
                "batches_failing": len(failing),
                "rows_in_warehouse_not_in_lake": reconciled.only_in_warehouse,
                "rows_in_lake_not_in_warehouse": reconciled.only_in_lake,
                **({"failing": dg.MetadataValue.json(failing[:10])} if failing else {}),
            },
        ),
        dg.AssetCheckResult(
            check_name="quarantine_conforms",
            passed=quarantine_contract.passed,
            metadata={
                "records": quarantine.height,
                "failing_records": quarantine_contract.failing_rows,
                "failures": dg.MetadataValue.md(markdown_table(quarantine_contract.reasons)),
            },
        ),
    ]


def _day_metadata(
    day: dt.date, events: pl.DataFrame, quarantine: pl.DataFrame, profile: dict[str, Any]
) -> dict[str, Any]:
    reasons = failure_table(quarantine_failures(quarantine), rows=quarantine.height + events.height)
    return {
        "dagster/row_count": events.height,
        "quarantined": quarantine.height,
        # Counted here (the partition or arrival day) though their timestamp names another day or none.
        "quarantined_claiming_another_day": quarantine.filter(
            pl.col("claimed_date").is_null() | (pl.col("claimed_date") != day)
        ).height,
        "quarantine_rate_percent": dg.MetadataValue.float(round(100 * float(profile["quarantine_rate"]), 2)),
        "users": profile["users"],
        **{k: v for k, v in profile.items() if k.startswith("events_")},
        "quarantine_reasons": dg.MetadataValue.md(markdown_table(percent_shares(reasons))),
    }


def clean_history_days(lakehouse: LakehouseResource, day: dt.date) -> tuple[list[dt.date], dict[dt.date, str]]:
    """The PROFILE_HISTORY_DAYS days before `day` that statistics may learn from, and the suspect days
    left out of them (with why)."""
    with lakehouse.connect(read_only=True) as con:
        left_out = suspect_days(con, day - dt.timedelta(days=PROFILE_HISTORY_DAYS), day)
    return [d for d in lakeread.days_before(day, PROFILE_HISTORY_DAYS) if d not in left_out], left_out


@dataclass(frozen=True)
class DayAndHistory:
    """A day's events and those of its clean history, for a tier-2 judgement of the day."""

    current: pl.DataFrame
    history: pl.DataFrame
    history_days: list[dt.date]
    left_out: dict[dt.date, str]  # suspect days kept out of the history, with why

    def insufficient(self, check_name: str) -> dg.MaterializeResult | None:
        """The result of a day that cannot be judged (no events, or no history to learn from); None otherwise."""
        if self.current.height and self.history.height:
            return None
        return dg.MaterializeResult(
            metadata={"status": "insufficient data", "rows": self.current.height, "history_rows": self.history.height},
            check_results=[dg.AssetCheckResult(check_name=check_name, passed=True, metadata={"status": "no data"})],
        )


def day_and_history(lakehouse: LakehouseResource, day: dt.date) -> DayAndHistory:
    lake = lakehouse.lake()
    history_days, left_out = clean_history_days(lakehouse, day)
    current, history = lakeread.events_for_days(lake, [day]), lakeread.events_for_days(lake, history_days)
    return DayAndHistory(current, history, history_days, left_out)


def tier2_asset(
    key: dg.AssetKey, *, description: str, kinds: set[str], check_name: str, check_description: str
) -> Callable[[Callable[..., dg.MaterializeResult]], dg.AssetsDefinition]:
    """The decorator of a tier-2 judgement of one certified day, with its one check.
    It follows its parent: a re-certified day (after a backfill, say) is judged again."""
    return dg.asset(
        key=key,
        deps=[WAREHOUSE_EVENTS],
        partitions_def=daily_partitions,
        group_name="quality",
        description=description,
        kinds=kinds,
        owners=OWNERS,
        automation_condition=dg.AutomationCondition.eager(),
        pool=WRITER_POOL,
        check_specs=[daily_check(check_name, key, check_description)],
    )


def _with_derived_columns(events: pl.DataFrame) -> pl.DataFrame:
    return events.with_columns(pl.col("timestamp").dt.hour().cast(pl.Float64).alias("hour_of_day"))


@tier2_asset(
    EVENT_DISTRIBUTIONS,
    description=(
        "Tier-2 statistical validation of one day: each column's distribution against the previous "
        f"{REFERENCE_DAYS} days (two-sample Kolmogorov-Smirnov for numeric columns, two-sample chi-square for "
        "categorical ones), with effect sizes (normalized Wasserstein, Jensen-Shannon, PSI, Cramér's V). A column "
        "is flagged only when the shift is significant AND larger than a threshold learned from the previous "
        f"{PROFILE_HISTORY_DAYS} days: each past day against its own previous {REFERENCE_DAYS} days, threshold = "
        "the log-normal tail (median + 3 robust sd of the log effect sizes). Flagged days stay out of the "
        f"reference and of that history unless their shift ran {SHIFT_PERSIST_DAYS} days or more (then it is the "
        "new normal) or an operator accepted them (`python -m dataplatform.lib.suspects`), so a corrupted stretch "
        "cannot become the normal that hides it. "
        "Results: table `distribution_drift`."
    ),
    kinds={"polars", "scipy", "duckdb"},
    check_name="distributions_stable",
    check_description="No column of the day drifted beyond its learned threshold (WARN: a shift is news).",
)
def event_distributions(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key)
    events = day_and_history(lakehouse, day)
    if skipped := events.insufficient("distributions_stable"):
        return skipped
    derived = _with_derived_columns(events.current), _with_derived_columns(events.history)
    table, thresholds = _compare_to_history(*derived, events.history_days, day)
    with lakehouse.connect() as con:
        warehouse.replace_rows(con, tables.DISTRIBUTION_DRIFT, table)
    return _distributions_result(table, thresholds, events.history_days, events.left_out)


def _compare_to_history(
    current: pl.DataFrame, history: pl.DataFrame, history_days: list[dt.date], day: dt.date
) -> tuple[pl.DataFrame, drift.Thresholds]:
    """The day's columns against the last REFERENCE_DAYS of its clean history days, with thresholds learned
    from how the clean history varies from day to day at the day's size."""
    reference = history.filter(pl.col("event_date").is_in(history_days[-REFERENCE_DAYS:]))
    thresholds = drift.calibrate_thresholds(
        history,
        time_column="event_date",
        columns=DISTRIBUTION_COLUMNS,
        current_size=current.height,
        reference_windows=REFERENCE_DAYS,
        rule="lognormal_tail",
    )
    results = drift.compare(
        reference.select(DISTRIBUTION_COLUMNS), current.select(DISTRIBUTION_COLUMNS), thresholds=thresholds
    )
    return drift_table(results, event_date=day, dataset="events", thresholds_version=thresholds.version), thresholds


def _distributions_result(
    table: pl.DataFrame, thresholds: drift.Thresholds, history_days: list[dt.date], left_out: dict[dt.date, str]
) -> dg.MaterializeResult:
    drifted = table.filter(pl.col("drifted"))
    shown = table.select("column_name", "method", "statistic", "p_value", "effect_size", "threshold", "drifted")
    return dg.MaterializeResult(
        metadata={
            "columns_drifted": drifted.height,
            "left_out_days": dg.MetadataValue.json({str(d): why for d, why in sorted(left_out.items())}),
            "thresholds_version": thresholds.version,
            "thresholds_calibrated": thresholds.calibrated,
            **{f"effect_{r['column_name']}": float(r["effect_size"] or 0.0) for r in table.iter_rows(named=True)},
            "comparison": dg.MetadataValue.md(markdown_table(shown, limit=20)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="distributions_stable",
                passed=drifted.height == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "drifted_columns": ", ".join(drifted["column_name"]) or "none",
                    "reference_days": f"{history_days[-REFERENCE_DAYS:][0]}..{history_days[-1]}",
                    "left_out_days": ", ".join(str(d) for d in sorted(left_out)) or "none",
                    "comparison": dg.MetadataValue.md(markdown_table(shown, limit=20)),
                },
            )
        ],
    )
