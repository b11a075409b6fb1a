"""The one transform both ingestion modes share: records in, valid events and quarantine out.

Steps, all columnar over the whole batch:
1. map input names to the contract (aliases), pack unknown columns into `extras` (JSON);
2. parse text into the contract's dtypes, noting values that were present but unparseable (typed
   input the contract keeps, see `readers`, is only converted);
3. derive a content-based `event_id` where the producer sent none;
4. validate with the Pandera contract and turn its failure cases into per-row reason codes;
5. split valid rows from quarantined ones; of rows repeating an `event_id`, the first wins: a repeat
   with the same content is a duplicate, one with other content is quarantined as `event_id:conflict`
   (pointing at the kept record in `detail`): it is data the producer sent, and is never dropped.

A quarantined record's `event_date` is the day it is counted on: its partition (history) or its
arrival day (stream), which the caller sets; the day its timestamp claims is `claimed_date`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from dataplatform.lib.contract import (
    COLUMN_ALIASES,
    CONTRACT_COLUMNS,
    UTC_DATETIME,
    EventRecord,
    event_dtypes,
    typed_value,
)
from dataplatform.lib.readers import as_text
from dataplatform.lib.warehouse import scratch

TEXT_COLUMNS = ("event_id", "user_id", "event_type", "category", "brand", "session_id")
ROW = "_row"
PARSED = "__parsed"
RECORD_COLUMNS = ("source_file", "source_row")

# Pandera check names as reason codes: short, stable words an analyst can group by.
CHECK_REASON = {
    "not_nullable": "missing",
    "greater_than_or_equal_to": "below_minimum",
    "less_than_or_equal_to": "above_maximum",
    "isin": "not_allowed",
    "str_length": "bad_length",
}

# Epoch numbers: below 1e11 are seconds (1e11 s is the year 5138), below 1e14 milliseconds,
# above that microseconds.
EPOCH_SECONDS_LIMIT = 1e11
EPOCH_MILLIS_LIMIT = 1e14
# Hardening fix: epoch microseconds outside Python's datetime range (0001-01-01 to 9999-12-31, e.g.
# epoch nanoseconds) made Pandera's checks crash the whole batch; such a number is unparseable.
EPOCH_MICROS_RANGE = (-62_135_596_800_000_000, 253_402_300_799_999_999)


QUARANTINE_SCHEMA = pl.Schema(
    {
        "source_file": pl.String(),
        "source_row": pl.Int64(),
        "reasons": pl.List(pl.String()),
        "raw_record": pl.String(),
        "event_date": pl.Date(),  # the day the record is counted on: its partition or arrival day (set by ingest)
        "claimed_date": pl.Date(),  # the day of the record's own timestamp, when it parsed
        "detail": pl.String(),  # JSON context of a reason, e.g. the record an `event_id:conflict` lost to
    }
)
CONFLICT_REASON = "event_id:conflict"
# A repeated event_id is a plain duplicate only when every contract field equals the kept record's.
CONTENT_COLUMNS = CONTRACT_COLUMNS


@dataclass(frozen=True)
class TransformResult:
    valid: pl.DataFrame  # contract columns + event_date + source_file, source_row; unique event_id
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA; event_date left null for the caller to set
    rows_in: int
    duplicates: int  # valid rows dropped because an earlier row had the same event_id and content
    records: pl.DataFrame  # the input, to quarantine rows later found to conflict with a held event

    def conflict_quarantine(self, conflicts: pl.DataFrame) -> pl.DataFrame:
        """Quarantine rows for valid rows whose event_id another record holds with other content.

        `conflicts`: source_file, source_row of the losing rows, and kept_batch, kept_file, kept_row.
        """
        return _conflict_quarantine(self.records, conflicts)


def _raw_record(records: pl.DataFrame) -> pl.Expr:
    # The raw record keeps the producer's own column names, so a replay after a contract fix
    # (a new alias, say) is read exactly as the original was.
    raw_columns = [name for name in records.columns if name not in RECORD_COLUMNS]
    if not raw_columns:
        return pl.lit("{}").alias("raw_record")
    return json_object(raw_columns, records.schema).fill_null("{}").alias("raw_record")


def _conflict_quarantine(records: pl.DataFrame, conflicts: pl.DataFrame) -> pl.DataFrame:
    key = ["source_file", "source_row"]
    kept = pl.struct(
        pl.col("kept_batch").alias("batch_id"), pl.col("kept_file").alias("source_file"),
        pl.col("kept_row").alias("source_row"),
    )  # fmt: skip
    raw = records.join(conflicts.select(key), on=key, how="semi")
    return (
        conflicts.join(raw.select(*key, _raw_record(raw)), on=key, how="left")
        .select(
            *key,
            pl.lit([CONFLICT_REASON], dtype=pl.List(pl.String)).alias("reasons"),
            "raw_record",
            pl.lit(None, dtype=pl.Date).alias("event_date"),
            pl.col("claimed_date"),
            pl.struct(kept.alias("kept")).struct.json_encode().alias("detail"),
        )
        .sort(key)
    )


def apply_aliases(records: pl.DataFrame) -> pl.DataFrame:
    """Rename aliased input columns to contract names and pack the rest into `extras`."""
    frame = records
    for alias, name in COLUMN_ALIASES.items():
        if alias in frame.columns:
            # A file may mix both names (producers change); the contract's name wins per row. Aliases are
            # always text: a typed contract column merged with one is merged as text.
            merged = pl.coalesce(as_text(name, frame.schema[name]), alias) if name in frame.columns else pl.col(alias)
            frame = frame.with_columns(merged.alias(name)).drop(alias)
    known = set(CONTRACT_COLUMNS) | set(RECORD_COLUMNS)
    unknown = [name for name in frame.columns if name not in known]
    packed = [*unknown, "extras"] if "extras" in frame.columns else unknown
    extras = (json_object(packed, frame.schema) if packed else pl.lit(None, dtype=pl.String)).alias("extras")
    missing = [pl.lit(None, dtype=pl.String).alias(name) for name in CONTRACT_COLUMNS if name not in frame.columns]
    return frame.with_columns(*missing).with_columns(extras).select(*CONTRACT_COLUMNS, *RECORD_COLUMNS)


def json_object(columns: list[str], schema: pl.Schema) -> pl.Expr:
    """The row's non-null columns as one JSON object of text values, keys sorted (null when there are none).

    Hardening fix: a struct's JSON also named, as null, every column of every other file in the
    batch, in the batch's column order, so a record's `extras` (and quarantined `raw_record`)
    depended on what it was batched with.
    """
    fields = []
    for name in sorted(columns):
        text = pl.col(name) if schema[name] == pl.String else as_text(name, schema[name])
        encoded = pl.struct(text.alias("v")).struct.json_encode()  # {"v":<value>}
        value = encoded.str.slice(5, encoded.str.len_chars() - 6)
        fields.append(
            pl.when(pl.col(name).is_not_null()).then(pl.lit(json.dumps(name, ensure_ascii=False) + ":") + value)
        )
    body = pl.concat_str(fields, separator=",", ignore_nulls=True)
    return pl.when(pl.any_horizontal(pl.col(columns).is_not_null())).then(pl.lit("{") + body + pl.lit("}"))


# ISO-8601 with a `T` and a numeric offset, as most producers write it: read first, directly.
# Whatever it reads, _parse_timestamp reads the same way.
CANONICAL_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%z"


def _parse_timestamp(text: pl.Expr) -> pl.Expr:
    numeric = text.cast(pl.Float64, strict=False)
    micros = (
        pl.when(numeric.abs() < EPOCH_SECONDS_LIMIT)
        .then(numeric * 1e6)
        .when(numeric.abs() < EPOCH_MILLIS_LIMIT)
        .then(numeric * 1e3)
        .otherwise(numeric)
    )
    as_int = micros.round(0).cast(pl.Int64, strict=False)
    from_epoch = pl.when(as_int.is_between(*EPOCH_MICROS_RANGE)).then(as_int).cast(UTC_DATETIME)
    iso = text.str.replace(r"^(\d{4}-\d{2}-\d{2})[Tt]", "$1 ").str.replace(r"(?i)\s*(z|utc)$", "+00:00")
    with_offset = iso.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", strict=False, time_zone="UTC", time_unit="us")
    # No offset given: the platform reads it as UTC (documented in the README).
    naive = iso.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us").dt.replace_time_zone("UTC")
    return pl.when(text.str.contains(r"^-?\d+(\.\d+)?$")).then(from_epoch).otherwise(pl.coalesce(with_offset, naive))


def _parse_integer(text: pl.Expr) -> pl.Expr:
    as_float = text.cast(pl.Float64, strict=False)
    integral = pl.when(as_float.is_finite() & (as_float == as_float.floor()) & (as_float.abs() < 2**53))
    return pl.coalesce(text.cast(pl.Int64, strict=False), integral.then(as_float).cast(pl.Int64, strict=False))


def parse_records(records: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse text columns into contract dtypes (typed ones are converted). Returns (typed frame, reasons:
    unparseable or structured)."""
    text = [name for name in CONTRACT_COLUMNS[:-1] if records.schema[name] == pl.String]  # extras is JSON: as is
    stripped = records.with_columns(pl.col(name).str.strip_chars() for name in text)
    stripped = stripped.with_columns(pl.col("event_type").str.to_lowercase())
    # Empty optional text means "absent"; empty user_id stays empty so the contract can name it.
    absent_when_empty = [name for name in ("event_id", "category", "brand", "session_id") if name in stripped.columns]
    stripped = stripped.with_columns(
        pl.when(pl.col(name) == "").then(None).otherwise(pl.col(name)).alias(name) for name in absent_when_empty
    )
    text_parsers = {
        "timestamp": pl.col("timestamp").str.to_datetime(
            CANONICAL_TIMESTAMP_FORMAT, strict=False, time_zone="UTC", time_unit="us"
        ),
        "product_id": _parse_integer(pl.col("product_id")),
        "price": pl.col("price").cast(pl.Float64, strict=False),
    }
    parsed_exprs = {
        name: parser if name in text else typed_value(name, records.schema[name])
        for name, parser in text_parsers.items()
    }
    # Parse once into side columns, flag text that was present but did not parse, then swap.
    parsed = stripped.with_row_index(ROW).with_columns(
        pl.col(ROW).cast(pl.Int64), *(expr.alias(f"{name}{PARSED}") for name, expr in parsed_exprs.items())
    )
    # Timestamps the canonical format did not read go through every accepted form (a few per batch,
    # usually): the full parser costs three times the canonical one on every row.
    if "timestamp" in text:
        others = parsed.filter(pl.col(f"timestamp{PARSED}").is_null() & pl.col("timestamp").is_not_null())
        if others.height:
            reparsed = others.select(ROW, _parse_timestamp(pl.col("timestamp")).alias(f"timestamp{PARSED}"))
            parsed = parsed.update(reparsed, on=ROW)
    failed = [
        pl.when(pl.col(name).is_not_null() & (pl.col(name) != "") & pl.col(f"{name}{PARSED}").is_null())
        .then(pl.lit(f"{name}:unparseable"))
        .alias(name)
        for name in parsed_exprs
        if name in text
    ]
    unparseable = (
        parsed.select(ROW, *failed)
        .unpivot(index=ROW, value_name="reason")
        .drop_nulls("reason")
        .select(ROW, "reason", pl.col("variable").alias("column"))
        if failed
        else pl.DataFrame(schema={ROW: pl.Int64, "reason": pl.String, "column": pl.String})
    )
    typed = parsed.drop(list(parsed_exprs)).rename({f"{name}{PARSED}": name for name in parsed_exprs})
    return typed, pl.concat([unparseable, structured_reasons(typed)])


