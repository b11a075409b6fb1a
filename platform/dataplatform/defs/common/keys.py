"""Every asset's key, in one place: a domain names another domain's asset by its key, never by
importing that domain's assets module."""

import dagster as dg

LANDING_EVENTS = dg.AssetKey(["ingestion", "landing_events"])
HISTORY_EVENTS = dg.AssetKey(["ingestion", "history_events"])
WAREHOUSE_EVENTS = dg.AssetKey(["warehouse", "events"])
TODAY = dg.AssetKey(["warehouse", "today"])
QUARANTINE = dg.AssetKey(["warehouse", "quarantine"])
EVENT_PLAUSIBILITY = dg.AssetKey(["quality", "event_plausibility"])
EVENT_DISTRIBUTIONS = dg.AssetKey(["quality", "event_distributions"])
TRAINING_EXAMPLES = dg.AssetKey(["features", "training_examples"])
FEATURE_DISTRIBUTIONS = dg.AssetKey(["features", "feature_distributions"])
TRAINING_SET = dg.AssetKey(["ml", "training_set"])
CHALLENGER = dg.AssetKey(["ml", "challenger_model"])
CHAMPION = dg.AssetKey(["ml", "champion_model"])
DRIFT_REPORT = dg.AssetKey(["monitoring", "drift_report"])
MODEL_PERFORMANCE = dg.AssetKey(["monitoring", "model_performance"])
BATCH_DRIFT = dg.AssetKey(["monitoring", "batch_drift"])
DAILY_HEALTH = dg.AssetKey(["monitoring", "daily_health"])
BLAST_RADIUS = dg.AssetKey(["remediation", "blast_radius"])
