"""The retraining loop's assets: the gated training set, a challenger, and the champion.

`ml/training_set` picks its window by a documented rule and passes the training-data gate
(a blocking check) before anything trains on it. `ml/challenger_model` trains and registers
a challenger; its blocking check `beats_champion` lets `ml/champion_model` promote it only
when it beats the champion on the same recent holdout. A challenger that is not better is a
normal outcome, not a failure: the check fails with WARN, the run succeeds, the champion stays.
"""

import dataclasses
import datetime as dt
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from dataplatform.defs.common.conventions import OWNERS, SETTINGS, WRITER_POOL
from dataplatform.defs.common.keys import CHALLENGER, CHAMPION, TRAINING_EXAMPLES, TRAINING_SET
from dataplatform.defs.resources import LakehouseResource, ModelRegistryResource
from dataplatform.lib import features, featurestore, promotion, retraction, suspects, tables, warehouse
from dataplatform.lib.quality import ContractReport, check_contract, markdown_table
from dataplatform.lib.registry import ModelCard, ModelRegistry, frame_fingerprint
from dataplatform.lib.retraining import (
    REGIME_FOLLOW_UP_DAYS,
    SEVERE_NULL_SHIFT,
    SEVERE_UNSEEN_SHARE,
    GateResult,
    TrainingWindow,
    choose_training_window,
    severe_drift,
    training_gate,
)
from dataplatform.lib.training import Metrics, TrainedModel, evaluate, permutation_importance, train_model

ML_KINDS = {"scikitlearn", "polars"}
MIN_ROWS, MIN_POSITIVES, MIN_TRAIN_DAYS = 1000, 30, 3

# A retraining run's tags (set by drift_retraining_sensor): what asked for it, and the drift's onset.
TRIGGER_TAG, ONSET_TAG = "dataplatform/trigger", "dataplatform/onset"
RECENT_RETRAINS = 10


class TrainingSetConfig(dg.Config):
    train_days: int = SETTINGS.train_days
    holdout_days: int = SETTINGS.holdout_days
    max_corruption: float = SETTINGS.gate_max_corruption


def _labelled_days(lakehouse: LakehouseResource) -> list[dt.date]:
    lake = lakehouse.lake()
    days = featurestore.example_days(lake)
    if not days:
        return []
    latest = featurestore.read_examples(lake, days[-1:])["example_time"].max()
    # Events up to the latest example time are in; labels of a day mature one horizon after it.
    return features.labelled_days(latest, days) if latest else []


def _day_corruption(con: Any) -> dict[dt.date, float]:
    """Per day, the share of its records that are quarantined or implausible (`suspect_events`); on a day
    an operator accepted (`accepted_days`), implausible records are accepted with it."""
    rows = con.sql(
        """
        SELECT p.event_date,
               (p.quarantined + CASE WHEN a.event_date IS NULL THEN coalesce(s.suspect, 0) ELSE 0 END)
               / greatest(p.events + p.quarantined, 1)
        FROM daily_event_profile p
        LEFT JOIN daily_plausibility s USING (event_date)
        LEFT JOIN accepted_days a USING (event_date)
        """
    ).fetchall()
    return dict(rows)


def _record_training_set(
    lakehouse: LakehouseResource,
    fingerprint: str,
    train_days: list[dt.date],
    holdout_days: list[dt.date],
    train: pl.DataFrame,
    holdout: pl.DataFrame,
    context: dg.AssetExecutionContext,
) -> None:
    """Lineage: the set's example days and every event batch their features and labels read."""
    inputs = featurestore.read_example_inputs(lakehouse.lake(), [*train_days, *holdout_days])
    row = {
        "fingerprint": fingerprint,
        "train_days": train_days,
        "holdout_days": holdout_days,
        "batches": sorted(inputs["batch_id"].unique().to_list()),
        "rows": train.height,
        "holdout_rows": holdout.height,
        "run_id": context.run.run_id,
        "built_at": dt.datetime.now(dt.UTC),
    }
    with lakehouse.connect() as con:
        warehouse.replace_rows(con, tables.TRAINING_SETS, pl.DataFrame([row], schema=tables.TRAINING_SETS.columns))


