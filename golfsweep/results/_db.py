"""The store's database: one SQLAlchemy engine on a SQLite file or on one sweep's schema of a
PostgreSQL server, with the transactions the store relies on, the same on both.

* A **write** is one transaction that holds the write lock from its start (SQLite ``BEGIN
  IMMEDIATE``; on PostgreSQL row locks, plus ``lock()`` for a read-then-write), so a
  compare-and-set such as the lease cannot interleave with another writer.
* A **snapshot** (a reader's ``Store(create=False)``) is one transaction that sees the database as
  of its first read (SQLite deferred ``BEGIN``; PostgreSQL ``REPEATABLE READ``), so a run is never
  read without its trial.

Connections run in autocommit mode and the transactions are spelled out in SQL, so neither
driver's implicit transaction handling gets in between. Each transaction takes a connection from a
small pool; on a server the pool pings it first, so a driver outlives a server restart or a dropped
idle connection between writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from golfsweep import storage
from golfsweep.errors import GolfsweepError
from golfsweep.storage import StoreLocation

# Column types by the Python type of a field; BLOB holds bytes (a script, a log) as they are.
_TYPES = {
    "sqlite": {"int": "INTEGER", "float": "REAL", "str": "TEXT", "bytes": "BLOB"},
    "postgresql": {"int": "BIGINT", "float": "DOUBLE PRECISION", "str": "TEXT", "bytes": "BYTEA"},
}
_BEGIN_WRITE = {"sqlite": "BEGIN IMMEDIATE", "postgresql": "BEGIN"}
_BEGIN_SNAPSHOT = {"sqlite": "BEGIN", "postgresql": "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"}


class Database:
    """The connection behind one ``Store``; not shared between threads."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self.schema = location.schema  # None on SQLite
        if location.is_server:
            self.engine = _server_engine(location)
        else:
            self.engine = sa.create_engine(
                sa.URL.create("sqlite", database=str(location.path)), isolation_level="AUTOCOMMIT",
                connect_args={"timeout": 30.0, "check_same_thread": False})
            sa.event.listen(self.engine, "connect", storage.sqlite_pragmas)
        self.dialect = self.engine.dialect.name
        self.types = _TYPES[self.dialect]
        self._snapshot: sa.Connection | None = None

    def close(self) -> None:
        self.end_snapshot()
        self.engine.dispose()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction; a reader's snapshot ends first (a write works on the latest state)."""
        self.end_snapshot()
        with self.engine.connect() as conn:
            conn.exec_driver_sql(_BEGIN_WRITE[self.dialect])
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            else:
                conn.exec_driver_sql("COMMIT")

    def begin_snapshot(self) -> None:
        """From now on reads see one snapshot, taken at the first read, until a write or ``close``."""
        if self._snapshot is None:
            conn = self.engine.connect()
            conn.exec_driver_sql(_BEGIN_SNAPSHOT[self.dialect])
            self._snapshot = conn

    def end_snapshot(self) -> None:
        if self._snapshot is not None:
            conn, self._snapshot = self._snapshot, None
            try:
                conn.exec_driver_sql("COMMIT")
            finally:
                conn.close()

    @contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """A connection to read with: the snapshot's, if one is open."""
        if self._snapshot is not None:
            yield self._snapshot
            return
        with self.engine.connect() as conn:
            yield conn

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[sa.Row]:
        with self.reading() as conn:
            return list(conn.execute(sa.text(sql), dict(params or {})))

    def lock(self, conn: sa.Connection, table: str) -> None:
        """Inside ``write()``: no other writer reads ``table`` to change it until this commits (SQLite's
        ``BEGIN IMMEDIATE`` already locks the whole database)."""
        if self.dialect == "postgresql":
            conn.exec_driver_sql(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")

    # ------------------------------------------------------------------ layout
    def create_schema(self, conn: sa.Connection) -> None:
        """Inside ``write()``: this sweep's schema on a server (one creator at a time)."""
        if self.schema is not None:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": self.schema})
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_quoted(self.schema)}")

    def has_schema(self) -> bool:
        if self.schema is None:
            return True
        return bool(self.query("SELECT 1 FROM pg_namespace WHERE nspname = :s", {"s": self.schema}))

    def tables(self) -> set[str]:
        with self.reading() as conn:
            return set(sa.inspect(conn).get_table_names(schema=self.schema))

    def columns(self, table: str) -> set[str]:
        with self.reading() as conn:
            return {c["name"] for c in sa.inspect(conn).get_columns(table, schema=self.schema)}

    def sweeps_on_server(self) -> list[str]:
        """The sweeps with a store on this server (by their schemas)."""
        rows = self.query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'golfsweep\\_%' ORDER BY nspname")
        return [storage.sweep_of_schema(r[0]) for r in rows]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _server_engine(location: StoreLocation) -> sa.Engine:
    url = location.url or ""
    try:
        engine = sa.create_engine(storage.engine_url(url), isolation_level="AUTOCOMMIT", pool_pre_ping=True,
                                  pool_size=1, max_overflow=2, connect_args=storage.connect_args(url))
    except ImportError as exc:
        raise GolfsweepError(f"{location.key}: PostgreSQL needs psycopg 3 (pip install 'psycopg[binary]'), which "
                             f"cannot be imported ({exc}), got {storage.masked_url(url)!r}") from None
    search_path = f"SET search_path TO {_quoted(location.schema or 'public')}"

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Unqualified table names mean this sweep's tables: the SQL is the same as on SQLite.
        with dbapi_conn.cursor() as cur:
            cur.execute(search_path)
        dbapi_conn.commit()

    sa.event.listen(engine, "connect", on_connect)
    return engine
