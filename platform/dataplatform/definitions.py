"""The platform's single Dagster entry point: everything under `dataplatform/defs/`."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(project_root=Path(__file__).resolve().parents[1])