@dg.asset(
    key=TRAINING_SET,
    deps=[TRAINING_EXAMPLES],
    group_name="ml",
    description=(
        "The examples a challenger trains on. Window rule: the latest labelled days are the holdout "
        f"(DP_HOLDOUT_DAYS, default {SETTINGS.holdout_days}); the DP_TRAIN_DAYS (default {SETTINGS.train_days}) "
        "labelled days before them train, minus days whose corruption share ((quarantined + implausible) / all "
        "records; implausible: `quality/event_plausibility`) exceeds "
        f"DP_GATE_MAX_CORRUPTION (default {SETTINGS.gate_max_corruption:.0%}), and minus suspect days (a shift "
        "`quality/event_distributions` flagged that did not persist, until an operator accepts the day: "
        "`python -m dataplatform.lib.suspects`), which are in the holdout neither. The blocking `training_data_gate` "
        "check stops training when the clean remainder is too small, breaks the training contract, or a feature "
        f"looks broken against the last accepted training set (missing share moved by > {SEVERE_NULL_SHIFT}, or more "
        f"than {SEVERE_UNSEEN_SHARE:.0%} of a categorical feature's values never seen)."
    ),
    kinds={"polars", "parquet"},
    owners=OWNERS,
    pool=WRITER_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            "training_data_gate",
            asset=TRAINING_SET,
            blocking=True,
            description="Training data may be used: enough clean days and labels, contract kept, no severe drift.",
        )
    ],
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    lakehouse: LakehouseResource,
    models: ModelRegistryResource,
) -> dg.MaterializeResult:
    lake = lakehouse.lake()
    window = _training_window(context, config, lakehouse)
    train = featurestore.read_examples(lake, window.train_days)
    holdout = featurestore.read_examples(lake, window.holdout_days)
    train = train if train.height else pl.DataFrame(schema=features.EXAMPLE_SCHEMA)
    fingerprint = frame_fingerprint(train) if train.height else "empty"
    champion = models.registry().champion()
    previous = featurestore.read_training_set(lake, champion.data_fingerprint, "train") if champion else None
    contract = check_contract(train, model=featurestore.training_contract(), id_column="example_id")
    gate = _gate(window, train, contract, previous)
    if train.height:
        featurestore.write_training_set(lake, fingerprint, train, holdout)
        _record_training_set(lakehouse, fingerprint, window.train_days, window.holdout_days, train, holdout, context)
    context.log.info(f"training window {window.to_dict()}; gate {'passed' if gate.passed else gate.reasons}")
    return dg.MaterializeResult(
        metadata=_training_set_metadata(train, holdout, fingerprint, window),
        check_results=[_gate_check(gate, window, contract)],
    )


def _training_set_metadata(
    train: pl.DataFrame, holdout: pl.DataFrame, fingerprint: str, window: TrainingWindow
) -> dict[str, Any]:
    return {
        "dagster/row_count": train.height,
        "holdout_rows": holdout.height,
        "fingerprint": fingerprint,
        "label_rate": dg.MetadataValue.float(float(train["label"].mean() or 0.0) if train.height else 0.0),
        "window": dg.MetadataValue.json(window.to_dict()),
        "window_rule": window.rule,
        "now_days": dg.MetadataValue.json([str(d) for d in window.now_days]),
    }


def _training_window(
    context: dg.AssetExecutionContext, config: TrainingSetConfig, lakehouse: LakehouseResource
) -> TrainingWindow:
    """The window lib/retraining chooses among the labelled days, without corrupt or suspect days, from the
    drift onset the run was triggered by (its tag) when there is one."""
    labelled = _labelled_days(lakehouse)
    with lakehouse.connect() as con:
        corruption = _day_corruption(con)
        suspect = suspects.suspect_days(con, labelled[0], labelled[-1] + dt.timedelta(days=1)) if labelled else {}
    return choose_training_window(
        labelled,
        train_days=config.train_days,
        holdout_days=config.holdout_days,
        day_corruption=corruption,
        max_corruption=config.max_corruption,
        suspect_days=suspect,
        onset=_onset(context),
    )


def _gate(
    window: TrainingWindow, train: pl.DataFrame, contract: ContractReport, previous: pl.DataFrame | None
) -> GateResult:
    sample = train.sample(n=min(train.height, 50_000), seed=0)
    return training_gate(
        window=window,
        rows=train.height,
        positives=int(train["label"].sum()) if train.height else 0,
        contract_failures=contract.failing_rows if train.height else 0,
        severe_drift=severe_drift(
            sample, previous if previous is not None else pl.DataFrame(), features.FEATURE_COLUMNS
        ),
        min_train_days=MIN_TRAIN_DAYS,
        min_rows=MIN_ROWS,
        min_positives=MIN_POSITIVES,
    )


