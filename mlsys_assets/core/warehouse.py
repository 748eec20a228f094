"""Plain DuckDB helpers: partition replacement in one transaction, and fast reads into pandas.

Partitions are replaced with `DELETE ... WHERE partition_date = ?` + `INSERT` inside one transaction,
never `CREATE OR REPLACE TABLE` (which grows the file on every run): a rerun leaves exactly one copy,
and a crash mid-write leaves the old partition whole.

The partition column `partition_date` is a DATE for daily and weekly partitions (the key `2013-01-07`) and a
TIMESTAMP for hourly ones (the key `2013-01-07-05:00` is stored as `2013-01-07 05:00:00`, the hour's start).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

PARTITION_COLUMN = "partition_date"
HOURLY_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}:\d{2}$")


def partition_type(key: str) -> str:
    """The SQL type of the partition column for a key: TIMESTAMP for an hourly key, DATE otherwise."""
    return "TIMESTAMP" if HOURLY_KEY.match(key) else "DATE"


def partition_param(key: str) -> str:
    """A partition key as the SQL value of the partition column (`2013-01-07-05:00` -> `2013-01-07 05:00:00`)."""
    return f"{key[:10]} {key[11:]}:00" if HOURLY_KEY.match(key) else key


def partition_key(value: object) -> str:
    """The partition key of a value of the partition column read back from DuckDB (a date, a timestamp or a key)."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d-%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def in_partitions(keys: Sequence[str], column: str = PARTITION_COLUMN) -> tuple[str, list[object]]:
    """`column IN (the keys)` as SQL and its one parameter."""
    kind = partition_type(keys[0]) if keys else "DATE"
    return f"{column} IN (SELECT CAST(unnest(?) AS {kind}))", [[partition_param(k) for k in keys]]


@dataclass
class PartitionWrite:
    """Rows that replace one day of a table."""

    table: str
    frame: pd.DataFrame
    day: str


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Everything in the block commits together or not at all (rolled back on any exception, interrupts too)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        import duckdb

        with suppress(duckdb.Error):  # a failed COMMIT (a full disk) has rolled back already: keep its error
            con.execute("ROLLBACK")
        raise


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] | None = None) -> object:
    """The single value a query returns (its result fully consumed, as DuckDB 2 requires)."""
    return con.execute(sql, list(params or [])).fetchall()[0][0]


def use_schema(con: duckdb.DuckDBPyConnection, schema: str) -> duckdb.DuckDBPyConnection:
    """Point the connection at a system's schema (created on first use): its tables are `<system>.<table>` to a
    SQL user, and plain `<table>` to the engine's queries on this connection."""
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    con.execute(f'USE "{schema}"')
    return con


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether a table exists: `schema.table`, or a table of the connection's current schema."""
    schema, _, name = table.rpartition(".")
    return bool(scalar(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND "
                            "table_schema = coalesce(nullif(?, ''), current_schema())", [name, schema]))


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns of strings or None become pandas strings, so DuckDB does not guess their type; a column of
    dates (Python `date` objects) stays one, and DuckDB stores it as a DATE."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            present = out[column].dropna()
            if len(present) and all(type(v) is date for v in present):
                continue
            out[column] = out[column].astype("str").where(out[column].notna(), None)
    return out


def replace_partitions(con: duckdb.DuckDBPyConnection, writes: Sequence[PartitionWrite]) -> dict[str, int]:
    """Replace each (table, day) with its rows, all in one transaction; creates tables on first write."""
    counts: dict[str, int] = {}
    with transaction(con):
        for number, write in enumerate(writes):
            view = f"_incoming_{number}"
            con.register(view, _plain(write.frame))
            kind, value = partition_type(write.day), partition_param(write.day)
            if not table_exists(con, write.table):
                con.execute(f"CREATE TABLE {write.table} AS SELECT CAST(NULL AS {kind}) AS {PARTITION_COLUMN}, * "
                            f"FROM {view} LIMIT 0")
            con.execute(f"DELETE FROM {write.table} WHERE {PARTITION_COLUMN} = CAST(? AS {kind})", [value])
            con.execute(f"INSERT INTO {write.table} BY NAME SELECT CAST(? AS {kind}) AS {PARTITION_COLUMN}, * "
                        f"FROM {view}", [value])
            con.unregister(view)
            counts[write.table] = len(write.frame)
    return counts


def read_frame(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] | None = None) -> pd.DataFrame:
    """A query's result as pandas, through Arrow (about 5x faster than `.df()`)."""
    return con.sql(sql, params=list(params or [])).to_arrow_table().to_pandas()


def read_days(con: duckdb.DuckDBPyConnection, table: str, days: Iterable[str],
              columns: Sequence[str] | None = None, order_by: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of the given days of a partitioned table (an empty frame if the table does not exist)."""
    import pandas as pd

    days = list(days)
    if not table_exists(con, table):
        return pd.DataFrame(columns=list(columns or []))
    selected = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    order = ", ".join([PARTITION_COLUMN, *order_by])
    where, params = in_partitions(days)
    return read_frame(con, f"SELECT {selected} FROM {table} WHERE {where} ORDER BY {order}", params)


def count_rows(con: duckdb.DuckDBPyConnection, table: str, day: str) -> int:
    if not table_exists(con, table):
        return 0
    return int(scalar(con, f"SELECT count(*) FROM {table} WHERE {PARTITION_COLUMN} = CAST(? AS "
                           f"{partition_type(day)})", [partition_param(day)]))


def replace_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> int:
    """Replace all rows of an unpartitioned table in one transaction (DELETE + INSERT, no file growth)."""
    with transaction(con):
        con.register("_incoming", _plain(frame))
        if table_exists(con, table):
            con.execute(f"DELETE FROM {table}")
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
        else:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM _incoming")
        con.unregister("_incoming")
    return len(frame)


def partition_days(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The days a partitioned table holds rows for, oldest first."""
    if not table_exists(con, table):
        return []
    rows = con.execute(f"SELECT DISTINCT {PARTITION_COLUMN} FROM {table} ORDER BY 1").fetchall()
    return [partition_key(r[0]) for r in rows]