def structured_reasons(typed: pl.DataFrame) -> pl.DataFrame:
    """`<field>:structured` for a JSON object or array in a text field (identifiers, type, category, brand).

    The readers hand nested JSON values on as their JSON text, so `user_id: {"a": 1}` would land as the
    user `{"a": 1}`: structure where the contract wants text is a type error. A text that merely starts
    with a bracket (`[unbranded]`) is not valid JSON and stays text.
    """
    columns = [name for name in TEXT_COLUMNS if name in typed.columns]
    bracketed = [pl.col(name).str.contains(r"^[\[{]") for name in columns]
    # Rows are narrowed before the unpivot: almost none holds a bracket, and unpivoting every row cost more.
    candidates = (
        typed.filter(pl.any_horizontal(bracketed))
        .select(ROW, *columns)
        .unpivot(index=ROW, variable_name="column", value_name="text")
        .filter(pl.col("text").str.contains(r"^[\[{]"))
    )
    if candidates.height == 0:
        return pl.DataFrame(schema={ROW: pl.Int64, "reason": pl.String, "column": pl.String})
    with scratch() as con:
        con.register("candidates", candidates)
        # json_type only where json_valid: it raises on text that is not JSON.
        structured = con.sql(
            "SELECT * FROM candidates"
            " WHERE (CASE WHEN json_valid(text) THEN json_type(text) END) IN ('OBJECT', 'ARRAY')"
        ).pl()
    frame: pl.DataFrame = structured.select(ROW, (pl.col("column") + ":structured").alias("reason"), "column")
    return frame


