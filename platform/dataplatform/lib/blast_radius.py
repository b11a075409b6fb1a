"""The blast radius of a selection of events: everything that was built from them.

    python -m dataplatform.lib.blast_radius --batch B [--file 'PATTERN'] [--prefix landing/producer-a/]
        [--since 2026-11-20T00:00:00Z] [--until ...] [--where 'price > 1000'] [--json]

A selection names records of the warehouse's `events` by any mix of batch ids, a source file
name or glob pattern, a landing prefix (a producer), a time range of their timestamps and
predicates on event columns. Its blast radius follows the lineage tables:

- the records' days and batches, and the lake files holding them;
- the daily certifications that passed with them (`day_certifications`);
- the feature days whose features or labels read them: the days themselves and later days whose
  28-day lookback reached them (`features/example_inputs` in the lake);
- the training sets built from those feature days (`training_sets`), the model versions trained on
  those sets (each model card's data fingerprint), and whether the champion is one of them;
- the drift and performance reports computed on those days or with those models.

Nothing in a selection is formatted into SQL: the query is one literal with a parameter per
criterion, and predicates are polars expressions on allow-listed columns.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from dataplatform.lib import featurestore, warehouse
from dataplatform.lib.lake import Lake, batch_of_file
from dataplatform.lib.quality import markdown_table
from dataplatform.lib.registry import ModelCard, registry_from_root
from dataplatform.lib.settings import Settings
from dataplatform.lib.storage import s3_client_from_env

# Columns a predicate may name, with the type its value is read as.
PREDICATE_COLUMNS: dict[str, pl.DataType] = {
    "event_id": pl.String(), "user_id": pl.String(), "event_type": pl.String(), "product_id": pl.Int64(),
    "category": pl.String(), "brand": pl.String(), "price": pl.Float64(), "session_id": pl.String(),
    "source_file": pl.String(), "batch_id": pl.String(), "event_date": pl.Date(),
}  # fmt: skip
_PREDICATE = re.compile(r"^\s*(\w+)\s*(is not null|is null|!=|<=|>=|=|<|>|in)\s*(.*?)\s*$", re.IGNORECASE)

SELECT_SQL = """
SELECT event_id, event_date, batch_id, source_file, user_id, event_type, product_id, category, brand, price,
       session_id
FROM events
WHERE (? OR batch_id IN (SELECT unnest(?::VARCHAR[])))
  AND (? IS NULL OR source_file GLOB ? OR parse_filename(source_file) GLOB ?)
  AND (? IS NULL OR starts_with(source_file, ?))
  AND (? IS NULL OR "timestamp" >= ?)
  AND (? IS NULL OR "timestamp" < ?)
