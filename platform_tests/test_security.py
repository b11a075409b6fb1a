"""Security checks of the fast suite.

- SQL: nothing under platform/ builds a query from data. Every f-string that looks like SQL
  formats only expressions on an allow-list of code constants (read from the code: table names
  from constant tuples or from literals at every call site, window frames from literal column
  names and integer microseconds); no SQL is built with `%` or `str.format`; every query passed
  to `.sql()` / `.execute()` is a literal, a module constant, or such an f-string.
- Binding: the servers `./dp` starts listen on 127.0.0.1 only.
- Secrets: with AWS_SECRET_ACCESS_KEY and DP_ALERT_WEBHOOK_URL set to sentinels, an ingest run, a
  failing S3 run and both alert sensors leave neither value in any Dagster event log entry,
  run record, materialization metadata, file under the test's folder, or the Python log.
- Model artifacts: nothing under platform/ unpickles (pickle, joblib, np.load with allow_pickle, ...)
  except the registry's loader, and there the sha256 check and its raise come before the load. That
  a tampered artifact is refused before unpickling, locally and on S3, is tested in test_registry.py.
"""

import ast
import logging
import re
from pathlib import Path

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from dataplatform.defs.ingestion.assets import landing_events
from dataplatform.defs.monitoring.alerts import check_failure_alert, run_failure_alert
from dataplatform.lib import tables
from factories import event, jsonl_bytes, write_landing

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "platform" / "dataplatform"

SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|DELETE|UPDATE|CREATE|MERGE|DROP|ALTER|FROM|WHERE|JOIN|PARTITION BY|ORDER BY|GROUP BY"
    r"|CASE WHEN|TRY_CAST|CAST|OVER|FILTER|NULLIF|PRAGMA|ATTACH|COPY|INSTALL|LOAD|SET|VALUES|RANGE BETWEEN|AS|END)\b"
)
QUERY_METHODS = {"sql", "execute", "executemany", "query"}

# module -> expression formatted into SQL -> why it is a code constant and never data.
ALLOWED_IN_SQL: dict[str, dict[str, str]] = {
    "lib/warehouse.py": {
        "table": "batch_transaction: the constant BATCH_TABLES",
        "table.name": "replace_rows, replace_day: a table declared in lib/tables.py; every caller passes a"
        " tables.<CONSTANT> (test_sql_helpers_get_literal_names)",
        "keys": "replace_rows: the declared key columns of that table, quoted",
        "name": "table_counts: a constant tuple of table names",
        "column": "SAME_CONTENT_SQL: from the constant CONTRACT_COLUMNS",
        "SAME_CONTENT_SQL": "module constant built from CONTRACT_COLUMNS",
    },
    "lib/tables.py": {
        "self.name": "a table's name, from a declaration in this module",
        "name": "a column's name, from a declaration in this module",
        "duckdb_type(self.columns[name])": "a type name from duckdb_type's fixed mapping",
    },
    "lib/features.py": {
        "_VIEW": "module constant \"event_type = 'view'\"",
        "etype": "from the constant _USER_EVENT_TYPES",
        "col": "f'user_{name}_{wname}' from the constants _USER_EVENT_TYPES and WINDOWS",
        "partition": "_frame's partition columns: a literal at each call (test_sql_helpers_get_literal_names)",
        "preceding_us": "_frame's window: integer microseconds from code timedeltas",
        "end": "_frame: 'CURRENT ROW' or '1 PRECEDING'",
        "_frame(...)": "a window frame: literal partition columns, integer microseconds",
        "cap": "module constant _MAX_PRICE_FOR_MEAN (float)",
        "dec": "a TRY_CAST expression built from cap",
        "known": "a literal CASE prefix",
        "mean": "a literal price-mean expression",
        "PRIOR_PURCHASES": "module constant (float)",
        "PRIOR_VIEWS": "module constant (float)",
        "horizon_us": "integer microseconds (_require_positive of a timedelta)",
        "inner_sql": "joined from the allowed pieces above",
        "outer_sql": "joined from the allowed pieces above",
    },
}
# Queries passed by name: module constants, and the parameters of two helpers whose callers are checked.
ALLOWED_QUERY_NAMES = {"tables.SCHEMA_SQL", "SELECT_SQL", "QUARANTINE_ROWS_SQL"}
# sqlshell's `_fetch` runs an analyst's own statement: on a read-only connection, after split_statements
# refused every kind that writes (tested in test_sql_shell.py).
ALLOWED_QUERY_PARAMETERS = {("scalar", "sql"), ("_run", "sql"), ("_fetch", "statement")}


def modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(PACKAGE)), ast.parse(path.read_text())) for path in sorted(PACKAGE.rglob("*.py"))]


def literal_text(node: ast.JoinedStr) -> str:
    return "".join(v.value for v in node.values if isinstance(v, ast.Constant))


def formatted(node: ast.JoinedStr) -> list[str]:
    names = []
    for value in node.values:
        if isinstance(value, ast.FormattedValue):
            expr = value.value
            is_frame = isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "_frame"
            names.append("_frame(...)" if is_frame else ast.unparse(expr))
    return names


