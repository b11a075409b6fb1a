"""The ML loop's schedules: nightly monitoring, realized performance once labels matured, a weekly safety retrain.

Jobs are used as `jobs.<name>`: a job imported by name would be collected twice by load_from_defs_folder.
"""

import dagster as dg

from dataplatform.defs.common.schedules import daily_partition_schedule
from dataplatform.defs.ml import jobs
from dataplatform.defs.ml.assets import TRIGGER_TAG

nightly_ml_schedule = daily_partition_schedule(
    "nightly_ml_schedule",
    jobs.nightly_ml_job,
    "0 2 * * *",
    "02:00 UTC: yesterday's features, drift report and estimated performance.",
)
labelled_performance_schedule = daily_partition_schedule(
    "labelled_performance_schedule",
    jobs.labelled_performance_job,
    "30 2 * * *",
    "02:30 UTC: realized performance of the day before yesterday.",
    days_back=2,
)


@dg.schedule(
    cron_schedule="0 4 * * 1",
    job=jobs.retrain_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays 04:00 UTC: a safety retrain, whatever drift says (promotion still needs a better model).",
)
def weekly_retrain_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    week = context.scheduled_execution_time.strftime("%G-W%V")
    return dg.RunRequest(run_key=f"weekly-retrain-{week}", tags={TRIGGER_TAG: "weekly_safety_retrain"})
