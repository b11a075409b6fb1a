"""Every warehouse table is declared once (lib/tables.py), and the declaration is what the warehouse holds."""

import importlib.util
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataplatform.lib import tables, warehouse

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "dataplatform"


def test_a_new_warehouse_holds_every_declared_table_with_its_columns_key_and_nulls(tmp_path: Path) -> None:
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        held = {row[0] for row in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert held == {table.name for table in tables.TABLES}
        for table in tables.TABLES:
            described = {row[0]: row for row in con.sql(f"DESCRIBE {table.name}").fetchall()}
            assert list(described) == list(table.columns), table.name
            for name, dtype in table.columns.items():
                _, duck_type, null, key, *_ = described[name]
                assert duck_type == tables.duckdb_type(dtype), (table.name, name)
                assert (null == "NO") == (name in table.required or (table.key_enforced and name in table.key))
                assert (key == "PRI") == (table.key_enforced and name in table.key), (table.name, name)


def test_a_frame_of_the_declared_columns_reads_back_with_the_same_dtypes(tmp_path: Path) -> None:
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        for table in tables.TABLES:
            con.register("declared", pl.DataFrame(schema=table.columns))
            con.sql(f"INSERT INTO {table.name} BY NAME SELECT * FROM declared")
            con.unregister("declared")
            read = con.sql(f"SELECT * FROM {table.name}").pl()
            assert dict(read.schema) == dict(table.columns), table.name


def test_a_warehouse_from_before_a_column_was_added_gets_it_on_connect(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))
    for table in tables.TABLES:
        first = [f'"{n}" {tables.duckdb_type(d)}' for n, d in table.columns.items() if n not in table.added]
        old.sql(f"CREATE TABLE {table.name} ({', '.join(first)})")
    old.close()
    with warehouse.connect(path) as con:
        for table in (t for t in tables.TABLES if t.added):
            held = [row[0] for row in con.sql(f"DESCRIBE {table.name}").fetchall()]
            assert set(table.added) <= set(held), table.name


def test_no_module_but_the_declarations_creates_a_table() -> None:
    creating = re.compile(r"CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+|TEMPORARY\s+)?TABLE", re.IGNORECASE)
    found = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "tables.py" and creating.search(path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize("table", tables.TABLES, ids=lambda t: t.name)
def test_each_declared_writer_exists_and_writes_the_table(table: tables.Table) -> None:
    constant = next(name for name, value in vars(tables).items() if value is table)
    for module in table.writers:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        source = Path(spec.origin).read_text()
        assert f"tables.{constant}" in source or re.search(rf"\b{table.name}\b", source), (module, table.name)


def test_a_declaration_naming_a_column_it_does_not_have_or_adding_one_before_the_last_is_refused() -> None:
    columns = pl.Schema({"a": pl.String(), "b": pl.String()})
    with pytest.raises(ValueError, match="does not have"):
        tables.Table("t", columns, ("x",), key=("c",))
    with pytest.raises(ValueError, match="last"):
        tables.Table("t", columns, ("x",), added=("a",))
