"""Model registry: versioned artifacts with cards, a champion pointer and its history; local or S3.

Layout under a root (a folder, by default ``$DP_DATA_DIR/models``, or ``s3://bucket/prefix``)::

    versions/<version>/model.joblib   the pickled TrainedModel (joblib)
    versions/<version>/card.json      ModelCard: window, data fingerprint, features, params, metrics, sha256 ...
    champion.json                     pointer: version, set_at, reason, action, rollback stack
    champion_history.jsonl            one line per promotion / rollback, oldest first

Version ids are ``v<seq>-<sha8>`` (``v0003-1a2b3c4d``): a sequence number of at least 4 digits
(sorted numerically) and the first 8 hex digits of the artifact's sha256. Every id is validated
against that pattern before it is used in a path or key, so ``../`` and friends never reach storage.

Writes: locally each file is written to a temp file in the same folder, fsynced and renamed over
the final name; on S3 each PUT is atomic. Order: artifact, then card (a version without a card is
incomplete and is not listed), and for champion changes the history line, then the pointer (the
pointer is the truth; history is the audit trail). One writer at a time is assumed (the training
job or an operator); the history file is rewritten as a whole (read-modify-write).

Integrity: :meth:`ModelRegistry.load` hashes the artifact bytes and compares them with the card's
``artifact_sha256`` BEFORE unpickling, and raises :class:`ArtifactIntegrityError` on a mismatch. This
catches corruption, truncation and a swapped artifact; it is not a defence against someone who can
rewrite both artifact and card (pickle executes code: only load from a registry you control).

CLI (the one-command rollback)::

    python -m dataplatform.lib.registry [--root ROOT] list | history | show VERSION
    python -m dataplatform.lib.registry [--root ROOT] promote VERSION --reason TEXT
    python -m dataplatform.lib.registry [--root ROOT] rollback [--to VERSION] [--reason TEXT]

``ROOT`` is a folder or ``s3://bucket/prefix``; for S3 the endpoint comes from ``DP_S3_ENDPOINT_URL``
(unset: AWS), the region from ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` and credentials from boto3's
usual chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import hashlib
import io
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from dataplatform.lib.storage import LocalStorage, ObjectStorage, S3Storage, open_storage, s3_client_from_env
from dataplatform.lib.storage import NotFoundError as StorageNotFoundError

if TYPE_CHECKING:
    from dataplatform.lib.training import TrainedModel

ARTIFACT_NAME: Final = "model.joblib"
CARD_NAME: Final = "card.json"
CHAMPION_NAME: Final = "champion.json"
HISTORY_NAME: Final = "champion_history.jsonl"
CARD_SCHEMA: Final = 1
_VERSION_RE: Final = re.compile(r"v(\d{4,9})-([0-9a-f]{8})")


class RegistryError(Exception):
    """A registry operation that cannot be done (unknown version, nothing to roll back to ...)."""


class InvalidVersionError(RegistryError, ValueError):
    """A version id that does not match ``v<digits>-<8 hex>``."""


class ArtifactIntegrityError(RegistryError):
    """The artifact's bytes do not hash to the sha256 recorded in its card."""


class NotFoundError(RegistryError, StorageNotFoundError):
    """A version, card or file that does not exist."""


