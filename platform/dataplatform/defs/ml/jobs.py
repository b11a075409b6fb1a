"""The ML loop's jobs: retraining, and the nightly and labelled-day monitoring of the champion."""

import dagster as dg

from dataplatform.defs.common.conventions import daily_partitions
from dataplatform.defs.common.keys import (
    CHALLENGER,
    CHAMPION,
    DRIFT_REPORT,
    FEATURE_DISTRIBUTIONS,
    MODEL_PERFORMANCE,
    TRAINING_EXAMPLES,
    TRAINING_SET,
)

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=[TRAINING_SET, CHALLENGER, CHAMPION],
    description="Gate the training data, train and register a challenger, promote it only if it beats the champion.",
)
nightly_ml_job = dg.define_asset_job(
    "nightly_ml_job",
    selection=[TRAINING_EXAMPLES, FEATURE_DISTRIBUTIONS, DRIFT_REPORT, MODEL_PERFORMANCE],
    partitions_def=daily_partitions,
    description="A day's features, their distributions, its drift report and the champion's performance.",
)
labelled_performance_job = dg.define_asset_job(
    "labelled_performance_job",
    selection=[TRAINING_EXAMPLES, MODEL_PERFORMANCE],
    partitions_def=daily_partitions,
    description="Rebuild a day's examples once its labels matured, and measure the champion's realized performance.",
)
