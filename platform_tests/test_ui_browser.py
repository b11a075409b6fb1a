"""The Dagster UI, for real: `dagster dev` on demo data, asked over GraphQL and looked at in headless Chromium.

One module-scoped server: eight days of demo history materialized (`dataplatform.materialize`: enough labelled days
for a first champion), two landing files left for the running daemon, then `dagster dev -w workspace.yaml`
(webserver + daemon). The expected groups,
assets, checks and sensors come from the Definitions object, so the test follows the platform as it grows.
Screenshots (and the DOM text they were checked against) are kept in test-artifacts/ui/, overwritten each run.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataplatform.definitions import defs
from factories import event, jsonl_bytes, write_landing
from servers import (
    CHROMIUM,
    REPO,
    DagsterDev,
    Page,
    chromium_page,
    dagster_dev,
    platform_env,
    wait_until,
    write_instance_config,
)

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts" / "ui"
DAYS = 8
LANDING_JOB = "ingest_landing_job"
LANDING_SENSOR = "landing_files_sensor"
INGEST_TIMEOUT_SECONDS = 120.0
PREPARE_TIMEOUT_SECONDS = 900.0
# Two files of a demo day, each with three valid events and one record the contract quarantines.
DAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
LANDING_FILES = {
    f"ui-{k}.jsonl": jsonl_bytes(
        [event(1000 * k + i, event_id=f"ui-{k}-{i}", timestamp=f"{DAY}T1{k}:0{i}:00Z") for i in range(3)]
        + [event(1000 * k + 9, event_id=f"ui-{k}-bad", event_type="teleport")]
    )
    for k in (1, 2)
}

ASSETS_QUERY = """
{ assetNodes {
    assetKey { path } groupName description kinds
    assetChecksOrError { __typename ... on AssetChecks { checks { name description blocking } } }
} }
"""
AUTOMATION_QUERY = """
{ repositoriesOrError { __typename ... on RepositoryConnection { nodes {
    name location { name }
    sensors { name sensorState { status } }
    schedules { name scheduleState { status } }
} } } }
"""
RUNS_QUERY = """
query Runs($job: String!) {
  runsOrError(filter: { pipelineName: $job }, limit: 50) {
    __typename ... on Runs { results { runId status tags { key value } } }
  }
}
"""
LANDING_MATERIALIZATIONS_QUERY = """
{ assetOrError(assetKey: { path: ["ingestion", "landing_events"] }) { __typename ... on Asset {
    assetMaterializations(limit: 20) { runId metadataEntries { label ... on IntMetadataEntry { intValue } } }
} } }
"""


@dataclass(frozen=True)
class Expected:
    """What the Definitions object says the UI must show."""

    groups: set[str]
    assets: set[str]  # "a/b" keys
    checks: dict[str, set[str]]  # asset key -> check names
    sensors: set[str]
    schedules: set[str]


@dataclass
class Ui:
    server: DagsterDev
    env: dict[str, str]
    tmp: Path


@pytest.fixture(scope="module")
def expected() -> Expected:
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys())
    return Expected(
        groups={graph.get(k).group_name for k in keys},
        assets={k.to_user_string() for k in keys},
        checks={k.to_user_string(): {c.name for c in graph.get_check_keys_for_assets([k])} for k in keys},
        sensors={s.name for s in definitions.sensors or []},
        schedules={s.name for s in definitions.schedules or []},
    )


def _run(argv: list[str], env: dict[str, str], cwd: Path, what: str) -> None:
    started = time.monotonic()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=PREPARE_TIMEOUT_SECONDS)
    stdout = result.stdout.decode(errors="replace")
    assert result.returncode == 0, (
        f"{what} exited with {result.returncode}:\n{(stdout + result.stderr.decode(errors='replace'))[-4000:]}"
    )
    print(f"{what}: exit {result.returncode}, {time.monotonic() - started:.1f} s\n{stdout}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    tmp = tmp_path_factory.mktemp("ui")
    dagster_home, data_dir = tmp / "dagster_home", tmp / "data"
    write_instance_config(dagster_home)
    env = platform_env(dagster_home, data_dir, tmp / "home", DP_SENSOR_INTERVAL_SECONDS="1", DP_SETTLE_SECONDS="0")
    start = (datetime.now(UTC) - timedelta(days=DAYS)).date().isoformat()
    history = ["history", "--out", str(data_dir / "history"), "--days", str(DAYS), "--start", start]
    history += ["--users", "300", "--events-per-day", "1500", "--seed", "1", "--quiet"]
    _run([sys.executable, "-m", "dataplatform.lib.demo", *history], env, tmp, "demo history")
    materialize = [sys.executable, "-m", "dataplatform.materialize"]
    _run(materialize, env, tmp, "materialize (headless)")
    for name, data in LANDING_FILES.items():  # left for the daemon's landing_files_sensor
        write_landing(data_dir / "landing", name, data)
    started = time.monotonic()
    with dagster_dev(env, cwd=tmp, log_path=tmp / "dagster-dev.log") as server:
        print(f"dagster dev answering on {server.url} after {time.monotonic() - started:.1f} s")
        yield Ui(server, env, tmp)


def _landing_runs(server: DagsterDev) -> list[dict]:
    answer = server.graphql(RUNS_QUERY, {"job": LANDING_JOB})["runsOrError"]
    assert answer["__typename"] == "Runs", answer
    return answer["results"]


def test_graphql_shows_every_asset_with_group_description_and_checks(ui: Ui, expected: Expected) -> None:
    nodes = wait_until("the code location's assets", lambda: ui.server.graphql(ASSETS_QUERY)["assetNodes"], 60.0)
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert set(by_key) == expected.assets
    for key, node in by_key.items():
        assert node["groupName"] and node["groupName"] != "default", f"{key} has no group"
        assert (node["description"] or "").strip(), f"{key} has no description"
        checks = node["assetChecksOrError"]
        assert checks["__typename"] == "AssetChecks", checks
        assert {c["name"] for c in checks["checks"]} == expected.checks[key], key
        for check in checks["checks"]:
            assert (check["description"] or "").strip(), f"check {key}:{check['name']} has no description"
    assert {n["groupName"] for n in nodes} == expected.groups
    all_checks = {c["name"] for n in nodes for c in n["assetChecksOrError"]["checks"]}
    assert {"batch_reconciles", "schema_conforms"} <= all_checks
    blocking = {c["name"] for n in nodes for c in n["assetChecksOrError"]["checks"] if c["blocking"]}
    assert {"batch_reconciles", "schema_conforms"} <= blocking


def test_landing_sensor_runs_and_the_daemon_ingests_dropped_files(ui: Ui, expected: Expected) -> None:
    answer = ui.server.graphql(AUTOMATION_QUERY)["repositoriesOrError"]
    assert answer["__typename"] == "RepositoryConnection", answer
    sensors = {s["name"]: s["sensorState"]["status"] for r in answer["nodes"] for s in r["sensors"]}
    schedules = {s["name"]: s["scheduleState"]["status"] for r in answer["nodes"] for s in r["schedules"]}
    assert expected.sensors <= sensors.keys()
    assert expected.schedules <= schedules.keys()
    assert sensors[LANDING_SENSOR] == "RUNNING"

    def landing_files_ingested() -> bool:
        runs = _landing_runs(ui.server)
        failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        assert not failed, f"{LANDING_JOB} runs failed: {failed}\n{ui.server.log_tail()}"
        if not runs or any(r["status"] != "SUCCESS" for r in runs):
            return False
        entries = ui.server.graphql(LANDING_MATERIALIZATIONS_QUERY)["assetOrError"]["assetMaterializations"]
        succeeded = {r["runId"] for r in runs}
        files = [
            e.get("intValue")
            for m in entries
            if m["runId"] in succeeded
            for e in m["metadataEntries"]
            if e["label"] == "files"
        ]
        return sum(f or 0 for f in files) == len(LANDING_FILES)

    started = time.monotonic()
    try:
        wait_until(
            f"{len(LANDING_FILES)} landing files ingested by {LANDING_JOB}",
            landing_files_ingested,
            INGEST_TIMEOUT_SECONDS,
            ui.server.process,
            interval=1.0,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- dagster dev output ---\n{ui.server.log_tail()}") from None
    runs = _landing_runs(ui.server)
    assert all(any(t["key"] == "dagster/sensor_name" and t["value"] == LANDING_SENSOR for t in r["tags"]) for r in runs)
    print(f"landing files ingested {time.monotonic() - started:.1f} s after the server answered ({len(runs)} run(s))")


def _capture(ui: Ui, name: str, path: str, wanted: set[str], attempts: int = 3) -> tuple[Page, set[str]]:
    """Load the page until every expected text is in its DOM (the SPA may still be fetching: bounded retries)."""
    for attempt in range(1, attempts + 1):
        profile = ui.tmp / f"chromium-{name}-{attempt}"
        page = chromium_page(f"{ui.server.url}/{path}", ARTIFACTS / f"{name}.png", profile, ui.env)
        (ARTIFACTS / f"{name}.txt").write_text(page.text + "\n")
        missing = {w for w in wanted if w not in page.text}
        if not missing:
            break
    return page, missing


def test_ui_pages_render_in_headless_chromium(ui: Ui, expected: Expected, capsys: pytest.CaptureFixture[str]) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `./dp test` installs Debian's chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    asset = max(sorted(expected.checks), key=lambda k: len(expected.checks[k]))  # the asset with the most checks
    pages = {
        # Global asset lineage: one box per group (collapsed), plus the group list on the left.
        "asset-graph": ("asset-groups", expected.groups),
        # The asset's Checks tab: every check by name, with its latest result.
        "asset-checks": (f"assets/{asset}?view=checks", expected.checks[asset] | {"Succeeded"}),
        # Automation: sensors and schedules of the code location, with their on/off state.
        "automation": ("automation", expected.sensors | expected.schedules | {LANDING_SENSOR}),
    }
    problems = []
    for name, (path, wanted) in pages.items():
        started = time.monotonic()
        page, missing = _capture(ui, name, path, wanted)
        with capsys.disabled():
            print(f"\n[ui screenshot] {page.screenshot} ({page.url}, {time.monotonic() - started:.1f} s)", end="")
        if missing:
            problems.append(f"{page.url}: not in the rendered page: {sorted(missing)} (text: {page.text[:800]!r})")
    with capsys.disabled():
        print()
    assert not problems, "\n".join(problems)


LATEST_QUERY = """
query Latest($path: [String!]!) { assetOrError(assetKey: { path: $path }) { __typename ... on Asset {
  assetMaterializations(limit: 1) { partition metadataEntries { label
    ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
    ... on MarkdownMetadataEntry { mdStr } ... on BoolMetadataEntry { boolValue }
  } }
} } }
"""
# An analyst's four morning questions, each answered by one asset's latest materialization: the Catalog, a
# click on the asset (its page shows the latest materialization), at most a second click on its Events tab.
QUESTIONS = {
    "today": ("warehouse/today", "How many events landed today, how many were quarantined, and why?"),
    "yesterday": ("monitoring/daily_health", "Did yesterday's data pass its checks?"),
    "drift": ("monitoring/drift_report", "Is there drift, in which features, since when?"),
    "model": ("monitoring/model_performance", "How good is the champion, when was it promoted, and why?"),
}


def _latest(ui: Ui, key: str) -> tuple[str | None, dict[str, object]]:
    answer = ui.server.graphql(LATEST_QUERY, {"path": key.split("/")})["assetOrError"]
    assert answer["__typename"] == "Asset", answer
    [latest] = answer["assetMaterializations"] or [{"partition": None, "metadataEntries": []}]
    values = {e["label"]: next((v for k, v in e.items() if k != "label"), None) for e in latest["metadataEntries"]}
    return latest["partition"], values


def test_an_analyst_answers_the_four_questions_in_two_clicks(ui: Ui, capsys: pytest.CaptureFixture[str]) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()

    def today_counts_the_landed_files() -> bool:  # refreshed by the automation sensor after the daemon's batches
        return _latest(ui, QUESTIONS["today"][0])[1].get("quarantined_so_far") == len(LANDING_FILES)

    wait_until("warehouse/today refreshed after the landing files", today_counts_the_landed_files, 300.0, interval=5.0)
    _, today = _latest(ui, "warehouse/today")
    assert str(today["summary"]).startswith(f"{today['events_so_far']:,} events so far, 2 quarantined")
    assert "event_type" in str(today["quarantine_reasons"])

    day, health = _latest(ui, "monitoring/daily_health")
    assert day == yesterday and health["checks error"] == 0
    assert "warehouse/events" in str(health["checks"]) and str(health["verdict"])

    day, drift = _latest(ui, "monitoring/drift_report")
    assert day == yesterday, "every drift report judges the champion: the bootstrap builds them after it"
    assert str(drift["verdict"]).startswith(str(drift["decision"])) and drift["drift_since"]

    day, model = _latest(ui, "monitoring/model_performance")
    assert day == yesterday and str(model["champion_story"]).startswith("champion ")
    assert "promoted" in str(model["champion_story"]) and "base64," in str(model["auc_over_time"])

    wanted = {
        "today": {"events_so_far", "quarantined_so_far", "quarantine_reasons"},
        "yesterday": {"verdict", "checks"},
        "drift": {"verdict", "drift_since"},
        "model": {"champion_story", "auc_over_time"},
    }
    problems = []
    for name, (key, question) in QUESTIONS.items():
        page, missing = _capture(ui, f"question-{name}", f"assets/{key}?view=events", wanted[name])
        with capsys.disabled():
            print(f"\n[ui screenshot] {question} {page.screenshot} ({page.url})", end="")
        if missing:
            problems.append(f"{question} {page.url}: not in the page: {sorted(missing)} ({page.text[:600]!r})")
    assert not problems, "\n".join(problems)