def _gate_check(gate: GateResult, window: TrainingWindow, contract: ContractReport) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="training_data_gate",
        passed=gate.passed,
        metadata={
            "reasons": "; ".join(gate.reasons) or "none",
            "excluded_days": dg.MetadataValue.json(window.excluded_days),
            "train_days": len(window.train_days),
            "contract_failures": dg.MetadataValue.md(markdown_table(contract.reasons)),
        },
    )


def _load_sets(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> tuple[str, pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """The latest training set: fingerprint, train (with its `weight` per row), holdout, and its window
    (`lib.retraining.TrainingWindow.to_dict`, with `now_days`: the holdout's days of the current regime)."""
    event = context.instance.get_latest_materialization_event(TRAINING_SET)
    if event is None or event.asset_materialization is None:
        raise dg.Failure("ml/training_set has not been materialized")
    metadata = event.asset_materialization.metadata
    fingerprint = metadata["fingerprint"].value
    lake = lakehouse.lake()
    train, holdout = (featurestore.read_training_set(lake, str(fingerprint), part) for part in ("train", "holdout"))
    if train is None or holdout is None:
        raise dg.Failure(f"the training set snapshot {fingerprint} is missing from the lake ({lake.describe()})")
    window = metadata["window"].value if "window" in metadata else {}
    weights = {str(day): float(w) for day, w in (window.get("weights") or {}).items()}
    train = train.with_columns(
        pl.col("event_date")
        .cast(pl.String)
        .replace_strict(weights, default=1.0, return_dtype=pl.Float64)
        .alias("weight")
    )
    now_days = metadata["now_days"].value if "now_days" in metadata else []
    return str(fingerprint), train, holdout, {**window, "now_days": now_days}


def _more_of_the_regime(window: dict[str, Any], champion: ModelCard) -> bool:
    """Whether the challenger's window holds REGIME_FOLLOW_UP_DAYS or more days of the current regime (from
    the window's drift onset) than the champion's training window did."""
    if not window.get("onset"):
        return False
    onset = dt.date.fromisoformat(window["onset"])
    ours = sum(dt.date.fromisoformat(d) >= onset for d in window.get("train_days", []))
    start, end = (dt.date.fromisoformat(str(champion.training_window[k])) for k in ("start", "end"))
    theirs = max(0, (end - max(start, onset)).days + 1)
    return ours - theirs >= REGIME_FOLLOW_UP_DAYS


def _onset(context: dg.AssetExecutionContext) -> dt.date | None:
    """The drift onset the run was triggered by (its tag), if any."""
    onset = context.run.tags.get(ONSET_TAG)
    return dt.date.fromisoformat(onset) if onset else None


def _recent_retrains(con: Any) -> pl.DataFrame:
    """What the last retrains cost and gained (the challenger's AUC over the champion's on the same holdout)."""
    return con.sql(
        "SELECT decided_at, challenger, promoted, trigger, round(auc_gain, 4) AS auc_gain, "
        "round(training_seconds, 1) AS training_seconds, training_rows FROM model_decisions "
        "ORDER BY decided_at DESC LIMIT ?",
        params=[RECENT_RETRAINS],
    ).pl()


@dg.asset(
    key=CHALLENGER,
    deps=[TRAINING_SET],
    group_name="ml",
    description=(
        "Trains a challenger (scikit-learn HistGradientBoosting in a pipeline, calibrated; after a drift the days "
        "before its onset weigh less, or only the new regime trains) on the gated training set, registers it "
        "(artifact sha256, training window, data fingerprint, features and their permutation importance, params, "
        "metrics) and compares it with the champion on the same holdout: AUC and recall@10 with a paired "
        "bootstrap, precision and recall at thresholds re-tuned on the holdout (lib/promotion.py). Each retrain's "
        "cost (seconds, rows) and gain (AUC over the champion) are in table `model_decisions` and plotted here."
    ),
    kinds=ML_KINDS,
    owners=OWNERS,
    pool=WRITER_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            "beats_champion",
            asset=CHALLENGER,
            blocking=True,
            description="The challenger is not worse than the champion within the uncertainty (paired bootstrap of "
            "the AUC and recall@10 gains; F1 at re-tuned thresholds) and better on the holdout days of the current "
            "regime; only then does ml/champion_model promote it. Not better: WARN, the champion stays and the run "
            "succeeds (a normal outcome). A challenger that cannot be evaluated (no AUC on the holdout): ERROR, "
            "which blocks ml/champion_model.",
        )
    ],
)
def challenger_model(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, models: ModelRegistryResource
) -> dg.MaterializeResult:
    fingerprint, train, holdout, window = _load_sets(context, lakehouse)
    registry = models.registry()
    started = time.perf_counter()
    trained = _train(train)
    scored = evaluate(trained, holdout)
    importance = permutation_importance(trained, holdout)
    seconds = time.perf_counter() - started
    with lakehouse.connect() as con:
        champion = _defended_champion(context, registry.champion(), retraction.tainted_versions(con))
    decision = _judge_challenger(registry, champion, trained, scored, holdout, window)
    days = sorted(train["event_date"].unique().to_list())
    card = registry.register(
        trained,
        training_window=(days[0], days[-1]),
        fingerprint=fingerprint,
        metrics={"holdout": scored.to_dict(), "feature_importance": importance},
        notes=decision.reason,
    )
    retrain = Retrain(card, champion, decision, scored, importance, seconds, trained.training_rows)
    with lakehouse.connect() as con:
        recent = _record_decision(con, context, retrain)
    trained_on = featurestore.example_days(lakehouse.lake())[-1]
    return dg.MaterializeResult(
        metadata=_challenger_metadata(retrain, recent, trained_on), check_results=[_challenger_check(retrain)]
    )


