"""The retraining loop over 14 weeks of simulated days, through the platform's real Dagster assets.

Each simulated day does what the schedules and sensors do in production: certify the day and
build its examples, report its drift against the champion's training data, measure the
champion on the day whose labels just matured, and ask the drift sensor whether to retrain
(running the retrain job when it says so). Two references are scored on the same days: a fixed
model (the first champion, never replaced) and a model retrained every day on the same window rule
and always used (the upper reference a loop is measured against, at a retrain a day).

Three streams from one generated world: `drift` (a gradual mixed drift from day 56: prices,
category mix, sessions and the purchase relation), `concept` (from day 56 only the purchase
relation changes, over a week: the features' distributions stay) and `control` (stationary).

Run standalone to regenerate the figures and the chart:
    PYTHONPATH=platform python platform_tests/scenario_loop.py --out test-artifacts/scenario
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg

from dataplatform.defs.features.assets import training_examples
from dataplatform.defs.ingestion.assets import history_events
from dataplatform.defs.ml.assets import challenger_model, champion_model, training_set
from dataplatform.defs.ml.sensors import drift_retraining_sensor
from dataplatform.defs.monitoring.assets import drift_report, model_performance
from dataplatform.defs.quality.assets import event_distributions, warehouse_events
from dataplatform.defs.quality.plausibility import event_plausibility
from dataplatform.lib import features, featurestore
from dataplatform.lib.demo import DemoConfig, generate_events, write_history
from dataplatform.lib.retraining import choose_training_window
from dataplatform.lib.training import TrainedModel, evaluate, train_model
from factories import local_resources

START = dt.date(2026, 1, 5)  # a Monday
DAYS = 98  # 14 weeks
FIRST_TRAINING_DAY = 44  # after the 28-day feature windows have filled up
DRIFT_START_DAY = 56
RETRAIN = [training_set, challenger_model, champion_model]
# What the nightly schedules build each day; with the quality tiers on, a gradual drift must still train.
DAILY = [warehouse_events, event_plausibility, event_distributions, training_examples]
SCENARIO_TIMEOUT_SECONDS = 60 * 60
# The generator's options of each stream (its drift starts at DRIFT_START_DAY).
STREAMS: dict[str, dict[str, object]] = {
    "drift": {"drift_kind": "mixed", "drift_strength": 1.0, "drift_ramp_days": 14},
    "concept": {"drift_kind": "concept", "drift_strength": 1.0, "drift_ramp_days": 7},
    "control": {},
}


@dataclass
class ScenarioResult:
    stream: str
    days: list[str] = field(default_factory=list)
    auc_loop: dict[str, float] = field(default_factory=dict)  # champion of the day, by labelled day
    auc_fixed: dict[str, float] = field(default_factory=dict)  # the first model, never replaced
    auc_every_day: dict[str, float] = field(default_factory=dict)  # retrained every day, always used
    every_day_retrains: int = 0
    drift_days: list[str] = field(default_factory=list)  # days whose report found material drift
    retrain_requests: list[dict] = field(default_factory=list)  # day, rule, reason, promoted
    seconds: float = 0.0


def materialize_or_fail(
    assets: list, resources: dict, instance: dg.DagsterInstance, **kwargs: object
) -> dg.ExecuteInProcessResult:
    """Materialize; a failed run fails the scenario, with its steps' errors: figures computed past a
    failed day would describe a loop that did not run. The errors travel as the text of a RuntimeError,
    which crosses the worker process boundary intact whatever the original exception was."""
    result = dg.materialize(assets, resources=resources, instance=instance, raise_on_error=False, **kwargs)
    if not result.success:
        errors = [
            f"{event.step_key}: {event.step_failure_data.error.to_string()}"
            for event in result.get_step_failure_events()
            if event.step_failure_data.error
        ]
        tags = {k: v for k, v in kwargs.items() if k in ("partition_key", "tags")}
        raise RuntimeError(f"run {result.run_id} ({tags}) failed:\n" + ("\n".join(errors) or "no step error recorded"))
    return result


def train_every_day_model(resources: dict) -> TrainedModel:
    """The upper reference: a model trained on today's window (the platform's rule, no gate) and used."""
    lake = resources["lakehouse"].lake()
    days = featurestore.example_days(lake)
    latest = featurestore.read_examples(lake, days[-1:])["example_time"].max()
    window = choose_training_window(
        features.labelled_days(latest, days), train_days=14, holdout_days=2, day_corruption={}, max_corruption=1.0
    )
    train = featurestore.read_examples(lake, window.train_days)
    return train_model(
        train, feature_columns=features.FEATURE_COLUMNS, categorical_columns=features.CATEGORICAL_FEATURES, n_threads=1
    )


def run_scenario(
    root: Path, *, stream: str, days: int = DAYS, events_per_day: int = 1500, users: int = 500
) -> ScenarioResult:
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    options = dict(STREAMS[stream])
    if options:
        options["drift_start"] = START + dt.timedelta(DRIFT_START_DAY)
    config = DemoConfig(start=START, days=days, users=users, events_per_day=events_per_day, seed=21, **options)
    frame, _ = generate_events(config)
    write_history(frame, root / "history", fmt="parquet")
    resources = local_resources(root)
    result = ScenarioResult(stream=stream)
    fixed_version = None
    every_day_model: TrainedModel | None = None  # trained at the end of the day before
    with dg.instance_for_test() as instance:
        last = str(START + dt.timedelta(days - 1))
        materialize_or_fail([history_events], resources, instance, tags={
            "dagster/asset_partition_range_start": str(START), "dagster/asset_partition_range_end": last,
        })  # fmt: skip
        for i in range(days):
            day = START + dt.timedelta(i)
            result.days.append(str(day))
            materialize_or_fail(DAILY, resources, instance, partition_key=str(day))
            if i == FIRST_TRAINING_DAY:
                materialize_or_fail(RETRAIN, resources, instance)
                fixed_version = resources["models"].registry().champion().version
            if fixed_version is None:
                continue
            report = materialize_or_fail([drift_report], resources, instance, partition_key=str(day))
            metadata = report.asset_materializations_for_node(drift_report.op.name)[0].metadata
            if metadata.get("decision") and metadata["decision"].value == "drift":
                result.drift_days.append(str(day))
            labelled = str(day - dt.timedelta(2))
            perf = materialize_or_fail([model_performance], resources, instance, partition_key=labelled)
            perf_meta = perf.asset_materializations_for_node(model_performance.op.name)[0].metadata
            if "auc" in perf_meta:
                result.auc_loop[labelled] = perf_meta["auc"].value
                fixed = resources["models"].registry().load(fixed_version)
                examples = featurestore.read_examples(resources["lakehouse"].lake(), [labelled])
                result.auc_fixed[labelled] = evaluate(fixed, examples, bootstrap=0).auc
                if every_day_model is not None:
                    result.auc_every_day[labelled] = evaluate(every_day_model, examples, bootstrap=0).auc
            every_day_model = train_every_day_model(resources)
            result.every_day_retrains += 1
            with dg.build_sensor_context(
                instance=instance, resources={k: resources[k] for k in ("alerts", "retraining")}
            ) as context:
                tick = drift_retraining_sensor(context)
            for request in tick.run_requests:
                run = materialize_or_fail(
                    RETRAIN, resources, instance, tags={**request.tags, "dagster/run_key": request.run_key}
                )
                result.retrain_requests.append(
                    {
                        "day": str(day),
                        "rule": request.tags["dataplatform/trigger"],
                        "reason": request.tags["dataplatform/reason"],
                        "features": request.tags["dataplatform/features"],
                        "promoted": bool(run.asset_materializations_for_node(champion_model.op.name)),
                    }
                )
    result.seconds = time.perf_counter() - started
    return result


def run_streams(root: Path, streams: tuple[str, ...] = tuple(STREAMS)) -> dict[str, ScenarioResult]:
    """Each stream in its own process, two at a time (one per core).

    Spawned, not forked: forked workers inherit the parent's threads and locks (pytest's,
    Dagster's), and under pytest in CI they died silently and left the parent waiting. One shared
    deadline turns any hang into a failure: the workers are terminated, not waited for."""
    pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
    try:
        arms = {stream: pool.submit(run_scenario, root / stream, stream=stream) for stream in streams}
        _, late = wait(arms.values(), timeout=SCENARIO_TIMEOUT_SECONDS)
        if late:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            raise TimeoutError(f"the scenario did not finish within {SCENARIO_TIMEOUT_SECONDS} s")
        return {stream: arm.result() for stream, arm in arms.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


TITLES = {
    "drift": "gradual mixed drift from day 56",
    "concept": "concept drift from day 56 (the purchase relation only)",
    "control": "stationary control",
}


def plot(results: dict[str, ScenarioResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(results), 1, figsize=(11, 3.3 * len(results)), sharex=True, squeeze=False)
    onset = START + dt.timedelta(DRIFT_START_DAY)
    for ax, (stream, result) in zip(axes[:, 0], results.items(), strict=True):
        for series, label, style in (
            (result.auc_loop, "with the retraining loop", "-"),
            (result.auc_every_day, "retrained every day", ":"),
            (result.auc_fixed, "fixed model", "--"),
        ):
            days = sorted(series)
            ax.plot([dt.date.fromisoformat(d) for d in days], [series[d] for d in days], style, label=label)
        for request in result.retrain_requests:
            ax.axvline(
                dt.date.fromisoformat(request["day"]), color="red" if request["promoted"] else "orange", alpha=0.6
            )
        if STREAMS[stream]:
            ax.axvspan(onset, START + dt.timedelta(DAYS), color="grey", alpha=0.1)
        ax.set_title(
            f"AUC per labelled day: {TITLES.get(stream, stream)} (red: retrained and promoted, orange: not promoted)",
            fontsize=9,
        )
        ax.set_ylabel("AUC")
        ax.legend(fontsize=8, loc="lower left")
    axes[-1, 0].set_xlabel("labelled day")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _mean(series: dict[str, float], days: list[str]) -> float | None:
    values = [series[d] for d in days if series.get(d) is not None]
    return round(sum(values) / len(values), 4) if values else None


def stream_summary(result: ScenarioResult) -> dict:
    """The figures the loop is judged by: AUC over the last 14 labelled days against the fixed model and
    the every-day arm, retrains against the every-day arm's, and days from the onset to the first
    retrain request and the first promotion."""
    onset = START + dt.timedelta(DRIFT_START_DAY)
    tail = sorted(result.auc_loop)[-14:]
    after = [r for r in result.retrain_requests if r["day"] >= str(onset)]
    first_request = after[0]["day"] if after else None
    first_promotion = next((r["day"] for r in after if r["promoted"]), None)

    def days_after_onset(day: str | None) -> int | None:
        return (dt.date.fromisoformat(day) - onset).days if day else None

    return {
        "retrains": len(result.retrain_requests),
        "promotions": sum(r["promoted"] for r in result.retrain_requests),
        "every_day_retrains": result.every_day_retrains,
        "auc_last_14_days_with_loop": _mean(result.auc_loop, tail),
        "auc_last_14_days_every_day": _mean(result.auc_every_day, tail),
        "auc_last_14_days_fixed_model": _mean(result.auc_fixed, tail),
        "days_from_onset_to_request": days_after_onset(first_request),
        "days_from_onset_to_promotion": days_after_onset(first_promotion),
        "requests_before_onset": len(result.retrain_requests) - len(after),
        "seconds": round(result.seconds),
    }


def summary(results: dict[str, ScenarioResult]) -> dict:
    return {
        "drift_onset": str(START + dt.timedelta(DRIFT_START_DAY)),
        **{stream: stream_summary(result) for stream, result in results.items()},
        "requests": {stream: result.retrain_requests for stream, result in results.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("test-artifacts/scenario"))
    parser.add_argument("--streams", default=",".join(STREAMS), help="comma-separated: " + ", ".join(STREAMS))
    args = parser.parse_args(argv)
    results = run_streams(args.out / "work", tuple(args.streams.split(",")))
    plot(results, args.out / "auc_over_time.png")
    figures = summary(results)
    (args.out / "figures.json").write_text(
        json.dumps({**figures, "results": {k: asdict(v) for k, v in results.items()}}, indent=1)
    )
    print(json.dumps({k: v for k, v in figures.items() if k != "requests"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