def validate_version(version: str) -> str:
    """Return ``version`` if it is a well-formed id; raise :class:`InvalidVersionError` otherwise."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise InvalidVersionError(f"invalid model version id {version!r} (expected e.g. v0003-1a2b3c4d)")
    return version


def _version_order(version: str) -> tuple[int, str]:
    match = _VERSION_RE.fullmatch(version)
    assert match is not None
    return int(match.group(1)), version


# --- data fingerprint -----------------------------------------------------------------------------


def frame_fingerprint(frame: pl.DataFrame) -> str:
    """sha256 of a frame's content: column names, logical types and values, in column and row order.

    Computed column by column from canonical little-endian buffers (not Polars' hash, which is not
    stable across versions): integers as int64/uint64, floats as float64 (one NaN, no -0.0),
    booleans as uint8, dates/datetimes/durations as their int64 physical value (the unit and time
    zone are part of the type), strings (and categoricals, decimals) as UTF-8 with int64 lengths,
    plus a bitmap of the nulls. Row order is part of the content (it changes the fitted model too);
    sort the frame first for an order-free fingerprint. Nested types (list, struct) are refused.
    """
    digest = hashlib.sha256(b"dataplatform-frame-fingerprint-v1\0")

    def feed(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    feed(frame.height.to_bytes(8, "little"))
    for name, series in zip(frame.columns, frame.get_columns(), strict=True):
        kind, payload = _canonical_column(series)
        feed(name.encode())
        feed(kind.encode())
        feed(np.packbits(series.is_null().to_numpy()).tobytes())
        for part in payload:
            feed(part)
    return digest.hexdigest()


def _canonical_column(series: pl.Series) -> tuple[str, list[bytes]]:
    dtype = series.dtype
    if dtype == pl.Null:
        return "null", []
    if dtype == pl.Boolean:
        return "bool", [series.fill_null(False).to_numpy().astype(np.uint8).tobytes()]
    if dtype.is_unsigned_integer():
        return "uint64", [series.cast(pl.UInt64).fill_null(0).to_numpy().astype("<u8").tobytes()]
    if dtype.is_integer():
        return "int64", [series.cast(pl.Int64).fill_null(0).to_numpy().astype("<i8").tobytes()]
    if dtype.is_float():
        values = series.cast(pl.Float64).fill_null(0.0).to_numpy().astype("<f8")
        values = np.where(np.isnan(values), np.nan, values) + 0.0  # one NaN bit pattern; -0.0 -> 0.0
        return "float64", [values.astype("<f8").tobytes()]
    if dtype.is_temporal():
        if isinstance(dtype, pl.Datetime):
            kind = f"datetime[{dtype.time_unit},{dtype.time_zone or ''}]"
        elif isinstance(dtype, pl.Duration):
            kind = f"duration[{dtype.time_unit}]"
        else:
            kind = "date" if dtype == pl.Date else "time"  # days since epoch / ns since midnight
        physical = series.to_physical().cast(pl.Int64).fill_null(0).to_numpy().astype("<i8")
        return kind, [physical.tobytes()]
    if dtype in (pl.String, pl.Categorical, pl.Binary) or isinstance(dtype, pl.Enum | pl.Decimal):
        kind = "binary" if dtype == pl.Binary else "string"
        target = pl.Binary if dtype == pl.Binary else pl.String
        filled = series.cast(target).fill_null(b"" if dtype == pl.Binary else "")
        arrow = filled.to_arrow()
        arrow = arrow.combine_chunks() if isinstance(arrow, pa.ChunkedArray) else arrow
        arrow = pc.cast(arrow, pa.large_binary())
        offsets = np.frombuffer(arrow.buffers()[1], dtype="<i8")[arrow.offset : arrow.offset + len(arrow) + 1]
        data = arrow.buffers()[2]
        body = b"" if data is None else data.to_pybytes()[int(offsets[0]) : int(offsets[-1])]
        return kind, [np.diff(offsets).astype("<i8").tobytes(), body]
    raise TypeError(f"cannot fingerprint column {series.name!r} of type {dtype}; drop or cast it first")


# --- records ----------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON values: tuples to lists, numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, date | datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _dumps(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(_jsonable(record), indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _actor() -> str:
    try:
        return os.environ.get("DP_ACTOR") or getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


@dataclass(frozen=True)
class ModelCard:
    """Everything recorded about one registered version; immutable once written."""

    version: str
    created_at: str
    training_window: dict[str, str]  # {"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}
    data_fingerprint: str
    feature_columns: list[str]
    categorical_columns: list[str]
    params: dict[str, Any]
    metrics: dict[str, Any]
    artifact_sha256: str
    artifact_bytes: int
    parent: str | None  # the champion when this version was registered
    notes: str
    training: dict[str, Any]  # TrainedModel.summary(): threshold, rows, label rate, duration, versions ...
    artifact: str = ARTIFACT_NAME
    schema: int = CARD_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ModelCard:
        names = {f.name for f in dataclasses.fields(cls)}
        card = cls(**{k: v for k, v in record.items() if k in names})
        validate_version(card.version)
        return card


@dataclass(frozen=True)
class ChampionRecord:
    """The champion pointer (``champion.json``) and, as a line, one entry of the history."""

    version: str
    set_at: str
    reason: str
    action: str  # promote | rollback
    replaced: str | None  # the champion before this change
    rollback_stack: list[str]  # earlier champions, most recent last: where `rollback` goes
    actor: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ChampionRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        pointer = cls(**{k: v for k, v in record.items() if k in names})
        validate_version(pointer.version)
        for version in pointer.rollback_stack:
            validate_version(version)
        return pointer


def _window(training_window: tuple[date | str, date | str]) -> dict[str, str]:
    start, end = (d if isinstance(d, date) else date.fromisoformat(str(d)) for d in training_window)
    if isinstance(start, datetime) or isinstance(end, datetime):
        start, end = (d.date() if isinstance(d, datetime) else d for d in (start, end))
    if start > end:
        raise ValueError(f"training window starts after it ends: {start} > {end}")
    return {"start": start.isoformat(), "end": end.isoformat()}


# --- the registry ----------------------------------------------------------------------------------


class ModelRegistry:
    def __init__(self, storage: ObjectStorage) -> None:
        self.storage = storage

    @classmethod
    def local(cls, path: Path | str | None = None) -> ModelRegistry:
        """A registry in a folder; by default ``$DP_DATA_DIR/models`` (``data/models``)."""
        if path is None:
            from dataplatform.lib.settings import Settings

            path = Settings.from_env().data_dir / "models"
        return cls(LocalStorage(path))

    @classmethod
    def s3(cls, client: Any, bucket: str, prefix: str = "models") -> ModelRegistry:
        return cls(S3Storage(client, bucket, prefix))

    def __repr__(self) -> str:
        return f"ModelRegistry({self.storage.describe()})"

    # keys are built only here, from constants and validated ids
    @staticmethod
    def _key(version: str, name: str) -> str:
        return f"versions/{validate_version(version)}/{name}"

    # --- versions ---

    def register(
        self,
        trained: TrainedModel,
        *,
        training_window: tuple[date | str, date | str],
        fingerprint: str,
        metrics: Mapping[str, Any] | Any | None = None,
        notes: str = "",
    ) -> ModelCard:
        """Store ``trained`` as a new version (artifact, then card) and return its card."""
        import joblib

        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError("fingerprint must be a non-empty string (see frame_fingerprint)")
        window = _window(training_window)
        metrics_dict = dict(metrics or {}) if metrics is None or not hasattr(metrics, "to_dict") else metrics.to_dict()
        buffer = io.BytesIO()
        joblib.dump(trained, buffer, compress=3)
        artifact = buffer.getvalue()
        sha = hashlib.sha256(artifact).hexdigest()
        taken = [_version_order(v)[0] for v in self.storage.children("versions") if _VERSION_RE.fullmatch(v)]
        version = f"v{max(taken, default=0) + 1:04d}-{sha[:8]}"
        pointer = self._pointer()
        summary = trained.summary()
        card = ModelCard(
            version=version,
            created_at=_now(),
            training_window=window,
            data_fingerprint=fingerprint,
            feature_columns=list(trained.feature_columns),
            categorical_columns=list(trained.categorical_columns),
            params=_jsonable(trained.params),
            metrics=_jsonable(metrics_dict),
            artifact_sha256=sha,
            artifact_bytes=len(artifact),
            parent=pointer.version if pointer else None,
            notes=notes,
            training=_jsonable({k: v for k, v in summary.items() if k not in ("params", "feature_columns")}),
        )
        self.storage.write(self._key(version, ARTIFACT_NAME), artifact)
        self.storage.write(self._key(version, CARD_NAME), _dumps(card.to_dict()))
        return card

    def get_card(self, version: str) -> ModelCard:
        try:
            raw = self.storage.read(self._key(version, CARD_NAME))
        except StorageNotFoundError:
            raise NotFoundError(f"no model version {version} in {self.storage.describe()}") from None
        card = ModelCard.from_dict(json.loads(raw))
        if card.version != version:
            raise ArtifactIntegrityError(f"the card stored under {version} describes {card.version}")
        return card

    def list_versions(self) -> list[ModelCard]:
        """Complete versions (with a card), oldest first."""
        cards = []
        for name in sorted(
            (v for v in self.storage.children("versions") if _VERSION_RE.fullmatch(v)), key=_version_order
        ):
            try:
                cards.append(self.get_card(name))
            except NotFoundError:  # artifact written, card not (yet): incomplete
                continue
        return cards

    def load(self, version: str) -> TrainedModel:
        """The model of ``version``, after checking the artifact's sha256 against the card."""
        import joblib

        card = self.get_card(version)
        data = self.storage.read(self._key(version, ARTIFACT_NAME))
        actual = hashlib.sha256(data).hexdigest()
        if actual != card.artifact_sha256:
            raise ArtifactIntegrityError(
                f"artifact of {version} has sha256 {actual}, but its card records {card.artifact_sha256}; "
                "refusing to load it"
            )
        trained: TrainedModel = joblib.load(io.BytesIO(data))
        return trained

    # --- champion ---

    def _pointer(self) -> ChampionRecord | None:
        try:
            raw = self.storage.read(CHAMPION_NAME)
        except StorageNotFoundError:
            return None
        return ChampionRecord.from_dict(json.loads(raw))

    def champion_record(self) -> ChampionRecord | None:
        return self._pointer()

    def champion(self) -> ModelCard | None:
        pointer = self._pointer()
        return self.get_card(pointer.version) if pointer else None

    def load_champion(self) -> TrainedModel | None:
        pointer = self._pointer()
        return self.load(pointer.version) if pointer else None

    def history(self) -> list[ChampionRecord]:
        """Every promotion and rollback, oldest first."""
        try:
            raw = self.storage.read(HISTORY_NAME).decode()
        except StorageNotFoundError:
            return []
        return [ChampionRecord.from_dict(json.loads(line)) for line in raw.splitlines() if line.strip()]

    def _set_champion(self, record: ChampionRecord) -> ChampionRecord:
        try:
            history = self.storage.read(HISTORY_NAME)
        except StorageNotFoundError:
            history = b""
        line = json.dumps(_jsonable(record.to_dict()), sort_keys=True, allow_nan=False).encode() + b"\n"
        self.storage.write(HISTORY_NAME, history + line)
        self.storage.write(CHAMPION_NAME, _dumps(record.to_dict()))  # the pointer last
        return record

    def promote(self, version: str, reason: str) -> ChampionRecord:
        """Make ``version`` the champion; the current one goes on the rollback stack."""
        self.get_card(version)  # validates the id and that the version exists
        current = self._pointer()
        if current and current.version == version:
            raise RegistryError(f"{version} is already the champion")
        stack = [*current.rollback_stack, current.version] if current else []
        return self._set_champion(
            ChampionRecord(
                version=version,
                set_at=_now(),
                reason=reason,
                action="promote",
                replaced=current.version if current else None,
                rollback_stack=stack,
                actor=_actor(),
            )
        )

    def rollback(self, to_version: str | None = None, reason: str = "rollback") -> ChampionRecord:
        """Restore the previous champion, or ``to_version``.

        Without ``to_version`` the top of the rollback stack (the champion before the current one)
        returns and leaves the stack, so repeated rollbacks walk back through earlier champions.
        With ``to_version``: if it was an earlier champion, everything promoted after it is undone
        (the stack is cut below it); otherwise it is set like a promotion (current on the stack).
        """
        if to_version is not None:
            validate_version(to_version)
        current = self._pointer()
        if current is None:
            raise RegistryError("there is no champion to roll back from")
        if to_version is None:
            if not current.rollback_stack:
                raise RegistryError(f"{current.version} is the first champion; there is no previous one")
            target, stack = current.rollback_stack[-1], current.rollback_stack[:-1]
            self.get_card(target)
        else:
            self.get_card(to_version)
            target = to_version
            if target == current.version:
                raise RegistryError(f"{target} is already the champion")
            if target in current.rollback_stack:
                cut = len(current.rollback_stack) - 1 - current.rollback_stack[::-1].index(target)
                stack = current.rollback_stack[:cut]
            else:
                stack = [*current.rollback_stack, current.version]
        return self._set_champion(
            ChampionRecord(
                version=target,
                set_at=_now(),
                reason=reason,
                action="rollback",
                replaced=current.version,
                rollback_stack=stack,
                actor=_actor(),
            )
        )