def _train(train: pl.DataFrame) -> TrainedModel:
    return train_model(
        train,
        feature_columns=features.FEATURE_COLUMNS,
        categorical_columns=features.CATEGORICAL_FEATURES,
        # One thread: other runs share the 2 cores, and the booster's spinning workers then fight
        # each other (measured: 1M rows in 12 s on one thread, 80-105 s on two under load).
        n_threads=1,
        weight="weight",
    )


@dataclasses.dataclass(frozen=True)
class Retrain:
    """A trained challenger, registered, and the decision on it."""

    card: ModelCard
    champion: ModelCard | None  # the champion it was judged against (None: none, or not defended)
    decision: promotion.Decision
    metrics: Metrics  # on the holdout days
    importance: dict[str, float]
    seconds: float  # training, evaluation and importance
    training_rows: int

    @property
    def auc_gain(self) -> float | None:
        return self.decision.comparison.auc_gain if self.decision.comparison else None


def _defended_champion(
    context: dg.AssetExecutionContext, champion: ModelCard | None, tainted: set[str]
) -> ModelCard | None:
    """The champion a challenger has to beat; a champion trained on retracted data is not defended."""
    if champion and champion.version in tainted:
        context.log.warning(f"champion {champion.version} was trained on retracted data: not defended")
        return None
    return champion


def _judge_challenger(
    registry: ModelRegistry,
    champion: ModelCard | None,
    trained: TrainedModel,
    scored: Metrics,
    holdout: pl.DataFrame,
    window: dict[str, Any],
) -> promotion.Decision:
    if champion is None:
        return promotion.judge_first(scored.auc)
    now_days = [dt.date.fromisoformat(d) for d in window["now_days"]]
    comparison = promotion.compare(registry.load(champion.version), trained, holdout, now_days=now_days)
    return promotion.judge(comparison, more_of_the_regime=_more_of_the_regime(window, champion))


def _record_decision(con: Any, context: dg.AssetExecutionContext, retrain: Retrain) -> pl.DataFrame:
    """Write the decision to table model_decisions; the recent retrains, this one included."""
    comparison, champion = retrain.decision.comparison, retrain.champion
    row = {
        "decided_at": dt.datetime.now(dt.UTC), "challenger": retrain.card.version,
        "champion": champion.version if champion else None, "promoted": retrain.decision.promote,
        "reason": retrain.decision.reason, "challenger_metrics": json.dumps(retrain.metrics.to_dict(), default=str),
        "champion_metrics": json.dumps(dataclasses.asdict(comparison.champion)) if comparison else None,
        "run_id": context.run.run_id, "trigger": context.run.tags.get(TRIGGER_TAG, "manual"),
        "onset": _onset(context), "auc_gain": retrain.auc_gain, "training_seconds": retrain.seconds,
        "training_rows": retrain.training_rows,
        "comparison": json.dumps(comparison.to_dict(), default=str) if comparison else None,
    }  # fmt: skip
    warehouse.replace_rows(con, tables.MODEL_DECISIONS, pl.DataFrame([row], schema=tables.MODEL_DECISIONS.columns))
    return _recent_retrains(con)