def calls_named(tree: ast.Module, name: str) -> list[ast.Call]:
    def called(node: ast.Call) -> str | None:
        func = node.func
        return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None

    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and called(node) == name]


def test_sql_fstrings_format_only_allowed_code_constants() -> None:
    checked, violations = 0, []
    for module, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and SQL_WORDS.search(literal_text(node)):
                checked += 1
                allowed = ALLOWED_IN_SQL.get(module, {})
                violations += [f"{module}:{node.lineno}: {{{name}}}" for name in formatted(node) if name not in allowed]
    assert violations == [], "SQL formatted from names not on the allow-list (bind values with params=[...])"
    assert checked >= 20  # the scan sees the SQL-building f-strings (features' windows, warehouse helpers)


def test_no_sql_is_built_with_percent_or_format() -> None:
    violations = []
    for module, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
                for side in (node.left, node.right):
                    if isinstance(side, ast.Constant) and isinstance(side.value, str) and SQL_WORDS.search(side.value):
                        violations.append(f"{module}:{node.lineno}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
                target = node.func.value
                if (
                    isinstance(target, ast.Constant)
                    and isinstance(target.value, str)
                    and SQL_WORDS.search(target.value)
                ):
                    violations.append(f"{module}:{node.lineno}")
    assert violations == []


def test_every_query_is_a_literal_a_constant_or_a_checked_fstring() -> None:
    violations = []
    for module, tree in modules():
        enclosing: dict[int, str] = {}  # id(call) -> name of the innermost function around it
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef):
                enclosing.update((id(node), function.name) for node in ast.walk(function))
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.args):
                continue
            if call.func.attr not in QUERY_METHODS:
                continue
            query = call.args[0]
            ok = (
                (isinstance(query, ast.Constant) and isinstance(query.value, str))
                or (isinstance(query, ast.JoinedStr) and bool(SQL_WORDS.search(literal_text(query))))
                or (isinstance(query, ast.Name | ast.Attribute) and ast.unparse(query) in ALLOWED_QUERY_NAMES)
                or (isinstance(query, ast.Name) and (enclosing.get(id(call)), query.id) in ALLOWED_QUERY_PARAMETERS)
            )
            if not ok:
                violations.append(f"{module}:{call.lineno}: {ast.unparse(query)[:80]}")
    assert violations == []


def test_sql_helpers_get_literal_names() -> None:
    """The helpers that format names into SQL, or take a query as a parameter, get literals from every caller."""
    trees = dict(modules())

    def is_text(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str)

    declared = {name for name, value in vars(tables).items() if isinstance(value, tables.Table)}
    replace_calls = [
        c for tree in trees.values() for name in ("replace_rows", "replace_day") for c in calls_named(tree, name)
    ]
    assert replace_calls
    for call in replace_calls:
        table = call.args[1]
        assert isinstance(table, ast.Attribute) and ast.unparse(table.value) == "tables", ast.unparse(call)
        assert table.attr in declared, ast.unparse(call)
    frames = calls_named(trees["lib/features.py"], "_frame")
    assert frames
    for call in frames:
        partition = call.args[0]
        assert is_text(partition) or (isinstance(partition, ast.Name) and partition.id == "up"), ast.unparse(call)
    up = [
        n for n in ast.walk(trees["lib/features.py"]) if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "up"
    ]
    assert all(is_text(n.value) for n in up)
    for call in [c for tree in trees.values() for c in calls_named(tree, "scalar")]:
        query = call.args[1]
        assert is_text(query) or isinstance(query, ast.JoinedStr), ast.unparse(call)
    for call in calls_named(trees["lib/features.py"], "_run"):
        query = call.args[1]
        assert isinstance(query, ast.Call) and ast.unparse(query.func) == "_window_sql", ast.unparse(call)


# --- binding ------------------------------------------------------------------------------------

SERVER = re.compile(r"dagster\"?\s+(dev|api\s+grpc|code-server)|dagster-webserver|dagster-daemon")


def test_servers_started_by_dp_bind_loopback_only() -> None:
    lines = [line.strip() for line in (ROOT / "dp").read_text().splitlines()]
    commands = [line for line in lines if SERVER.search(line) and not line.startswith(("#", "log "))]
    assert commands, "dp starts no Dagster server any more: update this test"
    for command in commands:
        # `dagster dev` runs the webserver and the daemon; the daemon itself listens on no port.
        assert "dagster-daemon" not in command and "dagster-webserver" not in command, command
        assert re.search(r"(-h|--host)\s+127\.0\.0\.1\b", command), command
    assert "0.0.0.0" not in (ROOT / "dp").read_text()


# --- secrets ------------------------------------------------------------------------------------

AWS_SECRET = "sentinel-aws-secret-3f9c41d2"
WEBHOOK_TOKEN = "sentinel-webhook-token-8b27e5"