# --- CLI ----------------------------------------------------------------------------------------------


def registry_from_root(root: str | None) -> ModelRegistry:
    """A registry from ``--root``: a folder, ``s3://bucket/prefix``, or None for the default folder."""
    return ModelRegistry.local() if root is None else ModelRegistry(open_storage(root, s3_client_from_env))


def _metric(card: ModelCard, name: str) -> str:
    value = card.metrics.get(name)
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _print_list(registry: ModelRegistry) -> None:
    pointer = registry.champion_record()
    cards = registry.list_versions()
    if not cards:
        print(f"no model versions in {registry.storage.describe()}")
        return
    print(f"{'':2}{'version':<16} {'created_at':<26} {'window':<23} {'auc':>7} {'recall@k':>8} {'rows':>10}  notes")
    for card in cards:
        mark = "* " if pointer and pointer.version == card.version else "  "
        window = f"{card.training_window['start']}..{card.training_window['end']}"
        rows = card.training.get("training_rows", "-")
        print(
            f"{mark}{card.version:<16} {card.created_at:<26} {window:<23} {_metric(card, 'auc'):>7} "
            f"{_metric(card, 'recall_at_k'):>8} {rows!s:>10}  {card.notes}"
        )
    print("* champion" if pointer else "no champion set")


def main(argv: Sequence[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        default=argparse.SUPPRESS,
        help="registry root: a folder or s3://bucket/prefix (default: $DP_DATA_DIR/models)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m dataplatform.lib.registry",
        parents=[common],
        description="Inspect the model registry, promote a version, roll back.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], help="all versions, oldest first; * marks the champion")
    commands.add_parser("history", parents=[common], help="champion changes, oldest first")
    show = commands.add_parser("show", parents=[common], help="a version's card as JSON")
    show.add_argument("version")
    promote = commands.add_parser("promote", parents=[common], help="make a version the champion")
    promote.add_argument("version")
    promote.add_argument("--reason", required=True)
    rollback = commands.add_parser("rollback", parents=[common], help="restore the previous (or a given) champion")
    rollback.add_argument("--to", dest="to_version", default=None)
    rollback.add_argument("--reason", default="manual rollback (CLI)")
    args = parser.parse_args(argv)

    try:
        registry = registry_from_root(getattr(args, "root", None))
        if args.command == "list":
            _print_list(registry)
        elif args.command == "history":
            for entry in registry.history():
                print(
                    f"{entry.set_at}  {entry.action:<8} {entry.version:<16} (was {entry.replaced or '-'}) "
                    f"by {entry.actor}: {entry.reason}"
                )
        elif args.command == "show":
            pointer = registry.champion_record()
            record = registry.get_card(args.version).to_dict()
            record["is_champion"] = bool(pointer and pointer.version == args.version)
            print(json.dumps(record, indent=2, sort_keys=True))
        elif args.command == "promote":
            entry = registry.promote(args.version, args.reason)
            print(f"champion is now {entry.version} (was {entry.replaced or '-'})")
        elif args.command == "rollback":
            entry = registry.rollback(args.to_version, reason=args.reason)
            print(f"rolled back: champion is now {entry.version} (was {entry.replaced})")
    except RegistryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
