"""The production profile (`deploy/production`, selected by DP_PROFILE=production).

- For real: a throw-away PostgreSQL server on 127.0.0.1 (password authentication, a free port) holds
  Dagster's storage, built from the profile's own `storage:` block; a sensor tick, a materialization
  and its asset check run in process and are read back through the instance and with plain SQL.
  The profile's S3 compute-log manager is exercised against moto's S3 server.
- Loaded and validated: the instance config against Dagster's schema, each configurable class
  (K8sRunLauncher, S3ComputeLogManager, QueuedRunCoordinator) built from its config, and the Helm
  values for the official chart. No Kubernetes cluster is reached: the Job the run launcher would
  create for a run is caught at the API call and checked against the Kubernetes API's own schema.
"""

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import ConfigurableClassData
from dagster_aws.s3 import S3Resource

from dataplatform.defs.common.keys import LANDING_EVENTS
from dataplatform.defs.ingestion.assets import landing_events
from dataplatform.defs.ingestion.sensors import landing_files_sensor
from dataplatform.defs.resources import FileStoreResource, LakehouseResource, WarehouseResource, ingestion_policy
from dataplatform.lib import warehouse
from dataplatform.lib.settings import Settings
from factories import event, jsonl_bytes, write_landing

REPO = Path(__file__).resolve().parents[1]
PROFILE_DIR = REPO / "deploy" / "production"
PROFILE_YAML = PROFILE_DIR / "dagster.yaml"
VALUES_YAML = PROFILE_DIR / "values.yaml"
SETTINGS_PY = REPO / "platform" / "dataplatform" / "lib" / "settings.py"
PG_ROOT = "/usr/lib/postgresql"
START_TIMEOUT_SECONDS = 60

# Every `{env: NAME}` the profile reads, with a dummy value (the fast tests).
DUMMY_ENV = {
    "DAGSTER_PG_HOST": "dagster-pg.example.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
    "DAGSTER_COMPUTE_LOG_BUCKET": "dataplatform-dagster-logs",
    "AWS_REGION": "eu-west-1",
    "DAGSTER_K8S_JOB_NAMESPACE": "dataplatform",
    "DAGSTER_K8S_JOB_IMAGE": "registry.example.com/dataplatform:0.1.0",
    "DAGSTER_K8S_SERVICE_ACCOUNT": "dagster",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
}
# Where the data lives: meaningless defaults inside a pod, so every run pod must receive them.
LAKE_BUCKET = "dataplatform-lake"
LOCATION_SETTINGS = {
    "DP_DATA_DIR",
    "DP_LANDING_URI",
    "DP_HISTORY_URI",
    "DP_LAKE_URI",
    "DP_WAREHOUSE_PATH",
    "DP_MODELS_URI",
}


def load_profile() -> dict[str, Any]:
    return yaml.safe_load(PROFILE_YAML.read_text())


