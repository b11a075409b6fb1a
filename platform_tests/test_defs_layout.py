"""The wiring's domains stay independent: a module under `defs/<domain>/` imports from its own domain,
`defs/common/` (keys, shared conventions, schedule helpers) and `defs/resources.py`, never from
another domain. A domain names another's asset by its key in `defs/common/keys.py`."""

import ast
import os
import subprocess
import sys
from pathlib import Path

DEFS = Path(__file__).resolve().parents[1] / "platform" / "dataplatform" / "defs"
SHARED = {"common", "resources"}


def _defs_imports(module: Path) -> set[str]:
    """The `dataplatform.defs.<part>` parts a module imports."""
    parts = set()
    for node in ast.walk(ast.parse(module.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        parts |= {name.split(".")[2] for name in names if name.startswith("dataplatform.defs.")}
    return parts


def test_no_domain_imports_another_domain() -> None:
    domains = [d for d in DEFS.iterdir() if d.is_dir() and d.name not in SHARED and d.name != "__pycache__"]
    assert {d.name for d in domains} >= {"ingestion", "quality", "features", "ml", "monitoring", "remediation"}
    crossings = {
        f"{module.relative_to(DEFS)} imports defs.{part}"
        for domain in domains
        for module in domain.glob("*.py")
        for part in _defs_imports(module) - SHARED - {domain.name}
    }
    assert not crossings, sorted(crossings)


def test_common_imports_no_domain() -> None:
    for module in (DEFS / "common").glob("*.py"):
        assert _defs_imports(module) <= {"common"}, module.name


def test_loading_the_code_location_imports_no_heavy_library() -> None:
    """Every run process loads the code location (an ingestion micro-batch too): scikit-learn, scipy and
    matplotlib, over two seconds of imports together, load only in the functions that use them."""
    script = (
        "import sys, dataplatform.definitions as d; d.defs(); "
        "print(' '.join(m for m in ('sklearn', 'scipy', 'matplotlib') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(DEFS.parents[1])}
    loaded = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == []
