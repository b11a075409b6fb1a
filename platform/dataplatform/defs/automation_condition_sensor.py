"""Declarative automation: assets with an `automation_condition` (eager followers) are evaluated here."""

import dagster as dg

# Dagster's implicit default sensor starts STOPPED; the platform runs unattended, so it is on.
automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Evaluates every asset's automation condition (e.g. distributions follow a re-certified day).",
)