def scan(text: str) -> list[str]:
    return [s for s in (AWS_SECRET, WEBHOOK_TOKEN) if s in text]


def test_secrets_never_reach_run_logs_metadata_or_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    write_landing(data / "landing", "a.jsonl", jsonl_bytes([event(i) for i in range(5)] + [event(9, user_id="")]))
    monkeypatch.setenv("DP_DATA_DIR", str(data))
    monkeypatch.setenv("DP_SETTLE_SECONDS", "0")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASENTINELKEYID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    # Port 9 (discard) on loopback: nothing listens, so delivery fails at once and is logged.
    monkeypatch.setenv("DP_ALERT_WEBHOOK_URL", f"http://127.0.0.1:9/hooks/alerts?token={WEBHOOK_TOKEN}")
    from dataplatform.definitions import defs

    local = defs()
    monkeypatch.setenv("DP_LANDING_URI", "s3://sentinel-bucket/landing")
    monkeypatch.setenv("DP_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    on_s3 = defs()

    caplog.set_level(logging.DEBUG)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        ok = local.resolve_job_def("ingest_landing_job").execute_in_process(instance=instance)
        assert ok.success
        metadata = ok.asset_materializations_for_node(landing_events.op.name)[0].metadata
        assert metadata["rows_in"].value == 6
        failed = on_s3.resolve_job_def("ingest_landing_job").execute_in_process(instance=instance, raise_on_error=False)
        assert not failed.success

        alerts = {"alerts": local.resources["alerts"]}
        failure = next(e for e in failed.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert", dagster_event=failure, dagster_instance=instance,
            dagster_run=failed.dagster_run, resources=alerts,
        ).for_run_failure()  # fmt: skip
        run_failure_alert(context)
        success = next(e for e in ok.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
        context = dg.build_run_status_sensor_context(
            sensor_name="check_failure_alert", dagster_event=success, dagster_instance=instance,
            dagster_run=ok.dagster_run, resources=alerts,
        )  # fmt: skip
        check_failure_alert(context)

        runs = instance.get_runs()
        assert len(runs) == 2
        entries = [entry for run in runs for entry in instance.all_logs(run.run_id)]
        assert any(e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
                   for e in entries)  # fmt: skip
        assert scan(serialize_value(entries)) == []
        assert scan(serialize_value(runs)) == []  # run config and tags
        assert "EndpointConnectionError" in serialize_value(entries) or "Could not connect" in serialize_value(entries)
    # Sensor logs go to the console (the daemon also keeps them with the tick); Python logging to caplog.
    console = "".join(capfd.readouterr())
    assert "ALERT run_failure" in console and "alert webhook delivery failed: URLError" in console
    assert scan(console) == [] and scan(caplog.text) == []
    leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and scan(p.read_bytes().decode("latin-1"))]
    assert leaked == []


# Modules whose load runs code from the bytes it reads, and their loading functions.
UNPICKLERS = {"pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal", "_pickle"}
UNPICKLING_NAMES = {"load", "loads", "Unpickler", "open"}


def unpickles(node: ast.AST) -> bool:
    """`pickle.load(...)`-like calls, `from joblib import load`, `read_pickle(...)`, `allow_pickle=<not False>`."""
    if isinstance(node, ast.ImportFrom):
        root = (node.module or "").split(".")[0]
        return root in UNPICKLERS and any(a.name in UNPICKLING_NAMES for a in node.names)
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
    if (owner in UNPICKLERS and called in UNPICKLING_NAMES) or called == "read_pickle":
        return True
    return any(
        k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and not k.value.value) for k in node.keywords
    )


def unpickling_sites() -> list[tuple[str, str]]:
    """(module, enclosing class.function) of every unpickling node under platform/dataplatform."""
    sites: list[tuple[str, str]] = []

    def visit(module: str, node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            named = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            inner = f"{scope}.{child.name}".lstrip(".") if named else scope
            if unpickles(child):
                sites.append((module, inner))
            visit(module, child, inner)

    for module, tree in modules():
        visit(module, tree, "")
    return sites


def test_model_artifacts_are_unpickled_only_after_their_sha256_is_checked() -> None:
    assert unpickling_sites() == [("lib/registry.py", "ModelRegistry.load")]
    tree = dict(modules())["lib/registry.py"]
    registry = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ModelRegistry")
    load = next(n for n in registry.body if isinstance(n, ast.FunctionDef) and n.name == "load")

    def refuses_on_mismatch(statement: ast.stmt) -> bool:
        compares = isinstance(statement, ast.If) and "artifact_sha256" in ast.unparse(statement.test)
        raises = any(
            isinstance(n, ast.Raise) and "ArtifactIntegrityError" in ast.unparse(n) for n in ast.walk(statement)
        )
        return compares and raises

    order = [
        "check" if refuses_on_mismatch(statement) else "load"
        for statement in load.body
        if refuses_on_mismatch(statement) or any(unpickles(n) for n in ast.walk(statement))
    ]
    assert order == ["check", "load"]