def derive_event_ids(typed: pl.DataFrame) -> pl.DataFrame:
    """Fill absent event ids with a hash of the record's content (stable across versions and formats)."""
    fields = [
        pl.col("user_id"),
        pl.col("timestamp").dt.epoch("us").cast(pl.String),
        pl.col("event_type"),
        pl.col("product_id").cast(pl.String),
        pl.col("session_id"),
        pl.col("price").cast(pl.String),
        pl.col("category"),
        pl.col("brand"),
    ]
    # Absent fields hash as "\x00" so that (a, absent) and (absent, a) differ.
    content = pl.concat_str(
        [field.fill_null("\x00") for field in fields],
        separator="\x1f",
    )
    keys = typed.select(pl.when(pl.col("event_id").is_null()).then(content).alias("content"))
    # DuckDB's sha256 is vectorized and, unlike Polars' hash(), stable across releases.
    with scratch() as con:
        con.register("event_keys", keys)
        hashed = con.sql(
            "SELECT CASE WHEN content IS NULL THEN NULL ELSE 'h' || left(sha256(content), 31) END AS derived"
            " FROM event_keys"
        ).pl()
    return typed.with_columns(pl.coalesce(pl.col("event_id"), hashed["derived"]).alias("event_id"))


def contract_schema(model: type[pa.DataFrameModel] | pa.DataFrameSchema) -> pa.DataFrameSchema:
    return model if isinstance(model, pa.DataFrameSchema) else model.to_schema()


