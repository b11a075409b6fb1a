"""Freshness of the streaming path: has any landing batch been ingested recently?"""

import datetime as dt

import dagster as dg

from dataplatform.defs.ingestion.assets import landing_events

# The demo trickles a file every few seconds; in production set the bound to what the
# producers promise. WARN, because a quiet source is news, not necessarily an error.
landing_freshness_checks = dg.build_last_update_freshness_checks(
    assets=[landing_events], lower_bound_delta=dt.timedelta(minutes=30)
)

landing_freshness_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=landing_freshness_checks,
    name="landing_freshness_sensor",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