def env_refs(node: object) -> set[str]:
    """Every NAME of a `{env: NAME}` anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_refs(v) for v in node)) if node else set()
    return set()


def rehydrate(section: dict[str, Any], **overrides: Any) -> Any:
    """Build a configurable class (run launcher, compute logs ...) from its section, as the instance does."""
    config = {**(section.get("config") or {}), **overrides}
    return ConfigurableClassData(section["module"], section["class"], yaml.safe_dump(config)).rehydrate()


@pytest.fixture
def dummy_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in DUMMY_ENV.items():
        monkeypatch.setenv(name, value)
    return DUMMY_ENV


# --- loaded and validated (fast) ---------------------------------------------------------------


def test_every_credential_comes_from_the_environment_and_is_documented() -> None:
    config = load_profile()
    db = config["storage"]["postgres"]["postgres_db"]
    for key in ("hostname", "port", "db_name", "username", "password"):
        assert isinstance(db[key], dict) and set(db[key]) == {"env"}, f"postgres_db.{key} must be {{env: NAME}}"
    # dagster-postgres 0.29.27 builds `postgresql://...`, which SQLAlchemy 2.1 maps to psycopg (3);
    # the pinned driver is psycopg2-binary.
    assert db["scheme"] == "postgresql+psycopg2"
    assert env_refs(config) == set(DUMMY_ENV)
    readme = (REPO / "README.md").read_text()
    undocumented = sorted(n for n in env_refs(config) | {"DP_PROFILE"} if f"`{n}`" not in readme)
    assert not undocumented, f"README.md's production profile table lacks {undocumented}"


def test_instance_config_passes_dagsters_schema_with_the_local_limits(dummy_env: dict[str, str]) -> None:
    value, custom_instance_class = dagster_instance_config(str(PROFILE_DIR))
    assert custom_instance_class is None
    assert set(value["storage"]) == {"postgres"}
    assert value["telemetry"] == {"enabled": False}
    assert value["run_monitoring"]["enabled"] and value["run_retries"]["enabled"]
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    profile = load_profile()
    for key in ("concurrency", "run_coordinator", "run_retries"):
        assert profile[key] == local[key], f"{key} differs from the local dagster.yaml"
    assert profile["concurrency"]["pools"]["default_limit"] == 1  # the duckdb_writer pool: one writer


def launcher_from_profile(tmp_path: Path) -> Any:
    """The profile's run launcher. Outside a cluster the in-cluster credentials are absent: it loads a
    kubeconfig that names a cluster nobody listens on (constructing the launcher parses it; no request
    is made)."""
    section = load_profile()["run_launcher"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "dummy"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return rehydrate(section, load_incluster_config=False, kubeconfig_file=str(kubeconfig))


def test_k8s_run_launcher_builds_from_the_profile(dummy_env: dict[str, str], tmp_path: Path) -> None:
    from dagster_k8s import K8sRunLauncher

    section = load_profile()["run_launcher"]
    assert (section["module"], section["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert section["config"]["load_incluster_config"] is True
    launcher = launcher_from_profile(tmp_path)
    assert isinstance(launcher, K8sRunLauncher)
    assert launcher.job_namespace == dummy_env["DAGSTER_K8S_JOB_NAMESPACE"]
    assert launcher.job_image == dummy_env["DAGSTER_K8S_JOB_IMAGE"]
    assert launcher.instance_config_map == dummy_env["DAGSTER_K8S_INSTANCE_CONFIG_MAP"]
    assert launcher.postgres_password_secret == dummy_env["DAGSTER_K8S_PG_PASSWORD_SECRET"]
    assert launcher.service_account_name == dummy_env["DAGSTER_K8S_SERVICE_ACCOUNT"]
    assert launcher.fail_pod_on_run_failure is True
    assert set(launcher.env_secrets) == {"dataplatform-aws", "dataplatform-alerts"}

    # A run pod loads this same file: it must receive every variable the file reads (the password
    # comes from `postgres_password_secret`), and the data locations.
    passed = set(section["config"]["env_vars"])
    assert env_refs(load_profile()) - {"DAGSTER_PG_PASSWORD"} <= passed
    assert passed >= LOCATION_SETTINGS
    read_by_settings = set(re.findall(r"\"(DP_[A-Z0-9_]+)\"", SETTINGS_PY.read_text()))
    unknown = {n for n in passed if n.startswith("DP_")} - read_by_settings
    assert not unknown, f"env_vars names settings that dataplatform.lib.settings does not read: {unknown}"
    mounts = {m["name"]: m["mountPath"] for m in section["config"]["volume_mounts"]}
    assert {v["name"] for v in section["config"]["volumes"]} == set(mounts)


# A Kubernetes release the Job must be valid for (strict: unknown fields are errors, as `kubectl apply
# --validate=strict` makes them).
KUBERNETES_VERSION = "1.33.0"


def launched_job(launcher: Any, job_name: str) -> dict[str, Any]:
    """The Job manifest the launcher sends to the Kubernetes API for a run of `job_name`."""
    import kubernetes
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.test_utils import create_run_for_test

    pointer = ModuleCodePointer("dataplatform.definitions", "defs", None)
    repository = RepositoryPythonOrigin(
        "/usr/local/bin/python", pointer, container_image=DUMMY_ENV["DAGSTER_K8S_JOB_IMAGE"]
    )
    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        run = create_run_for_test(instance, job_name=job_name, job_code_origin=JobPythonOrigin(job_name, repository))
        with mock.patch.object(launcher._api_client, "create_namespaced_job_with_retries") as create_job:
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    assert create_job.call_args.kwargs["namespace"] == DUMMY_ENV["DAGSTER_K8S_JOB_NAMESPACE"]
    manifest: dict[str, Any] = kubernetes.client.ApiClient().sanitize_for_serialization(
        create_job.call_args.kwargs["body"]
    )
    return manifest


def test_the_run_worker_job_is_valid_kubernetes(
    dummy_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubernetes_validate

    # The launcher copies the variables its `env_vars` names from its own environment into the pod.
    passed = [name for name in load_profile()["run_launcher"]["config"]["env_vars"] if name not in DUMMY_ENV]
    for name in passed:
        monkeypatch.setenv(name, f"value-of-{name}")
    job = launched_job(launcher_from_profile(tmp_path), "ingest_landing_files")
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)

    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == DUMMY_ENV["DAGSTER_K8S_JOB_IMAGE"]
    assert pod["serviceAccountName"] == DUMMY_ENV["DAGSTER_K8S_SERVICE_ACCOUNT"]
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == DUMMY_ENV["DAGSTER_K8S_PG_PASSWORD_SECRET"]
    )
    assert set(passed) >= LOCATION_SETTINGS
    assert {name: env[name]["value"] for name in passed} == {name: f"value-of-{name}" for name in passed}
    assert {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s} >= {
        "dataplatform-aws", "dataplatform-alerts"
    }  # fmt: skip
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    assert {m["name"] for m in container["volumeMounts"]} >= set(claims)

    # The check is strict: a misspelt field, or a value of the wrong type, is refused.
    misspelt = yaml.safe_load(yaml.safe_dump(job))
    misspelt["spec"]["template"]["spec"]["serviceAcountName"] = "dagster"
    wrong_type = yaml.safe_load(yaml.safe_dump(job))
    wrong_type["spec"]["backoffLimit"] = "none"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_compute_logs_and_run_queue_build_from_the_profile(dummy_env: dict[str, str]) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    profile = load_profile()
    logs = rehydrate(profile["compute_logs"])
    assert isinstance(logs, S3ComputeLogManager)
    assert logs._s3_bucket == dummy_env["DAGSTER_COMPUTE_LOG_BUCKET"]
    assert isinstance(rehydrate(profile["run_coordinator"]), QueuedRunCoordinator)


def test_missing_environment_variable_is_named_when_the_instance_is_built(
    dummy_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_COMPUTE_LOG_BUCKET")
    with pytest.raises(Exception, match="DAGSTER_COMPUTE_LOG_BUCKET"):
        rehydrate(load_profile()["compute_logs"])


def test_helm_values_cover_what_the_chart_needs() -> None:
    values = yaml.safe_load(VALUES_YAML.read_text())
    profile = load_profile()

    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"] and pg["postgresqlDatabase"] and pg["postgresqlUsername"]
    assert pg["postgresqlScheme"] == profile["storage"]["postgres"]["postgres_db"]["scheme"]
    assert pg["service"]["port"] == 5432
    assert values["generatePostgresqlPasswordSecret"] is False and values["global"]["postgresqlSecretName"]

    user_code = values["dagster-user-deployments"]
    assert user_code["enabled"] is True
    [deployment] = user_code["deployments"]
    assert deployment["name"] and deployment["port"]
    assert deployment["image"]["repository"] and str(deployment["image"]["tag"]) not in ("", "latest")
    assert "dataplatform.definitions" in deployment["dagsterApiGrpcArgs"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    env_names = {e["name"] for e in deployment["env"]}
    assert env_names >= LOCATION_SETTINGS | {"AWS_REGION"}
    secret_names = {s["name"] for s in deployment["envSecrets"]}

    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    assert k8s["loadInclusterConfig"] is True
    assert {s["name"] for s in k8s["envSecrets"]} == set(profile["run_launcher"]["config"]["env_secrets"])
    assert {s["name"] for s in k8s["envSecrets"]} <= secret_names | {"dataplatform-aws", "dataplatform-alerts"}
    assert [v["persistentVolumeClaim"]["claimName"] for v in k8s["volumes"]] == [
        v["persistentVolumeClaim"]["claimName"] for v in profile["run_launcher"]["config"]["volumes"]
    ]

    logs = values["computeLogManager"]
    assert logs["type"] == "S3ComputeLogManager"
    assert logs["config"]["s3ComputeLogManager"]["bucket"]
    assert logs["config"]["s3ComputeLogManager"]["prefix"] == profile["compute_logs"]["config"]["prefix"]

    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["enabled"] and daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runRetries"] == {"enabled": True, "maxRetries": profile["run_retries"]["max_retries"]}
    assert daemon["runMonitoring"]["enabled"] is True
    assert daemon["runMonitoring"]["startTimeoutSeconds"] == profile["run_monitoring"]["start_timeout_seconds"]

    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"] == {
        "defaultLimit": profile["concurrency"]["pools"]["default_limit"],
        "granularity": profile["concurrency"]["pools"]["granularity"],
    }
    assert concurrency["runs"]["maxConcurrentRuns"] == profile["concurrency"]["runs"]["max_concurrent_runs"]
    assert values["telemetry"]["enabled"] is False


# --- for real: Dagster storage on a throw-away PostgreSQL server (slow) ------------------------


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    db_name: str
    username: str
    password: str

    def connect(self) -> Any:
        return psycopg2.connect(
            host=self.host, port=self.port, dbname=self.db_name, user=self.username, password=self.password
        )


def _postgres_bin() -> Path | None:
    """The newest PostgreSQL's bin folder from Debian's packages (`/usr/lib/postgresql/15/bin`), or None."""
    found = [p.parent for p in Path(PG_ROOT).glob("*/bin/initdb") if p.parts[-3].isdigit()]
    return max(found, key=lambda p: int(p.parts[-2]), default=None)


def _unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; under CI (CI=true) the test must run, so fail instead."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: failing instead of skipping)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], log: Path | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS + 30, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}\n{done.stdout}\n{done.stderr}\n{tail}")


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster of its own: temp data dir, 127.0.0.1 on a free port, password auth over TCP."""
    bindir = _postgres_bin()
    if bindir is None:
        _unavailable(f"no PostgreSQL server ({PG_ROOT}/*/bin/initdb): install the Debian package `postgresql`")
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no `postgres` user to run the server as")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="dp-pg-"))  # in /tmp: pytest's tmp_path is private to root
    data, log, pwfile = root / "data", root / "server.log", root / "superuser-password"
    pwfile.write_text("superuser-secret\n")
    if as_postgres:
        for path in (root, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    server = Postgres("127.0.0.1", 0, "dagster", "dagster", "dagster-secret")
    pg_ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log)]
    started = False
    try:
        _run([
            *as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--encoding=UTF8",
            "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync",
        ])  # fmt: skip
        for attempt in range(3):  # the free port may be taken between the probe and the start
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            started = True  # from here on, stop it in `finally` whatever happens
            try:
                _run([*pg_ctl, "-o", options, "-w", "-t", str(START_TIMEOUT_SECONDS), "start"], log)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        server = Postgres(server.host, port, server.db_name, server.username, server.password)
        admin = psycopg2.connect(
            host=server.host, port=port, dbname="postgres", user="postgres", password="superuser-secret"
        )
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"CREATE ROLE {server.username} LOGIN PASSWORD %s", (server.password,))
            cur.execute(f"CREATE DATABASE {server.db_name} OWNER {server.username}")
        admin.close()
        yield server
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3_compute_logs(moto_endpoint: str, s3_client: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """moto's S3 server on 127.0.0.1 with the compute-log and lake buckets."""
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_BUCKET", "dagster-logs")
    for bucket in ("dagster-logs", LAKE_BUCKET):
        s3_client.create_bucket(Bucket=bucket)
    return moto_endpoint, s3_client


def write_instance_yaml(dagster_home: Path, s3_endpoint: str) -> dict[str, Any]:
    """The production profile with the default run launcher (no cluster here) and S3 at moto's endpoint."""
    config = load_profile()
    del config["run_launcher"]
    config["compute_logs"]["config"]["endpoint_url"] = s3_endpoint
    config["compute_logs"]["config"]["upload_interval"] = None  # upload when the step ends
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


@pytest.mark.slow
def test_sensor_tick_and_materialization_with_dagster_storage_on_postgres(
    postgres: Postgres, s3_compute_logs: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, s3 = s3_compute_logs
    for name, value in {
        "DAGSTER_PG_HOST": postgres.host, "DAGSTER_PG_PORT": str(postgres.port), "DAGSTER_PG_DB": postgres.db_name,
        "DAGSTER_PG_USER": postgres.username, "DAGSTER_PG_PASSWORD": postgres.password,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    write_instance_yaml(tmp_path / "dagster_home", endpoint)

    landing = tmp_path / "landing"
    write_landing(landing, "a.jsonl", jsonl_bytes([event(i) for i in range(4)]))
    write_landing(landing, "b.jsonl", jsonl_bytes([event(i) for i in range(4, 7)] + [event(99, event_type="teleport")]))
    s3_resource = S3Resource(region_name="us-east-1")
    resources = {
        "landing": FileStoreResource(uri=str(landing), s3=s3_resource, settle_seconds=0),
        "history": FileStoreResource(uri=str(tmp_path / "history"), s3=s3_resource),
        "ingestion": ingestion_policy(Settings.from_env()),
        # The profile's lake: on S3 (moto), through the same dagster-aws resource.
        "lakehouse": LakehouseResource(
            s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1"),
            lake_uri=f"s3://{LAKE_BUCKET}/lake",
            warehouse=WarehouseResource(database=str(tmp_path / "wh.duckdb")),
        ),
    }

    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"

        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            tick = landing_files_sensor(context)
        [request] = tick.run_requests
        assert request.run_config["ops"][landing_events.op.name]["config"]["files"] == ["a.jsonl", "b.jsonl"]

        result = dg.materialize(
            [landing_events], run_config=request.run_config, resources=resources, instance=instance,
            tags={"dagster/run_key": request.run_key},
        )  # fmt: skip
        assert result.success

        # Read back through the instance (PostgreSQL behind it).
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/run_key"] == request.run_key
        materialization = instance.get_latest_materialization_event(LANDING_EVENTS)
        assert materialization is not None and materialization.run_id == result.run_id
        metadata = materialization.asset_materialization.metadata
        assert metadata["rows_in"].value == 8 and metadata["rows_quarantined"].value == 1
        check = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(LANDING_EVENTS, "batch_reconciles"))
        assert check is not None and check.run_id == result.run_id
        assert check.status.value == "SUCCEEDED"

        # The step held the `duckdb_writer` pool's one slot (default_limit: 1), kept in PostgreSQL, and let it go.
        pool = instance.event_log_storage.get_concurrency_info("duckdb_writer")
        assert (pool.limit, pool.slot_count, pool.claimed_slots, pool.pending_steps) == (1, 1, [], [])

        # The batch's Parquet and ledger markers are objects in the lake bucket.
        lake_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=LAKE_BUCKET)["Contents"]]
        assert any(k.startswith("lake/events/event_date=") and k.endswith(".parquet") for k in lake_keys)
        assert any(k.startswith("lake/quarantine/") for k in lake_keys)
        assert sum(k.startswith("lake/_ledger/files/") for k in lake_keys) == 2

        # A second tick sees the finished run in PostgreSQL and the files in the ledger: nothing to do.
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=tick.cursor) as context:
            assert landing_files_sensor(context).run_requests == []
    print(f"\nsensor tick + materialization + checks on PostgreSQL: {time.perf_counter() - started:.2f}s")

    # The same facts straight from the database.
    with postgres.connect() as con, con.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (result.run_id,),
        )
        assert cur.fetchone() == (1,)
        cur.execute(
            "SELECT check_name, execution_status FROM asset_check_executions WHERE run_id = %s", (result.run_id,)
        )
        assert cur.fetchall() == [("batch_reconciles", "SUCCEEDED")]
        cur.execute("SELECT concurrency_key, count(*) FROM concurrency_slots GROUP BY concurrency_key")
        assert cur.fetchall() == [("duckdb_writer", 1)]
    con.close()

    # The step's stdout/stderr went to S3 under the profile's prefix.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="dagster-logs").get("Contents", [])]
    assert any(k.startswith("dagster/compute-logs/") for k in keys), keys

    with resources["lakehouse"].connect(read_only=True) as con:
        assert warehouse.scalar(con, "SELECT count(*) FROM events") == 7
