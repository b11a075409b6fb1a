"""Headless: materialize the platform's assets once on what is there, then exit (`./dp materialize`).

Runs go into the Dagster instance of $DAGSTER_HOME, so they show in the UI afterwards.
1. `history_events` over every day that has a folder in the history location (one run);
2. `landing_events`, batch after batch, until no file waits in the landing zone;
3. every other daily-partitioned asset, one run per day (dependency order inside the run);
4. every other unpartitioned asset (the ML loop: the first champion), once;
5. the daily monitoring assets (they judge the champion), one run per day.
Exits non-zero when any run or blocking check fails.
"""

import argparse
import re
import sys

import dagster as dg

from dataplatform.definitions import defs
from dataplatform.defs.common.keys import HISTORY_EVENTS, LANDING_EVENTS
from dataplatform.lib.landing import open_store

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
DAY_FOLDER = re.compile(r"^event_date=(\d{4}-\d{2}-\d{2})/")


def history_days(definitions: dg.Definitions) -> list[str]:
    history = definitions.resources["history"]
    store = open_store(history.uri, history.s3.get_client)
    listed = store.list_files(definitions.resources["ingestion"].max_listed_files)
    days = {m.group(1) for f in listed if (m := DAY_FOLDER.match(f.key))}
    return sorted(days)


def _run(definitions: dg.Definitions, selection: list[dg.AssetKey], instance: dg.DagsterInstance, **kwargs) -> bool:
    assets = list(definitions.assets or [])
    result = dg.materialize(
        assets, selection=selection, resources=definitions.resources, instance=instance, raise_on_error=False, **kwargs
    )
    return result.success


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-landing-batches", type=int, default=100, help="stop after this many landing batches")
    args = parser.parse_args(argv)

    definitions = defs()
    ok = True
    with dg.DagsterInstance.get() as instance:
        days = history_days(definitions)
        if days:
            print(f"history_events: {days[0]} .. {days[-1]} ({len(days)} days) in one run", flush=True)
            ok &= _run(definitions, [HISTORY_EVENTS], instance, tags={RANGE_START: days[0], RANGE_END: days[-1]})
        landing = definitions.resources["landing"]
        ledger = definitions.resources["lakehouse"].lake().ledger
        max_listed = definitions.resources["ingestion"].max_listed_files
        for _ in range(args.max_landing_batches):
            store = open_store(landing.uri, landing.s3.get_client)
            if not any(not ledger.has_file(f) for f in store.list_files(max_listed)):
                break
            print("landing_events: one micro-batch", flush=True)
            if not _run(definitions, [LANDING_EVENTS], instance):
                ok = False
                break
        graph = definitions.resolve_asset_graph()
        ingestion = {HISTORY_EVENTS, LANDING_EVENTS}
        keys = [k for k in graph.materializable_asset_keys if k not in ingestion]
        # Monitoring judges the champion, which the unpartitioned ML assets train: its days run last,
        # or every drift and performance report of a first start says "no champion model yet".
        monitoring = [k for k in keys if graph.get(k).partitions_def and graph.get(k).group_name == "monitoring"]
        daily = [k for k in keys if graph.get(k).partitions_def and k not in monitoring]
        others = [k for k in keys if not graph.get(k).partitions_def]
        for day in days if ok else []:
            print(f"daily assets for {day}: {', '.join(k.to_user_string() for k in daily)}", flush=True)
            ok &= _run(definitions, daily, instance, partition_key=day)
        daily_ok = ok
        if ok and others:
            print(f"unpartitioned assets: {', '.join(k.to_user_string() for k in others)}", flush=True)
            ok &= _run(definitions, others, instance)
        for day in days if daily_ok and monitoring else []:  # with or without a champion
            print(f"monitoring for {day}: {', '.join(k.to_user_string() for k in monitoring)}", flush=True)
            ok &= _run(definitions, monitoring, instance, partition_key=day)
    print("all runs succeeded" if ok else "a run failed: see the Dagster UI or the log above", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
