"""``[storage] url``: which databases a sweep may use, and the one place that checks, masks and maps
a storage URL and names where a sweep's run store is.

* ``sqlite:///PATH`` (or no ``[storage]``): the Optuna study in that file (default: ``optuna.db``
  in the sweep directory); the run store is ``golfsweep.db`` in the sweep directory.
* ``postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DBNAME[?PARAMS]`` (``postgresql+psycopg://`` and
  ``postgres://`` too): the Optuna study *and* the run store on that server, through psycopg 3. Several sweeps share one
  database: Optuna keys its study by the sweep's name, golfsweep keeps each sweep's store in a
  schema of its own (``schema_name``), so no query of one sweep can see another's rows and a store
  has the same tables on SQLite and PostgreSQL.

Passwords: a password in the URL is used to connect and never shown or written: ``masked_url``
replaces it with ``***`` wherever golfsweep prints or records the URL (spec.json, the store,
driver.log, errors). A reader that has only the recorded URL connects without a password, so libpq
takes it from ``PGPASSWORD`` or ``~/.pgpass`` (``reader_url``); prefer those to a password in the
sweep file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golfsweep.paths import SweepPaths
from golfsweep.redact import SECRET_MASK, mask_url_credentials

#: Seconds to wait for a PostgreSQL server before giving up (a dead host fails in this time, not minutes).
CONNECT_TIMEOUT_S = 10
_SERVER_DRIVERS = {"postgresql": "postgresql+psycopg", "postgresql+psycopg": "postgresql+psycopg",
                   "postgres": "postgresql+psycopg"}  # (libpq's alias; SQLAlchemy knows only postgresql)
_FILE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_SCHEMA_PREFIX = "golfsweep_"
_MAX_IDENTIFIER = 63  # PostgreSQL's limit on a name, in bytes (sweep names are ASCII)
_EXAMPLE = "postgresql://user@host:5432/dbname or sqlite:///path/optuna.db"


def _parse(url: str) -> Any:
    from sqlalchemy.engine import make_url

    return make_url(url)


def url_problem(url: str, key: str = "storage.url") -> str | None:
    """What is wrong with a ``[storage] url`` (one line naming ``key``, password masked), or None.
    Nothing is connected to: a dead server is found when the sweep starts (``golfsweep.results.Store``)."""
    shown = masked_url(url)
    try:
        parsed = _parse(url)
    except Exception as exc:  # sqlalchemy's ArgumentError, or ValueError for a port that is not a number
        why = "its port must be a number" if isinstance(exc, ValueError) else "it does not parse"
        return f"{key}: must be a URL like {_EXAMPLE} ({why}), got {shown!r}"
    driver = parsed.drivername
    if driver.startswith("postgresql") and driver not in _SERVER_DRIVERS:
        return (f"{key}: must use PostgreSQL through psycopg 3 (postgresql:// or postgresql+psycopg://), "
                f"got {driver}://")
    if driver not in _SERVER_DRIVERS and driver not in _FILE_DRIVERS:
        return f"{key}: scheme must be postgresql or sqlite, got {driver}:// in {shown!r}"
    if driver in _FILE_DRIVERS and not parsed.database:
        return f"{key}: a sqlite URL must name a file (sqlite:///path/optuna.db), got {shown!r}"
    return None


def is_server_url(url: str | None) -> bool:
    """Whether ``url`` puts the study and the run store on a database server (PostgreSQL)."""
    if not url:
        return False
    try:
        return _parse(url).drivername in _SERVER_DRIVERS
    except Exception:
        return False


def engine_url(url: str) -> Any:
    """The SQLAlchemy URL to connect with: a plain ``postgresql://`` means psycopg 3."""
    parsed = _parse(url)
    if parsed.drivername in _SERVER_DRIVERS:
        parsed = parsed.set(drivername=_SERVER_DRIVERS[parsed.drivername])
    return parsed


