"""The landing sensor: new files in the landing zone become micro-batch runs."""

import time

import dagster as dg

from dataplatform.defs.common.conventions import SETTINGS
from dataplatform.defs.ingestion.assets import landing_events
from dataplatform.defs.resources import FileStoreResource, IngestionPolicyResource, LakehouseResource
from dataplatform.lib.batching import RunOutcome, SensorState, plan_tick

ingest_landing_job = dg.define_asset_job(
    "ingest_landing_job",
    selection=[landing_events],
    description="One micro-batch of landing files (requested by landing_files_sensor).",
    # One step: in-process execution saves the process start a multiprocess executor adds to every run.
    executor_def=dg.in_process_executor,
)

_OUTCOMES = {
    dg.DagsterRunStatus.SUCCESS: RunOutcome.SUCCESS,
    dg.DagsterRunStatus.FAILURE: RunOutcome.FAILURE,
    dg.DagsterRunStatus.CANCELED: RunOutcome.FAILURE,
}


def _run_outcome(instance: dg.DagsterInstance, run_key: str) -> RunOutcome:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    if not runs:
        return RunOutcome.UNKNOWN
    return _OUTCOMES.get(runs[0].status, RunOutcome.IN_PROGRESS)


@dg.sensor(
    job=ingest_landing_job,
    minimum_interval_seconds=SETTINGS.sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Lists the landing zone, groups new files into bounded micro-batches and requests one run per batch "
        "(run_key = batch id + attempt). Failed batches are retried up to DP_MAX_ATTEMPTS times."
    ),
)
def landing_files_sensor(
    context: dg.SensorEvaluationContext,
    landing: FileStoreResource,
    lakehouse: LakehouseResource,
    ingestion: IngestionPolicyResource,
) -> dg.SensorResult:
    state = SensorState.from_cursor(context.cursor)
    ledger = lakehouse.lake().ledger
    listed = landing.store().list_files(ingestion.max_listed_files)
    plan = plan_tick(
        listed,
        state,
        is_ingested=ledger.has_file,
        run_outcome=lambda run_key: _run_outcome(context.instance, run_key),
        now=time.time(),
        limits=ingestion.batch_limits(landing.settle_seconds),
    )
    for note in plan.notes:
        context.log.info(note)
    requests = [
        dg.RunRequest(
            run_key=batch.run_key,
            run_config=dg.RunConfig(
                ops={landing_events.op.name: {"config": {"batch_id": batch.batch_id, "files": batch.keys}}}
            ),
            tags={
                "dataplatform/batch_id": batch.batch_id,
                "dataplatform/attempt": str(batch.attempt),
                # Fix (platform_tests/test_faults.py, daemon killed mid-run): this sensor retries a failed batch
                # itself (next attempt, new run_key). Dagster's run retry (dagster.yaml) re-executed the same
                # failed run too, so one batch ran twice; leave the retries of these runs to the sensor.
                "dagster/max_retries": "0",
            },
        )
        for batch in plan.requests
    ]
    skip = None if requests else f"no new files ({len(listed)} listed, {len(plan.state.pending)} batches pending)"
    return dg.SensorResult(run_requests=requests, skip_reason=skip, cursor=plan.state.to_cursor())
