""" "What if this data was wrong?": the blast radius of a selection, retraction and revert.

The rules live in `lib/blast_radius.py` and `lib/retraction.py`; this module wires them as a
report asset with launchpad config, two one-op jobs, and the sensor that turns a retraction's
plan into one backfill of every affected partition downstream.
"""

import json

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey
from pydantic import Field

from dataplatform.defs.common.conventions import OWNERS, WRITER_POOL
from dataplatform.defs.common.keys import (
    BLAST_RADIUS,
    CHALLENGER,
    CHAMPION,
    DRIFT_REPORT,
    EVENT_DISTRIBUTIONS,
    EVENT_PLAUSIBILITY,
    FEATURE_DISTRIBUTIONS,
    MODEL_PERFORMANCE,
    TRAINING_EXAMPLES,
    TRAINING_SET,
    WAREHOUSE_EVENTS,
)
from dataplatform.defs.resources import LakehouseResource, ModelRegistryResource
from dataplatform.lib import retraction, warehouse
from dataplatform.lib.blast_radius import Predicate, Selection, blast_radius, parse_moment

# What a retraction re-materializes: per event day, per feature day, and (when a set is affected) once.
EVENT_DAY_ASSETS = (WAREHOUSE_EVENTS, EVENT_PLAUSIBILITY, EVENT_DISTRIBUTIONS)
FEATURE_DAY_ASSETS = (TRAINING_EXAMPLES, FEATURE_DISTRIBUTIONS, DRIFT_REPORT, MODEL_PERFORMANCE)
RETRAIN_ASSETS = (TRAINING_SET, CHALLENGER, CHAMPION)


class SelectionConfig(dg.Config):
    """Which events: every criterion given must match (at least one is required)."""

    batch_ids: list[str] = Field(default_factory=list)
    source_pattern: str | None = None
    landing_prefix: str | None = None
    since: str | None = None  # ISO-8601 timestamp; no offset means UTC
    until: str | None = None
    where: list[str] = Field(default_factory=list)  # e.g. "price > 1000", "event_type = purchase", "brand in a,b"

    def given(self) -> bool:
        return bool(
            self.batch_ids or self.source_pattern or self.landing_prefix or self.since or self.until or self.where
        )

    def selection(self) -> Selection:
        return Selection(
            tuple(self.batch_ids),
            self.source_pattern,
            self.landing_prefix,
            parse_moment(self.since) if self.since else None,
            parse_moment(self.until) if self.until else None,
            tuple(Predicate.parse(p) for p in self.where),
        )


class RetractConfig(SelectionConfig):
    note: str
    by: str


class RevertConfig(dg.Config):
    retraction_id: str
    note: str
    by: str


@dg.asset(
    key=BLAST_RADIUS,
    group_name="remediation",
    description=(
        "What a selection of events touched: records per day and batch, lake files, certified days, feature days "
        "(with the later days whose lookback reached them), training sets, model versions, whether the champion "
        "is one, and the drift and performance reports. Materialize it from the launchpad with a selection "
        "(without one: the latest ingested batch); the report is this materialization's metadata. CLI: "
        "`python -m dataplatform.lib.blast_radius`."
    ),
    kinds={"duckdb"},
    owners=OWNERS,
    pool=WRITER_POOL,
)
def blast_radius_report(
    config: SelectionConfig, lakehouse: LakehouseResource, models: ModelRegistryResource
) -> dg.MaterializeResult:
    registry = models.registry()
    champion = registry.champion()
    with lakehouse.connect() as con:
        latest = warehouse.scalar(con, "SELECT batch_id FROM ingest_batches ORDER BY committed_at DESC")
        if not config.given() and latest is None:
            return dg.MaterializeResult(metadata={"selection": "none", "status": "no batch ingested yet"})
        # Without a selection: what did the latest batch touch?
        selection = config.selection() if config.given() else Selection(batch_ids=(latest,))
        report = blast_radius(
            con, lakehouse.lake(), selection, registry.list_versions(), champion.version if champion else None
        )
    return dg.MaterializeResult(
        metadata={
            "selection": report.selection,
            "records": report.records,
            "champion_affected": report.champion_affected,
            "feature_days": len(report.feature_days),
            "training_sets": len(report.training_sets),
            "model_versions": len(report.model_versions),
            "query_seconds": dg.MetadataValue.float(report.seconds),
            "report": dg.MetadataValue.md(report.to_markdown()),
        }
    )


