"""The drift sensor that requests retraining (rules: `lib/retraining.py`).

Jobs are used as `jobs.<name>`: a job imported by name would be collected twice by load_from_defs_folder.
"""

import datetime as dt
import json

import dagster as dg

from dataplatform.defs.common.conventions import SETTINGS
from dataplatform.defs.common.keys import (
    CHALLENGER,
    CHAMPION,
    DRIFT_REPORT,
    MODEL_PERFORMANCE,
    TRAINING_SET,
)
from dataplatform.defs.ml import jobs
from dataplatform.defs.ml.assets import ONSET_TAG, TRIGGER_TAG
from dataplatform.defs.resources import AlertWebhookResource, RetrainingPolicyResource
from dataplatform.lib.alerts import Alert
from dataplatform.lib.retraining import (
    PRE_ONSET_WEIGHT,
    REGIME_FOLLOW_UP_DAYS,
    DriftDay,
    LastWindow,
    PerformanceDay,
    retrain_decision,
)

RECENT_REPORTS = 30  # a drift episode's onset is searched this far back


def _metadata_value(metadata: dict, key: str, default: object = None) -> object:
    value = metadata.get(key)
    return default if value is None else value.value


def _drift_days(instance: dg.DagsterInstance) -> list[DriftDay]:
    records = instance.fetch_materializations(DRIFT_REPORT, limit=RECENT_REPORTS).records
    days: dict[dt.date, DriftDay] = {}
    for record in records:  # newest first: keep the latest report of each day
        materialization = record.asset_materialization
        if materialization is None or materialization.partition is None or "decision" not in materialization.metadata:
            continue
        day = dt.date.fromisoformat(materialization.partition)
        metadata = materialization.metadata
        days.setdefault(
            day,
            DriftDay(
                day=day,
                drifted_features=list(_metadata_value(metadata, "drifted_features", [])),
                scores=dict(_metadata_value(metadata, "scores", {})),
                multivariate_drift=bool(_metadata_value(metadata, "multivariate_drift", False)),
                broken_features=list(_metadata_value(metadata, "broken_features", [])),
                impact=_metadata_value(metadata, "impact"),
                performance_holds=bool(_metadata_value(metadata, "performance_holds", False)),
            ),
        )
    return list(days.values())


def _performance_days(instance: dg.DagsterInstance) -> list[PerformanceDay]:
    records = instance.fetch_materializations(MODEL_PERFORMANCE, limit=RECENT_REPORTS).records
    days = {}
    for record in records:
        materialization = record.asset_materialization
        if materialization is None or not _metadata_value(materialization.metadata, "labels_mature", False):
            continue
        day = dt.date.fromisoformat(materialization.partition)
        days.setdefault(
            day,
            PerformanceDay(
                day=day,
                auc=_metadata_value(materialization.metadata, "auc"),
                below_band=bool(_metadata_value(materialization.metadata, "below_band", False)),
            ),
        )
    return list(days.values())


def _last_window(instance: dg.DagsterInstance) -> LastWindow | None:
    """The latest training window's drift onset and days, and the champion's last training day."""
    event = instance.get_latest_materialization_event(TRAINING_SET)
    if event is None or event.asset_materialization is None:
        return None
    window = _metadata_value(event.asset_materialization.metadata, "window", {}) or {}
    champion = instance.get_latest_materialization_event(CHAMPION)
    trained = (
        _metadata_value(champion.asset_materialization.metadata, "training_window", {}) or {}
        if champion and champion.asset_materialization
        else {}
    )
    return LastWindow(
        onset=dt.date.fromisoformat(window["onset"]) if window.get("onset") else None,
        train_days=[dt.date.fromisoformat(d) for d in window.get("train_days", [])],
        champion_trained_until=dt.date.fromisoformat(trained["end"]) if trained.get("end") else None,
    )


def _last_retrain(instance: dg.DagsterInstance) -> dt.date | None:
    """The day of data on which the latest challenger was trained (the cooldown runs in days of data)."""
    event = instance.get_latest_materialization_event(CHALLENGER)
    if event is None or event.asset_materialization is None:
        return None
    value = _metadata_value(event.asset_materialization.metadata, "trained_on_day")
    return dt.date.fromisoformat(str(value)) if value else None


@dg.sensor(
    job=jobs.retrain_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Reads the latest drift reports and performance results. Requests a retraining run when drift is material "
        "and persistent (two or more features beyond their learned thresholds on 2 of the last 3 days, unless the "
        "drifted features carry little of the champion's importance and its performance holds: drift without "
        "impact) or realized AUC was below its band on 2 of the last 3 labelled days, outside a cooldown "
        "(DP_RETRAIN_COOLDOWN_DAYS); and follow-ups a drift retrain leaves due: each week the new regime gains "
        "while the window still held days before the onset, and once when the drift settled after the champion "
        "trained. The run's tags carry the drift's estimated onset and the training window rule it implies. "
        "Each decision runs once (run_key), carries its reasons as "
        "run tags, is recorded as an observation of ml/challenger_model and sent as an alert."
    ),
)
def drift_retraining_sensor(
    context: dg.SensorEvaluationContext, alerts: AlertWebhookResource, retraining: RetrainingPolicyResource
) -> dg.SensorResult:
    drift_days = _drift_days(context.instance)
    performance_days = _performance_days(context.instance)
    decision = retrain_decision(
        drift_days,
        performance_days,
        last_retrain=_last_retrain(context.instance),
        today=max((d.day for d in drift_days), default=dt.datetime.now(dt.UTC).date()),
        cooldown_days=retraining.cooldown_days,
        last_window=_last_window(context.instance),
        labelled_days=[p.day for p in performance_days],
        holdout_days=SETTINGS.holdout_days,
    )
    if not decision.retrain:
        return dg.SensorResult(skip_reason=f"{decision.rule}: {decision.reason}")
    details = decision.to_dict()
    onset_tag = {ONSET_TAG: str(decision.onset)} if decision.onset else {}
    window_rule = (
        f"days before the onset {decision.onset} weigh {PRE_ONSET_WEIGHT}; a follow-up retrain each "
        f"{REGIME_FOLLOW_UP_DAYS} labelled days the new regime gains, until it trains alone"
        if decision.onset
        else "the latest labelled days"
    )
    alerts.send(
        Alert("drift_decision", f"retraining requested: {decision.reason}", details, "warning"), log=context.log
    )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"retrain:{decision.latest_day}:{decision.rule}",
                tags={
                    TRIGGER_TAG: decision.rule,
                    **onset_tag,
                    "dataplatform/window_rule": window_rule,
                    "dataplatform/reason": decision.reason[:200],
                    "dataplatform/features": ",".join(decision.features)[:200] or "none",
                    "dataplatform/scores": json.dumps({k: round(v, 2) for k, v in decision.scores.items()})[:200],
                },
            )
        ],
        asset_events=[
            dg.AssetObservation(asset_key=CHALLENGER, metadata={"retrain_decision": dg.MetadataValue.json(details)})
        ],
    )
