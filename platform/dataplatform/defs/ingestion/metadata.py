"""How ingestion results look in the Dagster UI: column schemas, numeric metadata, check results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from dataplatform.defs.common.conventions import EVENTS_TABLE
from dataplatform.lib.ingest import IngestReport


def report_metadata(reports: Sequence[IngestReport]) -> dict[str, Any]:
    """Numeric metadata (plotted over time by the UI) summed over the batches of one run."""
    rows_in = sum(r.rows_in for r in reports)
    quarantined = sum(r.rows_quarantined for r in reports)
    reasons: dict[str, int] = {}
    for report in reports:
        for reason, count in report.top_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    metadata: dict[str, Any] = {
        "batches": len(reports),
        "files": sum(len(r.files) for r in reports),
        "files_redelivered": sum(len(r.files_redelivered) for r in reports),
        "files_rejected": sum(r.files_rejected for r in reports),
        "rows_in": rows_in,
        "rows_valid": sum(r.rows_valid for r in reports),
        "rows_quarantined": quarantined,
        "rows_duplicate": sum(r.rows_duplicate for r in reports),
        "quarantine_rate_percent": dg.MetadataValue.float(round(100 * quarantined / rows_in, 2) if rows_in else 0.0),
        "seconds": dg.MetadataValue.float(round(sum(sum(r.seconds.values()) for r in reports), 3)),
        "event_dates": ", ".join(sorted({d for r in reports for d in r.event_dates})) or "none",
        "batch_ids": ", ".join(r.batch_id for r in reports) or "none",
        "dagster/row_count": sum(r.rows_valid for r in reports),
        "dagster/table_name": EVENTS_TABLE,
    }
    if reasons:
        metadata["quarantine_reasons"] = dg.MetadataValue.md(
            "| reason | records |\n| --- | --- |\n"
            + "\n".join(f"| `{reason}` | {count} |" for reason, count in sorted(reasons.items(), key=lambda x: -x[1]))
        )
    return metadata


def reconciliation_check(asset_key: dg.AssetKey, checks: Sequence[dict[str, Any]]) -> dg.AssetCheckResult:
    """Pass when every batch's rows in = valid + quarantined + duplicates, and the tables agree."""
    failing = [c for c in checks if not c["ok"]]
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="batch_reconciles",
        passed=not failing,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "batches_checked": len(checks),
            "batches_failing": len(failing),
            "rows_in": sum(c.get("rows_in", 0) for c in checks),
            **({"failing": dg.MetadataValue.json(failing[:20])} if failing else {}),
        },
    )


RECONCILE_DESCRIPTION = (
    "Each batch: rows in = valid + quarantined + duplicates, and the warehouse holds exactly the valid rows "
    "(events) and the quarantined ones (quarantine) for it. Blocking: a failure stops downstream work."
)


def reconcile_check_spec(asset: dg.AssetKey) -> dg.AssetCheckSpec:
    """The blocking check of an ingestion asset: its batches reconcile."""
    return dg.AssetCheckSpec("batch_reconciles", asset=asset, blocking=True, description=RECONCILE_DESCRIPTION)