"""


@dataclass(frozen=True)
class Predicate:
    column: str
    op: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Predicate:
        """`price > 1000`, `event_type = purchase`, `brand in a,b`, `category is null`."""
        match = _PREDICATE.match(text)
        if not match or match.group(1).lower() not in PREDICATE_COLUMNS:
            raise ValueError(f"not a predicate on an event column ({', '.join(PREDICATE_COLUMNS)}): {text!r}")
        column, op, value = match.group(1).lower(), match.group(2).lower(), match.group(3)
        if op.startswith("is") != (value == ""):
            raise ValueError(f"{op!r} takes {'no' if op.startswith('is') else 'a'} value: {text!r}")
        predicate = cls(column, op, value or None)
        try:
            predicate.expr()  # the value must read as the column's type
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"{value!r} is not a {PREDICATE_COLUMNS[column]} value for {column}") from exc
        return predicate

    def expr(self) -> pl.Expr:
        col, dtype = pl.col(self.column), PREDICATE_COLUMNS[self.column]
        if self.op == "is null":
            return col.is_null()
        if self.op == "is not null":
            return col.is_not_null()
        assert self.value is not None
        if self.op == "in":
            values = pl.Series([v.strip() for v in self.value.split(",")]).cast(dtype, strict=True)
            return col.is_in(values.to_list())
        value = pl.Series([self.value.strip().strip("'\"")]).cast(dtype, strict=True)[0]
        comparisons: dict[str, pl.Expr] = {
            "=": col == value, "!=": col != value, "<": col < value, "<=": col <= value, ">": col > value,
            ">=": col >= value,
        }  # fmt: skip
        return comparisons[self.op]

    def __str__(self) -> str:
        return f"{self.column} {self.op}{f' {self.value}' if self.value is not None else ''}"


@dataclass(frozen=True)
class Selection:
    """Records of `events` matching every criterion given (at least one is required)."""

    batch_ids: tuple[str, ...] = ()
    source_pattern: str | None = None  # a file name or glob, matched against the path and the base name
    landing_prefix: str | None = None  # the start of the source path: one producer's folder
    since: dt.datetime | None = None  # timestamps at or after
    until: dt.datetime | None = None  # timestamps before
    where: tuple[Predicate, ...] = field(default=())

    def __post_init__(self) -> None:
        if not (self.batch_ids or self.source_pattern or self.landing_prefix or self.since or self.until or self.where):
            raise ValueError("a selection needs at least one criterion")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"a time bound needs a UTC offset: {moment}")

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(
            since=self.since.isoformat() if self.since else None,
            until=self.until.isoformat() if self.until else None,
            batch_ids=sorted(self.batch_ids),
            where=sorted(str(p) for p in self.where),
        )
        return record

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.to_dict().items() if v not in (None, [], ())]
        return ", ".join(parts)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def params(self) -> list[Any]:
        pattern, prefix = self.source_pattern, self.landing_prefix
        return [
            not self.batch_ids, list(self.batch_ids), pattern, pattern, pattern, prefix, prefix,
            self.since, self.since, self.until, self.until,
        ]  # fmt: skip


def select_records(con: Any, selection: Selection) -> pl.DataFrame:
    """The selected records: event_id, event_date, batch_id, source_file (and the predicate columns)."""
    records: pl.DataFrame = con.sql(SELECT_SQL, params=selection.params()).pl()
    for predicate in selection.where:
        records = records.filter(predicate.expr())
    return records


@dataclass
class BlastRadius:
    selection: str
    records: int
    per_day: list[dict[str, Any]]  # event_date, batch_id, records
    lake_files: list[str]
    certifications: list[dict[str, Any]]  # days certified with the records (passed or not)
    feature_days: list[dt.date]
    training_sets: list[dict[str, Any]]
    model_versions: list[dict[str, Any]]
    champion: str | None
    champion_affected: bool
    reports: list[dict[str, Any]]  # drift and performance reports: kind, event_date, champion, why
    seconds: float = 0.0

    @property
    def affected_versions(self) -> list[str]:
        return [m["version"] for m in self.model_versions]

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = json.loads(json.dumps(asdict(self), default=str))
        return plain

    def to_markdown(self) -> str:
        champion = (
            f"**yes**: the champion `{self.champion}` was trained on them"
            if self.champion_affected
            else f"no (champion: `{self.champion or 'none'}`)"
        )
        sections = [
            f"**Selection:** {self.selection}  \n**Records:** {self.records}  \n**Champion affected:** {champion}",
            "### Records per day and batch\n" + markdown_table(pl.DataFrame(self.per_day), limit=60),
            "### Lake files\n" + ("\n".join(f"- `{f}`" for f in self.lake_files[:60]) or "_none_"),
            "### Certified days\n" + markdown_table(pl.DataFrame(self.certifications), limit=60),
            "### Feature days\n" + (", ".join(str(d) for d in self.feature_days) or "_none_"),
            "### Training sets\n" + markdown_table(pl.DataFrame(self.training_sets), limit=40),
            "### Model versions\n" + markdown_table(pl.DataFrame(self.model_versions), limit=40),
            "### Drift and performance reports\n" + markdown_table(pl.DataFrame(self.reports), limit=60),
        ]
        return "\n\n".join(sections)

    def to_text(self) -> str:
        return self.to_markdown().replace("### ", "").replace("**", "")


def _tables(con: Any) -> set[str]:
    return {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def _reports(con: Any, feature_days: list[dt.date], versions: list[str]) -> list[dict[str, Any]]:
    """Drift and performance reports of an affected feature day, or computed with an affected model."""
    present = _tables(con)
    found: list[tuple[str, dt.date, str]] = []
    if "drift_reports" in present:
        found += con.execute(
            "SELECT 'drift_report', event_date, champion FROM drift_reports "
            "WHERE event_date IN (SELECT unnest(?::DATE[])) OR champion IN (SELECT unnest(?::VARCHAR[]))",
            [feature_days, versions],
        ).fetchall()
    if "model_performance" in present:
        found += con.execute(
            "SELECT 'model_performance', event_date, champion FROM model_performance "
            "WHERE event_date IN (SELECT unnest(?::DATE[])) OR champion IN (SELECT unnest(?::VARCHAR[]))",
            [feature_days, versions],
        ).fetchall()
    rows = []
    for kind, day, champion in sorted(found):
        why = [w for w, hit in (("day", day in feature_days), ("model", champion in versions)) if hit]
        rows.append({"report": kind, "event_date": day, "champion": champion, "affected_by": "+".join(why)})
    return rows


def blast_radius(
    con: Any, lake: Lake, selection: Selection, cards: Sequence[ModelCard], champion: str | None
) -> BlastRadius:
    """Everything built from the selected records (see the module docstring)."""
    started = dt.datetime.now(dt.UTC)
    records = select_records(con, selection)
    per_day = (
        records.group_by("event_date", "batch_id").len("records").sort("event_date", "batch_id")
        if records.height
        else pl.DataFrame(schema={"event_date": pl.Date, "batch_id": pl.String, "records": pl.UInt32})
    )
    pairs = {(d, b) for d, b, _ in per_day.iter_rows()}
    days = sorted({d for d, _ in pairs})
    lake_files = [k for d in days for k in lake.event_keys(d) if (d, batch_of_file(k)) in pairs]
    certifications = con.sql(
        "SELECT event_date, passed, certified_at FROM day_certifications "
        "WHERE event_date IN (SELECT unnest(?::DATE[])) ORDER BY event_date",
        params=[days],
    ).pl()
    inputs = featurestore.read_example_inputs(lake)
    touched = inputs.join(per_day.select("event_date", "batch_id"), left_on=["input_day", "batch_id"],
                          right_on=["event_date", "batch_id"], how="semi")  # fmt: skip
    feature_days = sorted(touched["feature_day"].unique().to_list())
    sets = con.sql(
        "SELECT fingerprint, train_days, holdout_days, built_at FROM training_sets "
        "WHERE len(list_intersect(list_concat(train_days, holdout_days), ?::DATE[])) > 0 ORDER BY built_at",
        params=[feature_days],
    ).pl()
    set_ids = set(sets["fingerprint"].to_list())
    training_sets = [
        {
            "fingerprint": s["fingerprint"],
            "affected_train_days": len(set(s["train_days"]) & set(feature_days)),
            "affected_holdout_days": len(set(s["holdout_days"]) & set(feature_days)),
            "built_at": s["built_at"],
        }
        for s in sets.iter_rows(named=True)
    ]
    models = [
        {"version": c.version, "training_set": c.data_fingerprint, "window": f"{c.training_window}",
         "champion": c.version == champion}
        for c in cards
        if c.data_fingerprint in set_ids
    ]  # fmt: skip
    versions = [str(m["version"]) for m in models]
    return BlastRadius(
        selection=selection.describe(),
        records=records.height,
        per_day=per_day.to_dicts(),
        lake_files=lake_files,
        certifications=certifications.to_dicts(),
        feature_days=feature_days,
        training_sets=training_sets,
        model_versions=models,
        champion=champion,
        champion_affected=champion in versions,
        reports=_reports(con, feature_days, versions),
        seconds=(dt.datetime.now(dt.UTC) - started).total_seconds(),
    )


def parse_moment(text: str) -> dt.datetime:
    """An ISO-8601 timestamp; `Z` or no offset means UTC."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def selection_arguments(parser: argparse.ArgumentParser) -> None:
    """The selection's command-line options (shared with the retraction CLI)."""
    parser.add_argument("--batch", action="append", default=[], help="a batch id (repeatable)")
    parser.add_argument("--file", help="a source file name or glob pattern, e.g. 'producer-a-*.jsonl'")
    parser.add_argument("--prefix", help="a landing prefix: source paths starting with it (one producer)")
    parser.add_argument("--since", type=parse_moment, help="timestamps at or after (ISO-8601; no offset means UTC)")
    parser.add_argument("--until", type=parse_moment, help="timestamps before")
    parser.add_argument(
        "--where", action="append", default=[], type=Predicate.parse, help="'price > 1000' (repeatable)"
    )


def selection_from(args: argparse.Namespace) -> Selection:
    return Selection(tuple(args.batch), args.file, args.prefix, args.since, args.until, tuple(args.where))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    selection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    try:
        selection = selection_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    settings = Settings.from_env()
    registry = registry_from_root(settings.models_uri)
    champion = registry.champion()
    with warehouse.connect(settings.warehouse_path) as con:
        report = blast_radius(
            con, Lake.open(settings.lake_uri, s3_client_from_env), selection, registry.list_versions(),
            champion.version if champion else None,
        )  # fmt: skip
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