def contract_reasons(
    typed: pl.DataFrame, model: type[pa.DataFrameModel] | pa.DataFrameSchema = EventRecord
) -> pl.DataFrame:
    """Run a Pandera contract over the whole frame; one row per (row, failed check).

    Row numbers are positions in `typed`; a schema-level failure (a missing column or a wrong
    dtype) has no row and is raised, since the platform builds these frames itself.
    """
    try:
        schema = contract_schema(model)
        schema.validate(typed.select(list(schema.columns)), lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return pl.DataFrame(schema={ROW: pl.Int64, "reason": pl.String, "column": pl.String})
    if cases["index"].null_count():
        raise TypeError(f"contract schema-level failure (a bug in parsing): {cases.filter(pl.col('index').is_null())}")
    check = pl.col("check").str.replace(r"\(.*$", "")
    check = check.replace(CHECK_REASON)
    frame: pl.DataFrame = cases.select(
        pl.col("index").cast(pl.Int64).alias(ROW),
        pl.concat_str(pl.col("column"), pl.lit(":"), check).alias("reason"),
        "column",
    )
    return frame


def transform(records: pl.DataFrame, malformed: pl.DataFrame) -> TransformResult:
    """Apply the contract to a batch of records (plus lines that were not records at all)."""
    frame = apply_aliases(records)
    typed, unparseable = parse_records(frame)
    typed = derive_event_ids(typed)
    contract = contract_reasons(typed)
    # An unparseable required value is also "missing" to the contract; name the cause only once.
    contract = contract.join(unparseable.select(ROW, "column"), on=[ROW, "column"], how="anti")
    reasons = pl.concat([unparseable, contract]).group_by(ROW).agg(pl.col("reason").unique().sort().alias("reasons"))
    bad_rows = reasons[ROW]
    good = typed.filter(~pl.col(ROW).is_in(bad_rows.implode()))
    valid = good.select(*CONTRACT_COLUMNS, *RECORD_COLUMNS).cast(event_dtypes())
    valid = valid.with_columns(pl.col("timestamp").dt.date().alias("event_date"))
    unique, conflicts, duplicates = split_repeats(valid)

    quarantined = pl.concat(
        [
            records.with_row_index(ROW)
            .with_columns(pl.col(ROW).cast(pl.Int64))
            .join(reasons, on=ROW, how="inner")
            .join(typed.select(ROW, pl.col("timestamp").dt.date().alias("claimed_date")), on=ROW, how="left")
            .sort(ROW)
            .select(
                "source_file",
                "source_row",
                "reasons",
                _raw_record(records),
                pl.lit(None, dtype=pl.Date).alias("event_date"),
                "claimed_date",
                pl.lit(None, dtype=pl.String).alias("detail"),
            ),
            _conflict_quarantine(records, conflicts),
            malformed.select(
                "source_file",
                "source_row",
                pl.lit(["record:malformed_json"]).alias("reasons"),
                "raw_record",
                pl.lit(None, dtype=pl.Date).alias("event_date"),
                pl.lit(None, dtype=pl.Date).alias("claimed_date"),
                pl.lit(None, dtype=pl.String).alias("detail"),
            ),
        ],
        how="vertical_relaxed",
    ).select(list(QUARANTINE_SCHEMA))
    rows_in = typed.height + malformed.height
    return TransformResult(unique, quarantined, rows_in, duplicates, records)


def split_repeats(valid: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(first row of each event_id, conflicting repeats, count of identical repeats).

    Conflicts carry source_file, source_row, claimed_date and the kept record's kept_batch (null:
    this batch), kept_file, kept_row.
    """
    first = pl.col("event_id").is_first_distinct()
    # Content is compared only among rows whose event_id repeats (a handful per batch): a window per
    # column over every row's event_id cost more than the rest of the transform together. Repeats are
    # found with one count per id (a third of the cost of is_first_distinct plus is_duplicated over
    # every row); which of them came first is only asked among them.
    same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(c).first().over("event_id")) for c in CONTENT_COLUMNS)
    marked = valid.with_row_index("_index").with_columns((pl.len().over("event_id") > 1).alias("_repeated"))
    repeated = marked.filter(pl.col("_repeated")).with_columns(first.alias("_first"), same.alias("_same"))
    later = repeated.filter(~pl.col("_first"))["_index"]
    unique = marked.filter(~pl.col("_index").is_in(later.implode())).drop("_index", "_repeated")
    kept = repeated.filter(pl.col("_first")).select(
        "event_id", pl.col("source_file").alias("kept_file"), pl.col("source_row").alias("kept_row")
    )
    conflicts = (
        repeated.filter(~pl.col("_first") & ~pl.col("_same"))
        .join(kept, on="event_id", how="left")
        .select(
            "source_file",
            "source_row",
            pl.col("event_date").alias("claimed_date"),
            pl.lit(None, dtype=pl.String).alias("kept_batch"),
            "kept_file",
            "kept_row",
        )
    )
    return unique, conflicts, valid.height - unique.height - conflicts.height