def connect_args(url: str) -> dict[str, Any]:
    """Driver arguments: a bounded connect timeout on a server (unless the URL sets one)."""
    parsed = _parse(url)
    if parsed.drivername in _SERVER_DRIVERS and "connect_timeout" not in parsed.query:
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Every SQLite connection golfsweep opens (run store and Optuna study): write-ahead log, so readers
    never block the driver, and a commit synced before it returns (``synchronous=FULL``): a commit
    survives a crash of the machine, not only of the process. (Optuna on WAL also costs a trial about
    a fifth less driver time than its default rollback journal.)"""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
    finally:
        cur.close()


def masked_url(url: str) -> str:
    """``url`` safe to show or record: its password (and a ``password=`` parameter) as ``***``."""
    try:
        parsed = _parse(url)
    except Exception:
        return mask_url_credentials(url)
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": SECRET_MASK})
    return parsed.render_as_string(hide_password=True).replace("password=%2A%2A%2A", f"password={SECRET_MASK}")


def reader_url(recorded: str) -> str:
    """A recorded (masked) URL made usable: the ``***`` password dropped, so libpq's ``PGPASSWORD``
    or ``~/.pgpass`` supply it."""
    parsed = _parse(recorded)
    if parsed.password == SECRET_MASK:  # (URL.set cannot unset a field: rebuild the URL without it)
        parsed = type(parsed).create(parsed.drivername, parsed.username, None, parsed.host, parsed.port,
                                     parsed.database, parsed.query)
    if parsed.query.get("password") == SECRET_MASK:
        parsed = parsed.difference_update_query(["password"])
    return parsed.render_as_string(hide_password=False)


def connect_problem(exc: BaseException, url: str) -> str:
    """The first line of why a server could not be used, without the password; with a hint when
    the server wants a password the URL does not carry."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    first = text.splitlines()[0].strip() if text else type(orig).__name__
    try:
        password = _parse(url).password
    except Exception:
        password = None
    if password:
        first = first.replace(str(password), SECRET_MASK)
    first = mask_url_credentials(first)[:300]
    if password is None and "password" in first.lower():
        first += " (no password in the URL: set PGPASSWORD or use ~/.pgpass)"
    return first


def schema_name(sweep: str) -> str:
    """The PostgreSQL schema holding one sweep's store: ``golfsweep_<name>`` (a name too long for
    PostgreSQL's 63 bytes is cut and given a hash of the whole name, so it stays unique)."""
    name = _SCHEMA_PREFIX + sweep
    if len(name.encode()) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(sweep.encode()).hexdigest()[:8]
    return name[:_MAX_IDENTIFIER - 9] + "_" + digest


def sweep_of_schema(schema: str) -> str:
    return schema[len(_SCHEMA_PREFIX):]


@dataclass(frozen=True)
class StoreLocation:
    """Where a sweep's run store is: a SQLite file in its sweep directory, or the sweep's schema on
    a PostgreSQL server. ``str()`` is safe to show (no password)."""

    path: Path | None = None
    url: str | None = field(default=None, repr=False)  # may hold a password: shown only through masked_url
    sweep: str | None = None
    key: str = field(default="storage.url", compare=False)  # what a server's errors name: where the URL came from

    @classmethod
    def file(cls, path: str | os.PathLike[str]) -> StoreLocation:
        return cls(path=Path(path))

    @classmethod
    def server(cls, url: str, sweep: str, *, key: str = "storage.url") -> StoreLocation:
        return cls(url=url, sweep=sweep, key=key)

    @property
    def is_server(self) -> bool:
        return self.url is not None

    @property
    def schema(self) -> str | None:
        return schema_name(self.sweep) if self.is_server and self.sweep is not None else None

    def __str__(self) -> str:
        if self.url is not None:
            return f"sweep {self.sweep!r} on {masked_url(self.url)}"
        return repr(str(self.path))

    def __repr__(self) -> str:
        return f"StoreLocation({self})"


def recorded_location(paths: SweepPaths) -> StoreLocation:
    """Where the store of an existing sweep directory is: the server its ``spec.json`` names (the
    recorded URL, password dropped: see ``reader_url``), else its ``golfsweep.db``."""
    try:
        spec = json.loads(paths.spec_json.read_text(encoding="utf-8"))["spec"]
        url, name = spec.get("storage_url"), spec["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return StoreLocation.file(paths.store)
    if is_server_url(url):
        return StoreLocation.server(reader_url(url), name)
    return StoreLocation.file(paths.store)
