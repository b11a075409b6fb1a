"""Model registry: local folder and S3 (moto's server over HTTP, nothing mocked), integrity, champion, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl
import pytest

from dataplatform.lib.registry import (
    ArtifactIntegrityError,
    InvalidVersionError,
    ModelRegistry,
    NotFoundError,
    RegistryError,
    frame_fingerprint,
    main,
    validate_version,
)
from dataplatform.lib.training import TrainedModel, evaluate, train_model

PLATFORM_DIR = Path(__file__).resolve().parents[1] / "platform"
BUCKET = "models-bucket"
REGION = "us-east-1"
WINDOW = (date(2026, 1, 1), date(2026, 1, 14))


def tiny_frame(n: int = 2_000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pl.DataFrame(
        {
            "user_id": rng.integers(0, 100, n),
            "label": (rng.random(n) < 1 / (1 + np.exp(-2 * x))).astype(np.int8),
            "x": x,
            "brand": np.array(["a", "b", "c"])[rng.integers(0, 3, n)],
        }
    )


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return train_model(
        tiny_frame(),
        feature_columns=["x", "brand"],
        categorical_columns=["brand"],
        params={"max_iter": 20},
        n_threads=1,
    )


@pytest.fixture
def local(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry.local(tmp_path / "models")


def register(registry: ModelRegistry, trained: TrainedModel, notes: str = "") -> str:
    return registry.register(
        trained,
        training_window=WINDOW,
        fingerprint=frame_fingerprint(tiny_frame()),
        metrics=evaluate(trained, tiny_frame(500, seed=1), bootstrap=0),
        notes=notes,
    ).version


# --- S3 on moto's server ---------------------------------------------------------------------


@pytest.fixture
def s3(s3_client: Any) -> Any:
    s3_client.create_bucket(Bucket=BUCKET)
    return s3_client


# --- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_round_trip(backend: str, request: pytest.FixtureRequest, trained: TrainedModel, tmp_path: Path) -> None:
    if backend == "local":
        registry = ModelRegistry.local(tmp_path / "models")
    else:
        registry = ModelRegistry.s3(request.getfixturevalue("s3"), BUCKET, "ml/registry")
    assert registry.list_versions() == [] and registry.champion() is None

    first = register(registry, trained, notes="baseline")
    second = register(registry, trained)
    assert first.startswith("v0001-") and second.startswith("v0002-") and first[6:] == second[6:]
    assert [c.version for c in registry.list_versions()] == [first, second]

    card = registry.get_card(first)
    assert card.training_window == {"start": "2026-01-01", "end": "2026-01-14"}
    assert card.data_fingerprint == frame_fingerprint(tiny_frame())
    assert card.feature_columns == ["x", "brand"] and card.categorical_columns == ["brand"]
    assert card.params["max_iter"] == 20 and card.metrics["auc"] > 0.7 and card.notes == "baseline"
    assert card.training["threshold"] == trained.threshold and card.training["training_rows"] == 2_000
    assert card.parent is None and len(card.artifact_sha256) == 64

    registry.promote(first, "baseline")
    third = register(registry, trained)
    assert registry.get_card(third).parent == first

    loaded = registry.load(first)
    frame = tiny_frame(300, seed=9)
    np.testing.assert_array_equal(loaded.predict_proba(frame), trained.predict_proba(frame))
    if backend == "local":
        layout = sorted(str(p.relative_to(tmp_path / "models")) for p in (tmp_path / "models").rglob("*"))
        assert f"versions/{first}/model.joblib" in layout and f"versions/{first}/card.json" in layout
        assert "champion.json" in layout and "champion_history.jsonl" in layout
        assert not [p for p in layout if ".tmp" in p]
    else:
        keys = {o["Key"] for o in request.getfixturevalue("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert {f"ml/registry/versions/{first}/model.joblib", "ml/registry/champion.json"} <= keys


def test_tampered_artifact_is_refused_before_unpickling(
    local: ModelRegistry, trained: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = register(local, trained)
    artifact = tmp_path / "models" / "versions" / version / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("joblib.load called on an unverified artifact")

    monkeypatch.setattr(joblib, "load", no_unpickling)
    with pytest.raises(ArtifactIntegrityError, match="refusing to load"):
        local.load(version)


def test_tampered_artifact_on_s3_is_refused(s3: Any, trained: TrainedModel) -> None:
    registry = ModelRegistry.s3(s3, BUCKET, "models")
    version = register(registry, trained)
    s3.put_object(Bucket=BUCKET, Key=f"models/versions/{version}/model.joblib", Body=b"not the model")
    with pytest.raises(ArtifactIntegrityError):
        registry.load(version)


def test_incomplete_version_is_not_listed(local: ModelRegistry, trained: TrainedModel, tmp_path: Path) -> None:
    version = register(local, trained)
    (tmp_path / "models" / "versions" / "v0002-deadbeef").mkdir()  # artifact written, card not yet
    assert [c.version for c in local.list_versions()] == [version]
    assert register(local, trained).startswith("v0003-")  # the sequence number is not reused


def test_promote_rollback_and_history(local: ModelRegistry, trained: TrainedModel) -> None:
    a, b, c = (register(local, trained) for _ in range(3))
    with pytest.raises(RegistryError, match="no champion"):
        local.rollback()
    local.promote(a, "first")
    with pytest.raises(RegistryError, match="first champion"):
        local.rollback()
    with pytest.raises(RegistryError, match="already the champion"):
        local.promote(a, "again")
    local.promote(b, "better AUC")
    local.promote(c, "better again")
    record = local.rollback(reason="c is broken")
    assert record.version == b and record.replaced == c and local.champion().version == b  # type: ignore[union-attr]
    assert local.rollback(reason="b too").version == a  # repeated rollbacks walk back
    local.promote(c, "fixed")
    assert local.rollback(to_version=a, reason="explicit").version == a
    assert local.champion_record().rollback_stack == []  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        local.promote("v0099-00000000", "missing")

    history = local.history()
    assert [(h.action, h.version) for h in history] == [
        ("promote", a), ("promote", b), ("promote", c), ("rollback", b), ("rollback", a), ("promote", c),
        ("rollback", a),
    ]  # fmt: skip
    assert history[3].reason == "c is broken" and history[3].replaced == c


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "v0001-../../x", "v0001-DEADBEEF", "v1-deadbeef", "v0001-deadbeef/..", "", "v0001"]
)
def test_version_ids_are_validated(bad: str, local: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(InvalidVersionError):
        validate_version(bad)
    for call in (local.get_card, local.load, lambda v: local.promote(v, "x"), lambda v: local.rollback(v)):
        with pytest.raises(InvalidVersionError):
            call(bad)
    assert main(["--root", str(tmp_path / "models"), "show", bad]) == 1
    assert validate_version("v0003-1a2b3c4d") == "v0003-1a2b3c4d"
    assert validate_version("v12345-1a2b3c4d") == "v12345-1a2b3c4d"


def test_frame_fingerprint_is_content_based_and_stable() -> None:
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "x": [0.5, None, float("nan")],
            "s": ["a", None, "ccc"],
            "d": [date(2026, 1, 1), date(2026, 1, 2), None],
            "b": [True, False, None],
        }
    )
    fingerprint = frame_fingerprint(frame)
    # pinned: a change here means fingerprints of existing cards no longer match their data
    assert fingerprint == "2c658d83e4fa92c870e922f1d054aa059512ece6784dcc72820638817adad04f"
    assert frame_fingerprint(pl.DataFrame(frame.to_dict())) == fingerprint
    assert frame_fingerprint(frame.with_columns(pl.col("s").cast(pl.Categorical))) == fingerprint
    assert frame_fingerprint(frame.with_columns(x=pl.Series([0.5, 0.0, float("nan")]))) != fingerprint  # null != 0
    assert frame_fingerprint(frame.with_columns(s=pl.Series(["a", "", "ccc"]))) != fingerprint  # null != ""
    assert frame_fingerprint(frame.with_columns(s=pl.Series(["ab", None, "cc"]))) != fingerprint  # boundaries
    assert frame_fingerprint(frame.rename({"x": "y"})) != fingerprint
    assert frame_fingerprint(frame.reverse()) != fingerprint  # row order is content
    assert frame_fingerprint(frame.slice(1)) == frame_fingerprint(frame.slice(1).clone())
    assert frame_fingerprint(pl.concat([frame.slice(0, 1), frame.slice(1)], rechunk=False)) == fingerprint


def test_cli_list_show_promote_rollback(local: ModelRegistry, trained: TrainedModel, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    root = str(tmp_path / "models")
    a, b = register(local, trained), register(local, trained)
    assert main(["--root", root, "promote", a, "--reason", "baseline"]) == 0
    assert main(["promote", b, "--reason", "better", "--root", root]) == 0
    capsys.readouterr()
    assert main(["--root", root, "list"]) == 0
    listing = capsys.readouterr().out
    assert f"* {b}" in listing and f"  {a}" in listing
    assert main(["--root", root, "show", a]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == a

    # the documented one-command rollback, as an operator runs it
    env = {**os.environ, "PYTHONPATH": str(PLATFORM_DIR)}
    done = subprocess.run(
        [sys.executable, "-m", "dataplatform.lib.registry", "--root", root, "rollback", "--reason", "bad deploy"],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"champion is now {a}" in done.stdout
    assert local.champion().version == a  # type: ignore[union-attr]
    assert local.history()[-1].reason == "bad deploy"
    assert main(["--root", root, "rollback"]) == 1
    assert "no previous one" in capsys.readouterr().err


def test_cli_rollback_on_s3(s3: Any, moto_endpoint: str, trained: TrainedModel) -> None:
    registry = ModelRegistry.s3(s3, BUCKET, "prod/models")
    a, b = register(registry, trained), register(registry, trained)
    registry.promote(a, "baseline")
    registry.promote(b, "better")
    env = {**os.environ, "PYTHONPATH": str(PLATFORM_DIR), "DP_S3_ENDPOINT_URL": moto_endpoint}
    done = subprocess.run(
        [sys.executable, "-m", "dataplatform.lib.registry", "rollback", "--to", a, "--root", f"s3://{BUCKET}/prod/models"],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert registry.champion().version == a  # type: ignore[union-attr]