def _outcome_metadata(context: dg.OpExecutionContext, outcome: retraction.Outcome) -> None:
    context.log.info(outcome.describe())
    context.add_output_metadata(
        {
            "retraction_id": outcome.retraction_id,
            "changed": outcome.changed,
            "records": outcome.records,
            "champion": outcome.champion_action,
            "plan": dg.MetadataValue.json(outcome.plan),
            **({"blast_radius": dg.MetadataValue.md(outcome.radius.to_markdown())} if outcome.radius else {}),
        }
    )


@dg.op(pool=WRITER_POOL, description="Retract the selected events (lib/retraction.py); a repeat is a no-op.")
def retract_records(
    context: dg.OpExecutionContext, config: RetractConfig, lakehouse: LakehouseResource, models: ModelRegistryResource
) -> str:
    with lakehouse.connect() as con:
        outcome = retraction.retract(
            con, lakehouse.lake(), models.registry(), config.selection(), note=config.note, by=config.by
        )
    _outcome_metadata(context, outcome)
    return outcome.retraction_id


@dg.op(pool=WRITER_POOL, description="Restore a retraction's records; a repeat is a no-op.")
def revert_retraction(context: dg.OpExecutionContext, config: RevertConfig, lakehouse: LakehouseResource) -> str:
    with lakehouse.connect() as con:
        outcome = retraction.revert(con, lakehouse.lake(), config.retraction_id, note=config.note, by=config.by)
    _outcome_metadata(context, outcome)
    return outcome.retraction_id


@dg.job(
    description="Retract events that passed the contract but are wrong: into the quarantine (reason "
    "record:retracted, with the note), champion rolled back or retrained, and every affected partition "
    "re-materialized by one backfill (retraction_sensor)."
)
def retract_records_job() -> None:
    retract_records()


@dg.job(description="Revert a retraction: restore its records, and re-materialize as a retraction does.")
def revert_retraction_job() -> None:
    revert_retraction()


def plan_subset(plan: dict, asset_graph: object) -> AssetGraphSubset:
    """The partitions a retraction (or revert) plan re-materializes."""
    wanted = {
        *(AssetKeyPartitionKey(key, day) for day in plan["event_days"] for key in EVENT_DAY_ASSETS),
        *(AssetKeyPartitionKey(key, day) for day in plan["feature_days"] for key in FEATURE_DAY_ASSETS),
        *(AssetKeyPartitionKey(key, None) for key in (RETRAIN_ASSETS if plan["retrain"] else ())),
    }
    return AssetGraphSubset.from_asset_partition_set(wanted, asset_graph)  # type: ignore[arg-type]


@dg.sensor(
    asset_selection=[*EVENT_DAY_ASSETS, *FEATURE_DAY_ASSETS, *RETRAIN_ASSETS],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns each new retraction or revert plan (lake `_retractions/*.plan.json`) into one backfill of "
    "every affected partition: the event days, the feature days whose windows read them, and a retrain when a "
    "training set is affected.",
)
def retraction_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource) -> dg.SensorResult:
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    storage = lakehouse.lake().storage
    requests = []
    for key in storage.keys(retraction.RETRACTIONS_DIR):
        if not key.endswith(".plan.json"):
            continue
        plan = json.loads(storage.read(key))
        stamp = f"{plan['action']}@{plan['planned_at']}"
        if seen.get(key) == stamp:
            continue
        seen[key] = stamp
        subset = plan_subset(plan, context.repository_def.asset_graph)  # type: ignore[union-attr]
        tags = {"dataplatform/retraction": plan["retraction_id"], "dataplatform/action": plan["action"]}
        # A RunRequest built from an asset-graph subset launches a backfill (Dagster's own automation uses it).
        requests.append(dg.RunRequest.for_asset_graph_subset(subset, tags=tags))
    skip = None if requests else "no new retraction plans"
    return dg.SensorResult(run_requests=requests, skip_reason=skip, cursor=json.dumps(seen, sort_keys=True))