def _challenger_metadata(retrain: Retrain, recent: pl.DataFrame, trained_on: dt.date) -> dict[str, Any]:
    auc, gain = retrain.metrics.auc, retrain.auc_gain
    ranked = sorted(retrain.importance.items(), key=lambda kv: -kv[1])
    return {
        "version": retrain.card.version,
        "promote": retrain.decision.promote,
        "decision": retrain.decision.reason,
        "auc": dg.MetadataValue.float(float(auc) if auc is not None else float("nan")),
        # The accuracy a retrain bought, and what it cost: plotted across runs on this page.
        "auc_gain": dg.MetadataValue.float(float(gain) if gain is not None else float("nan")),
        "retrain_seconds": dg.MetadataValue.float(retrain.seconds),
        "training_rows": retrain.training_rows,
        "recent_retrains": dg.MetadataValue.md(markdown_table(recent)),
        "feature_importance": dg.MetadataValue.md(
            markdown_table(pl.DataFrame(ranked, schema=["feature", "importance"], orient="row"))
        ),
        "champion": retrain.champion.version if retrain.champion else "none",
        # Data time, not wall time: the latest day of examples when this model was trained. The
        # retraining cooldown counts days of data from here.
        "trained_on_day": str(trained_on),
    }


def _challenger_check(retrain: Retrain) -> dg.AssetCheckResult:
    auc, decision = retrain.metrics.auc, retrain.decision
    unusable = auc is None or not math.isfinite(auc)
    return dg.AssetCheckResult(
        check_name="beats_champion",
        passed=decision.promote,
        severity=dg.AssetCheckSeverity.ERROR if unusable else dg.AssetCheckSeverity.WARN,
        metadata={
            "decision": decision.reason,
            "challenger": retrain.card.version,
            "champion": retrain.champion.version if retrain.champion else "none",
            "comparison": dg.MetadataValue.json(decision.comparison.to_dict() if decision.comparison else {}),
        },
    )


@dg.asset(
    key=CHAMPION,
    deps=[CHALLENGER],
    group_name="ml",
    description=(
        "The production model. Materializes only when the challenger passed `beats_champion`, and then "
        "promotes it in the registry; otherwise the step succeeds without a materialization and the champion "
        "stays (the reason is in table `model_decisions`). Roll back with `python -m dataplatform.lib.registry "
        "rollback`."
    ),
    kinds=ML_KINDS,
    owners=OWNERS,
    output_required=False,
)
def champion_model(context: dg.AssetExecutionContext, models: ModelRegistryResource) -> Iterator[dg.MaterializeResult]:
    registry = models.registry()
    event = context.instance.get_latest_materialization_event(CHALLENGER)
    metadata = event.asset_materialization.metadata
    version = str(metadata["version"].value)
    if not metadata["promote"].value:
        context.log.info(f"keeping the champion: {metadata['decision'].value}")
        return
    card = registry.get_card(version)
    record = registry.promote(version, reason=card.notes or "beat the champion on the holdout")
    auc = card.metrics.get("holdout", {}).get("auc")
    yield dg.MaterializeResult(
        metadata={
            "promoted_because": dg.MetadataValue.text(str(metadata["decision"].value)),
            "trigger": context.run.tags.get(TRIGGER_TAG, "manual"),
            "version": version,
            "replaced": record.replaced or "none",
            "auc": dg.MetadataValue.float(float(auc) if auc is not None else float("nan")),
            "training_window": dg.MetadataValue.json(card.training_window),  # read by drift_retraining_sensor
            "recent_retrains": metadata["recent_retrains"],
            "how_good_now": dg.MetadataValue.text("daily realized and expected AUC: monitoring/model_performance"),
        }
    )
