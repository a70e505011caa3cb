"""The run store: one SQLite file per sweep directory (WAL), or one schema per sweep on a
PostgreSQL server (``[storage] url``), outliving the driver.

Every write is one transaction, so a reader (``table``, ``status``) running while a sweep writes
sees whole rows only, and a crash loses nothing committed before it. The same SQL runs on both
databases (``_db``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from golfsweep import storage
from golfsweep.errors import GolfsweepError
from golfsweep.scriptfiles import ScriptFiles
from golfsweep.results._db import Database
from golfsweep.storage import StoreLocation
from golfsweep.worker._types import RunResult, RunState

SCHEMA_VERSION = 4  # 3: script and logs tables (a server store's copies); 4: the files the script runs


class TrialStatus(str, enum.Enum):
    """A golfsweep trial's state in the store (not Optuna's ``TrialState``)."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    PRUNED = "pruned"  # stopped early by the sweep's pruning: not a result, not a failure

    def is_finished(self) -> bool:
        return self is not TrialStatus.RUNNING


@dataclass(frozen=True)
class RunRecord:
    """The latest state of one (trial, seed) run: what the store, ``result.json`` and export hold.

    The store's ``runs`` table has one column per field, by name (tuples as JSON). Built from a
    worker's ``RunResult`` with :meth:`from_result`.
    """

    trial: int
    seed: int
    state: RunState
    attempt: int = 1
    reason: str | None = None
    exit_code: int | None = None
    command: tuple[str, ...] = ()
    node_id: str | None = None
    hostname: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    metric_label: str | None = None
    val_bpb: float | None = None
    val_loss: float | None = None
    train_time_ms: int | None = None
    eval_time_ms: int | None = None
    bytes_total: int | None = None
    bytes_model: int | None = None
    bytes_code: int | None = None
    bytes_claimed: int | None = None
    log_path: str | None = None
    log_tail: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # why the log parser was unsure of the score it read
    curve: tuple[tuple[int, float, float], ...] = ()

    @classmethod
    def from_result(cls, res: RunResult, log_path: str | None) -> RunRecord:
        """The record of a finished attempt (the artifact measurement flattened into its sizes)."""
        art = res.artifact
        return cls(
            trial=res.trial, seed=res.seed, state=res.state, attempt=res.attempt, reason=res.reason,
            exit_code=res.exit_code, command=tuple(res.command), node_id=res.node_id, hostname=res.hostname,
            started_at=res.started_at, ended_at=res.ended_at, metric_label=res.metric_label, val_bpb=res.val_bpb,
            val_loss=res.val_loss, train_time_ms=res.train_time_ms, eval_time_ms=res.eval_time_ms,
            bytes_total=art.total_bytes if art else None, bytes_model=art.model_bytes if art else None,
            bytes_code=art.code_bytes if art else None, bytes_claimed=art.claimed_total_bytes if art else None,
            log_path=log_path, log_tail=res.log_tail, warnings=res.warnings, curve=res.curve,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["state"] = self.state.value
        for name in _JSON_FIELDS:
            d[name] = _listify(getattr(self, name))
        return d


@dataclass(frozen=True)
class TrialRecord:
    trial: int
    params: dict[str, Any]
    state: TrialStatus
    value: float | None
    created_at: float
    finished_at: float | None
    env: dict[str, str] | None = None  # what its runs received from the sweep (secrets masked); None: older store


# The runs table follows RunRecord: one column per field, by name.
_FIELDS = [f.name for f in dataclasses.fields(RunRecord)]
_JSON_FIELDS = ("command", "log_tail", "warnings", "curve")
_RUN_KEY = ("trial", "seed")


def _column_type(f: dataclasses.Field) -> str:
    base = str(f.type).split("|")[0].strip()
    return base if base in ("int", "float") else "str"


def _listify(v: Any) -> Any:
    return [_listify(x) for x in v] if isinstance(v, (tuple, list)) else v


def _schema(types: Mapping[str, str]) -> list[str]:
    """The store's tables, in the column types of one database (``_db._TYPES``)."""
    t = types
    not_null = {"trial", "seed", "state"}
    runs = ",\n    ".join(f"{f.name} {t[_column_type(f)]}{' NOT NULL' if f.name in not_null else ''}"
                          for f in dataclasses.fields(RunRecord))
    return [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS trials (
    trial {t['int']} PRIMARY KEY,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    value {t['float']},
    created_at {t['float']} NOT NULL,
    finished_at {t['float']},
    env TEXT
)""",
        f"""CREATE TABLE IF NOT EXISTS runs (
    {runs},
    updated_at {t['float']} NOT NULL,
    PRIMARY KEY (trial, seed)
)""",
        f"""CREATE TABLE IF NOT EXISTS lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL,
    owner TEXT NOT NULL,
    heartbeat_at {t['float']} NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS attempts (
    trial {t['int']} NOT NULL,
    seed {t['int']} NOT NULL,
    attempt {t['int']} NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    node_id TEXT,
    started_at {t['float']},
    ended_at {t['float']},
    PRIMARY KEY (trial, seed, attempt)
)""",
        # A server store's copies of what readers elsewhere need (see Store): the script, each run's last log.
        f"CREATE TABLE IF NOT EXISTS script (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, "
        f"data {t['bytes']} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS support_files (name TEXT PRIMARY KEY, data {t['bytes']} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS logs (trial {t['int']} NOT NULL, seed {t['int']} NOT NULL, "
        f"data {t['bytes']} NOT NULL, PRIMARY KEY (trial, seed))",
    ]


def _upsert(table: str, cols: list[str], key: tuple[str, ...]) -> str:
    """INSERT of ``cols`` that replaces the row with the same ``key`` (SQLite and PostgreSQL alike)."""
    updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in key)
    return (f"INSERT INTO {table}({', '.join(cols)}) VALUES({', '.join(':' + c for c in cols)}) "
            f"ON CONFLICT({', '.join(key)}) DO UPDATE SET {updates}")


_STORE_TABLES = {"meta", "trials", "runs", "attempts"}  # (lease, script, logs: added later, made on open)


class LeaseHeld(GolfsweepError):
    """Another driver holds the sweep's lease: ``holder`` says who and since when."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        super().__init__(f"lease held by {holder}")


class Store:
    """Typed access to a sweep's store. Open one per thread/process.

    ``where`` is the store's ``StoreLocation`` (``golfsweep.storage``), or the path of a sweep
    directory's SQLite file. ``create=False`` opens an existing store for reading: everything read
    through it comes from one snapshot, taken at the first read, so a run is never seen without its
    trial. Open a new ``Store`` to see later writes.

    A SQLite store lives in its sweep directory, beside the script and the run logs. A server store
    is also read where that directory is not, so it holds them too: ``put_script`` and ``put_log``
    keep them only there (``holds_files``), and ``script``/``log`` read them.
    """

    def __init__(self, where: str | Path | StoreLocation, *, create: bool = True) -> None:
        self.location = where if isinstance(where, StoreLocation) else StoreLocation.file(where)
        self.path = self.location.path  # None on a server
        if not create and self.path is not None and not self.path.exists():
            raise GolfsweepError(f"sweep directory: no golfsweep store at {str(self.path)!r} "
                                 f"(is this a sweep directory?)")
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GolfsweepError(f"store: cannot open {str(self.path)!r}: {exc.strerror}") from None
        self._db = Database(self.location)
        try:
            if create:
                self._create()
            else:
                self._check_complete()
                self._db.begin_snapshot()  # the read snapshot (deferred: starts at the first read)
        except GolfsweepError:
            self._db.close()
            raise
        except sa.exc.SQLAlchemyError as exc:
            self._db.close()
            raise _open_error(self.location, exc) from None

    @property
    def holds_files(self) -> bool:
        return self.location.is_server

    @classmethod
    def exists(cls, location: StoreLocation) -> bool:
        """Whether ``location`` holds a store yet (connects to a server: an unreachable one is an error)."""
        if not location.is_server:
            return location.path is not None and location.path.exists()
        db = Database(location)
        try:
            return db.has_schema() and _STORE_TABLES <= db.tables()
        except sa.exc.SQLAlchemyError as exc:
            raise _open_error(location, exc) from None
        finally:
            db.close()

    def _create(self) -> None:
        db = self._db
        # One transaction, so a concurrent reader sees either no schema or all of it.
        with db.write() as c:
            db.create_schema(c)
            for ddl in _schema(db.types):
                c.exec_driver_sql(ddl)
            c.execute(sa.text("INSERT INTO meta(key, value) VALUES('schema_version', :v) ON CONFLICT(key) DO NOTHING"),
                      {"v": str(SCHEMA_VERSION)})
        self._add_missing_columns()

    def _check_complete(self) -> None:
        db = self._db
        if not db.has_schema():
            others = db.sweeps_on_server()
            raise GolfsweepError(f"{self.location.key}: no sweep {self.location.sweep!r} on "
                                 f"{storage.masked_url(self.location.url or '')} "
                                 f"(sweeps there: {', '.join(others) if others else 'none'})")
        if not _STORE_TABLES <= db.tables():  # a store being created right now (or an empty file)
            where = str(self.location) if self.location.is_server else repr(str(self.path))
            raise GolfsweepError(f"sweep directory: {where} is not a complete golfsweep "
                                 f"store (no tables yet; is this a sweep directory?)")

    def _add_missing_columns(self) -> None:
        """A store written by an older golfsweep gains the columns of fields added since (NULL there)."""
        db = self._db
        have = db.columns("runs")
        missing = [f"ALTER TABLE runs ADD COLUMN {f.name} {db.types[_column_type(f)]}"
                   for f in dataclasses.fields(RunRecord) if f.name not in have]
        if "env" not in db.columns("trials"):
            missing.append("ALTER TABLE trials ADD COLUMN env TEXT")
        old = self.get_meta("schema_version")
        if missing or old != str(SCHEMA_VERSION):
            with db.write() as c:
                for ddl in missing:
                    c.exec_driver_sql(ddl)
                c.execute(sa.text("UPDATE meta SET value=:v WHERE key='schema_version'"), {"v": str(SCHEMA_VERSION)})

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, sql: str, **params: Any) -> list[Any]:
        return self._db.query(sql, params)

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: str) -> None:
        with self._db.write() as c:
            c.execute(sa.text(_upsert("meta", ["key", "value"], ("key",))), {"key": key, "value": value})

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key=:key", key=key)
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ the driver's lease
    def take_lease(self, token: str, owner: Mapping[str, Any], may_replace: Callable[[dict[str, Any]], bool]
                   ) -> dict[str, Any] | None:
        """Atomically make ``token`` the sweep's driver. Returns the owner it replaced (None if the
        lease was free or already ours); raises ``LeaseHeld`` when the holder may not be replaced.
        ``may_replace(holder)`` sees the holder's owner fields plus ``heartbeat_at``."""
        with self._db.write() as c:
            self._db.lock(c, "lease")  # read, judge, write: no other driver in between
            row = c.execute(sa.text("SELECT token, owner, heartbeat_at FROM lease WHERE id=1")).fetchone()
            held = None
            if row is not None and row[0] != token:
                held = {**json.loads(row[1]), "heartbeat_at": row[2]}
                if not may_replace(held):
                    raise LeaseHeld(held)
            c.execute(sa.text(_upsert("lease", ["id", "token", "owner", "heartbeat_at"], ("id",))),
                      {"id": 1, "token": token, "owner": json.dumps(dict(owner)), "heartbeat_at": time.time()})
        return held

    def renew_lease(self, token: str) -> bool:
        """Heartbeat; False when the lease is no longer ``token``'s (another driver took it over)."""
        with self._db.write() as c:
            res = c.execute(sa.text("UPDATE lease SET heartbeat_at=:t WHERE id=1 AND token=:token"),
                            {"t": time.time(), "token": token})
            return res.rowcount == 1

    def release_lease(self, token: str) -> None:
        with self._db.write() as c:
            c.execute(sa.text("DELETE FROM lease WHERE id=1 AND token=:token"), {"token": token})

    # ------------------------------------------------------------------ trials
    def add_trial(self, trial: int, params: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
        """Record a trial; ``env`` is the environment its runs get from the sweep, secrets already masked."""
        with self._db.write() as c:
            c.execute(sa.text("INSERT INTO trials(trial, params, state, created_at, env) "
                              "VALUES(:trial, :params, :state, :created_at, :env) ON CONFLICT(trial) DO NOTHING"),
                      {"trial": trial, "params": json.dumps(dict(params), sort_keys=True),
                       "state": TrialStatus.RUNNING.value, "created_at": time.time(),
                       "env": None if env is None else json.dumps(dict(env))})

    def finish_trial(self, trial: int, state: TrialStatus, value: float | None) -> None:
        with self._db.write() as c:
            c.execute(sa.text("UPDATE trials SET state=:state, value=:value, finished_at=:t WHERE trial=:trial"),
                      {"state": TrialStatus(state).value, "value": value, "t": time.time(), "trial": trial})

    def trials(self) -> list[TrialRecord]:
        rows = self._read("SELECT trial, params, state, value, created_at, finished_at, env FROM trials ORDER BY trial")
        return [TrialRecord(r[0], json.loads(r[1]), TrialStatus(r[2]), r[3], r[4], r[5],
                            None if r[6] is None else json.loads(r[6])) for r in rows]

    # ------------------------------------------------------------------ runs
    def put_run(self, rec: RunRecord) -> None:
        """Insert or replace the run's latest state and log the attempt, in one transaction."""
        row = {name: _to_column(name, getattr(rec, name)) for name in _FIELDS}
        row["updated_at"] = time.time()
        attempt = {k: row[k] for k in ("trial", "seed", "attempt", "state", "reason", "node_id", "started_at",
                                       "ended_at")}
        with self._db.write() as c:
            c.execute(sa.text(_upsert("runs", list(row), _RUN_KEY)), row)
            c.execute(sa.text(_upsert("attempts", list(attempt), ("trial", "seed", "attempt"))), attempt)

    def runs(self, trial: int | None = None) -> list[RunRecord]:
        sql = f"SELECT {', '.join(_FIELDS)} FROM runs"
        if trial is not None:
            sql += " WHERE trial=:trial"
        rows = self._read(sql + " ORDER BY trial, seed", trial=trial)
        return [_run_from_row(dict(zip(_FIELDS, r))) for r in rows]

    def run(self, trial: int, seed: int) -> RunRecord | None:
        for r in self.runs(trial):
            if r.seed == seed:
                return r
        return None

    def attempts(self) -> list[dict[str, Any]]:
        cols = ("trial", "seed", "attempt", "state", "reason", "node_id", "started_at", "ended_at")
        rows = self._read(f"SELECT {', '.join(cols)} FROM attempts ORDER BY trial, seed, attempt")
        return [dict(zip(cols, r)) for r in rows]

    # ------------------------------------------------------------------ files a server store holds
    def put_script(self, files: ScriptFiles) -> None:
        """The exact script every run received, and the files it runs (kept by a server store only,
        see the class doc)."""
        if self.holds_files:
            with self._db.write() as c:
                c.execute(sa.text(_upsert("script", ["id", "name", "data"], ("id",))),
                          {"id": 1, "name": files.name, "data": bytes(files.script)})
                for name, data in files.support:
                    c.execute(sa.text(_upsert("support_files", ["name", "data"], ("name",))),
                              {"name": name, "data": bytes(data)})

    def script(self) -> tuple[str, bytes] | None:
        rows = self._read("SELECT name, data FROM script WHERE id=1")
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def support_files(self) -> dict[str, bytes]:
        """The files beside the script that it runs, by relative path (a server store's copy)."""
        if "support_files" not in self._db.tables():  # a store from before them, opened read-only
            return {}
        return {name: bytes(data) for name, data in self._read("SELECT name, data FROM support_files")}

    def put_log(self, trial: int, seed: int, text: str | bytes) -> None:
        """The run's log, replacing an earlier attempt's (kept by a server store only, see the class doc)."""
        if self.holds_files:
            data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
            with self._db.write() as c:
                c.execute(sa.text(_upsert("logs", ["trial", "seed", "data"], _RUN_KEY)),
                          {"trial": trial, "seed": seed, "data": data})

    def log(self, trial: int, seed: int) -> bytes | None:
        """The run's last log, as ``put_log`` got it (a server store only)."""
        rows = self._read("SELECT data FROM logs WHERE trial=:trial AND seed=:seed", trial=trial, seed=seed)
        return bytes(rows[0][0]) if rows else None


def _open_error(location: StoreLocation, exc: sa.exc.SQLAlchemyError) -> GolfsweepError:
    """One line for a store that cannot be opened: the file and SQLite's reason, or the server (no
    password) and why it could not be used."""
    if location.is_server:
        url = location.url or ""
        return GolfsweepError(f"{location.key}: cannot use {storage.masked_url(url)}: "
                              f"{storage.connect_problem(exc, url)}")
    return GolfsweepError(f"store: cannot open {str(location.path)!r}: {getattr(exc, 'orig', None) or exc}")


def _to_column(name: str, v: Any) -> Any:
    if name in _JSON_FIELDS:
        return json.dumps(_listify(v))
    if name == "state":
        return v.value
    if name in ("val_bpb", "val_loss") and v is not None and not math.isfinite(v):
        return None  # NaN/inf: the run failed; the reason says so
    return v


def _run_from_row(row: dict[str, Any]) -> RunRecord:
    row["state"] = RunState(row["state"])
    for name in _JSON_FIELDS:
        value = json.loads(row[name] or "[]")
        row[name] = tuple(tuple(p) for p in value) if name == "curve" else tuple(value)
    return RunRecord(**row)
