"""A day's health on one page: every asset check that judged the day, worst first (lib/health.py)."""

import datetime as dt

import dagster as dg

# Dagster has no public API for a check's evaluations by partition or by status: these two are the
# event log storage's own, which its UI uses for the same question.
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from dataplatform.defs.common.conventions import OWNERS, daily_check, daily_partitions
from dataplatform.defs.common.keys import (
    DAILY_HEALTH,
    DRIFT_REPORT,
    EVENT_DISTRIBUTIONS,
    EVENT_PLAUSIBILITY,
    HISTORY_EVENTS,
    MODEL_PERFORMANCE,
    QUARANTINE,
    TRAINING_EXAMPLES,
    WAREHOUSE_EVENTS,
)
from dataplatform.lib.health import RANK, CheckOutcome, Outcome, counts, health_table, verdict
from dataplatform.lib.quality import markdown_table

# Evaluations of an unpartitioned check (a micro-batch's, the training gate's) searched for the day's failures.
RECENT_FAILURES = 200
DETAIL_KEYS = ("status", "decision", "summary")
DETAIL_CHARS = 200
# The day-partitioned assets whose checks judge a day, built before the summary.
DAY_ASSETS = [HISTORY_EVENTS, WAREHOUSE_EVENTS, QUARANTINE, EVENT_PLAUSIBILITY, EVENT_DISTRIBUTIONS, TRAINING_EXAMPLES,
              DRIFT_REPORT, MODEL_PERFORMANCE]  # fmt: skip


def _detail(record: AssetCheckExecutionRecord) -> str:
    """What the check said: its status, decision or summary, else its first short plain value."""
    evaluation = record.evaluation
    metadata = evaluation.metadata if evaluation else {}
    named = next((str(metadata[k].value) for k in DETAIL_KEYS if k in metadata), None)
    if named is not None:
        return named
    plain = (f"{k}: {v.value}" for k, v in metadata.items() if isinstance(v.value, str | int | float))
    return next((text for text in plain if len(text) <= DETAIL_CHARS), "")


def _judged(record: AssetCheckExecutionRecord) -> Outcome:
    evaluation = record.evaluation
    if evaluation is None:  # planned, and its run never reported: the check did not judge
        return Outcome.NOT_RUN
    if evaluation.passed:
        return Outcome.PASSED
    return Outcome.ERROR if evaluation.severity is dg.AssetCheckSeverity.ERROR else Outcome.WARN


def _partitioned_outcome(instance: dg.DagsterInstance, key: dg.AssetCheckKey, day: str) -> CheckOutcome:
    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=1, partition_filter=PartitionKeyFilter(key=day)
    )
    asset = key.asset_key.to_user_string()
    if not records:
        return CheckOutcome(asset, key.name, Outcome.NOT_RUN, "no evaluation for this day")
    return CheckOutcome(asset, key.name, _judged(records[0]), _detail(records[0]))


def _unpartitioned_outcome(instance: dg.DagsterInstance, key: dg.AssetCheckKey, day: str) -> CheckOutcome | None:
    """The day's failed evaluations of a check that judges batches or runs, not days; None when it never
    ran on or after the day (nothing judged it)."""
    storage = instance.event_log_storage
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()
    end = start + 86_400
    failed = [
        r
        for r in storage.get_asset_check_execution_history(
            key, limit=RECENT_FAILURES, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        if start <= r.create_timestamp < end
    ]
    asset = key.asset_key.to_user_string()
    if failed:
        worst = min(failed, key=lambda r: RANK[_judged(r)])
        return CheckOutcome(asset, key.name, _judged(worst), f"{len(failed)} failed that day; {_detail(worst)}")
    latest = storage.get_asset_check_execution_history(key, limit=1)
    if not latest or latest[0].create_timestamp < start:
        return None
    return CheckOutcome(asset, key.name, Outcome.PASSED, "no failed evaluation that day")


def platform_checks() -> list[tuple[dg.AssetCheckKey, bool]]:
    """Every asset check of the platform but the summary's own, and whether it judges days."""
    from dataplatform.definitions import defs  # at call time: loading the definitions imports this module

    graph = defs().resolve_asset_graph()
    specs = [s for key in graph.materializable_asset_keys for s in graph.get(key).assets_def.check_specs]
    keyed = {s.key: s.partitions_def is not None for s in specs if s.key.asset_key != DAILY_HEALTH}
    return sorted(keyed.items(), key=lambda item: (item[0].asset_key.to_user_string(), item[0].name))


def day_outcomes(instance: dg.DagsterInstance, day: str) -> list[CheckOutcome]:
    outcomes = [
        _partitioned_outcome(instance, key, day) if daily else _unpartitioned_outcome(instance, key, day)
        for key, daily in platform_checks()
    ]
    return [o for o in outcomes if o is not None]


@dg.asset(
    key=DAILY_HEALTH,
    deps=DAY_ASSETS,
    partitions_def=daily_partitions,
    group_name="monitoring",
    description=(
        "Did the day pass? Every asset check that judged the day, worst first: errors, warnings, checks that "
        "did not run for it, passes; the day-partitioned checks by their result for the day, the checks of "
        "micro-batches and training runs by their failures during the day. Built after the day's monitoring "
        "(03:00 UTC for yesterday); the alert links here."
    ),
    kinds={"dagster"},
    owners=OWNERS,
    check_specs=[
        daily_check(
            "every_check_passed",
            DAILY_HEALTH,
            "Every check of the day passed: ERROR when one failed with ERROR, else WARN when one warned or did "
            "not run.",
        )
    ],
)
def daily_health(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    outcomes = day_outcomes(context.instance, context.partition_key)
    tally = counts(outcomes)
    table = health_table(outcomes)
    return dg.MaterializeResult(
        metadata={
            "verdict": dg.MetadataValue.text(verdict(outcomes)),
            **{f"checks {kind.value}": dg.MetadataValue.int(n) for kind, n in tally.items()},
            "checks": dg.MetadataValue.md(markdown_table(table, limit=len(outcomes) or 1)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_check_passed",
                passed=tally[Outcome.PASSED] == len(outcomes),
                severity=dg.AssetCheckSeverity.ERROR if tally[Outcome.ERROR] else dg.AssetCheckSeverity.WARN,
                metadata={"day": context.partition_key, "verdict": verdict(outcomes)},
            )
        ],
    )
