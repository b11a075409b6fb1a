"""What users see in the UI, as a reviewed diff: the code location's assets, checks, jobs, sensors and
schedules against the committed snapshot `platform_tests/snapshots/definitions.json`.

A change to any of them fails this test until the snapshot is regenerated on purpose:
    DP_UPDATE_SNAPSHOT=1 ./dp test platform_tests/test_definitions_snapshot.py
and the JSON diff is reviewed with the change. Taken with the default settings (no DP_* variable
changes a sensor's interval in the test run).
"""

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from dataplatform.definitions import defs

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "definitions.json"


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> str | None:
    """The partitioning's kind and cadence; not its start, which follows the local history."""
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return f"time window, cron {partitions_def.cron_schedule!r}, format {partitions_def.fmt!r}"
    return type(partitions_def).__name__


def definitions_snapshot(definitions: dg.Definitions) -> dict[str, Any]:
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "materializable": node.is_materializable,
            "partitions": _partitions(node.partitions_def),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "pools": sorted(node.pools or []),
            "owners": sorted(node.owners),
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
        }
    checks = {}
    for assets_def in graph.assets_defs:
        for check_key in assets_def.check_keys:
            spec = assets_def.get_spec_for_check_key(check_key)
            checks[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = {"blocking": spec.blocking}
    sensors = {
        sensor.name: {
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "jobs": sorted(job.name for job in sensor.jobs) if sensor.has_jobs else [],
        }
        for sensor in definitions.sensors or []
    }
    schedules = {
        schedule.name: {
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "default_status": schedule.default_status.value,
            "job": schedule.job_name,
        }
        for schedule in definitions.schedules or []
    }
    jobs = sorted(job.name for job in definitions.jobs or [])
    return {
        "assets": assets,
        "checks": dict(sorted(checks.items())),
        "jobs": jobs,
        "sensors": dict(sorted(sensors.items())),
        "schedules": dict(sorted(schedules.items())),
        "resources": sorted(definitions.resources or {}),
    }


def test_the_definitions_match_the_committed_snapshot() -> None:
    current = definitions_snapshot(defs())
    if os.environ.get("DP_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1) + "\n")
    committed = json.loads(SNAPSHOT.read_text())
    for part in current:
        assert current[part] == committed.get(part), (
            f"the definitions' {part} changed: review, then DP_UPDATE_SNAPSHOT=1 ./dp test {Path(__file__).name}"
        )
