"""The run store: one SQLite file per sweep (WAL), outliving the driver.

Every write is one transaction, so a reader (``table``, ``status``) running while a sweep writes
sees whole rows only, and a crash loses nothing committed before it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golfsweep.errors import GolfsweepError
from golfsweep.worker._types import RunResult, RunState

SCHEMA_VERSION = 2


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
_SQL_TYPES = {"int": "INTEGER", "float": "REAL", "str": "TEXT"}


def _column_type(f: dataclasses.Field) -> str:
    base = str(f.type).split("|")[0].strip()
    return _SQL_TYPES.get(base, "TEXT")


def _listify(v: Any) -> Any:
    return [_listify(x) for x in v] if isinstance(v, (tuple, list)) else v


_RUN_COLUMNS = ",\n    ".join(f"{f.name} {_column_type(f)}" + (" NOT NULL" if f.name in ("trial", "seed", "state") else "")
                               for f in dataclasses.fields(RunRecord))
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    trial INTEGER PRIMARY KEY,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    value REAL,
    created_at REAL NOT NULL,
    finished_at REAL,
    env TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    {_RUN_COLUMNS},
    updated_at REAL NOT NULL,
    PRIMARY KEY (trial, seed)
);
CREATE TABLE IF NOT EXISTS lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL,
    owner TEXT NOT NULL,
    heartbeat_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    trial INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    node_id TEXT,
    started_at REAL,
    ended_at REAL,
    PRIMARY KEY (trial, seed, attempt)
);
"""


class LeaseHeld(GolfsweepError):
    """Another driver holds the sweep's lease: ``holder`` says who and since when."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        super().__init__(f"lease held by {holder}")


class Store:
    """Typed access to a sweep's SQLite store. Open one per thread/process.

    ``create=False`` opens an existing store for reading: everything read through it comes from
    one snapshot, taken at the first read, so a run is never seen without its trial. Open a new
    ``Store`` to see later writes.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise GolfsweepError(f"sweep directory: no golfsweep store at {str(self.path)!r} "
                                 f"(is this a sweep directory?)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                         check_same_thread=False)
            if not create:
                # A store being created right now (or an empty file) has no tables yet.
                have = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not {"meta", "trials", "runs", "attempts"} <= have:  # (lease: added later, made on open)
                    self._conn.close()
                    raise GolfsweepError(f"sweep directory: {str(self.path)!r} is not a complete golfsweep "
                                         f"store (no tables yet; is this a sweep directory?)")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            if not create:
                self._conn.execute("BEGIN")  # the read snapshot (deferred: starts at the first read)
            if create:
                # One transaction, so a concurrent reader sees either no schema or all of it.
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{_SCHEMA}\nINSERT OR IGNORE INTO meta(key, value) "
                    f"VALUES('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;")
                self._add_missing_columns()
        except sqlite3.Error as exc:
            raise GolfsweepError(f"store: cannot open {str(self.path)!r}: {exc}") from None

    def _add_missing_columns(self) -> None:
        """A store written by an older golfsweep gains the columns of fields added since (NULL there)."""
        have = {r[1] for r in self._conn.execute("PRAGMA table_info(runs)")}
        missing = [f"ALTER TABLE runs ADD COLUMN {f.name} {_column_type(f)}"
                   for f in dataclasses.fields(RunRecord) if f.name not in have]
        if "env" not in {r[1] for r in self._conn.execute("PRAGMA table_info(trials)")}:
            missing.append("ALTER TABLE trials ADD COLUMN env TEXT")
        if missing:
            with self._tx() as c:
                for sql in missing:
                    c.execute(sql)
                c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._conn.in_transaction:  # a reader's snapshot: a write works on the latest state
            self._conn.execute("COMMIT")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                      (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ the driver's lease
    def take_lease(self, token: str, owner: Mapping[str, Any], may_replace: Callable[[dict[str, Any]], bool]
                   ) -> dict[str, Any] | None:
        """Atomically make ``token`` the sweep's driver. Returns the owner it replaced (None if the
        lease was free or already ours); raises ``LeaseHeld`` when the holder may not be replaced.
        ``may_replace(holder)`` sees the holder's owner fields plus ``heartbeat_at``."""
        with self._tx() as c:
            row = c.execute("SELECT token, owner, heartbeat_at FROM lease WHERE id=1").fetchone()
            held = None
            if row is not None and row[0] != token:
                held = {**json.loads(row[1]), "heartbeat_at": row[2]}
                if not may_replace(held):
                    raise LeaseHeld(held)
            c.execute("INSERT INTO lease(id, token, owner, heartbeat_at) VALUES(1, ?, ?, ?) ON CONFLICT(id) DO "
                      "UPDATE SET token=excluded.token, owner=excluded.owner, heartbeat_at=excluded.heartbeat_at",
                      (token, json.dumps(dict(owner)), time.time()))
        return held

    def renew_lease(self, token: str) -> bool:
        """Heartbeat; False when the lease is no longer ``token``'s (another driver took it over)."""
        with self._tx() as c:
            return c.execute("UPDATE lease SET heartbeat_at=? WHERE id=1 AND token=?", (time.time(), token)).rowcount == 1

    def release_lease(self, token: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM lease WHERE id=1 AND token=?", (token,))

    # ------------------------------------------------------------------ trials
    def add_trial(self, trial: int, params: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
        """Record a trial; ``env`` is the environment its runs get from the sweep, secrets already masked."""
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO trials(trial, params, state, created_at, env) VALUES(?, ?, ?, ?, ?)",
                      (trial, json.dumps(dict(params), sort_keys=True), TrialStatus.RUNNING.value, time.time(),
                       None if env is None else json.dumps(dict(env))))

    def finish_trial(self, trial: int, state: TrialStatus, value: float | None) -> None:
        with self._tx() as c:
            c.execute("UPDATE trials SET state=?, value=?, finished_at=? WHERE trial=?",
                      (TrialStatus(state).value, value, time.time(), trial))

    def trials(self) -> list[TrialRecord]:
        rows = self._conn.execute(
            "SELECT trial, params, state, value, created_at, finished_at, env FROM trials ORDER BY trial").fetchall()
        return [TrialRecord(r[0], json.loads(r[1]), TrialStatus(r[2]), r[3], r[4], r[5],
                            None if r[6] is None else json.loads(r[6])) for r in rows]

    # ------------------------------------------------------------------ runs
    def put_run(self, rec: RunRecord) -> None:
        """Insert or replace the run's latest state and log the attempt, in one transaction."""
        row = {name: _to_column(name, getattr(rec, name)) for name in _FIELDS}
        row["updated_at"] = time.time()
        cols = list(row)
        with self._tx() as c:
            c.execute(f"INSERT OR REPLACE INTO runs({', '.join(cols)}) VALUES({', '.join('?' for _ in cols)})",
                      [row[k] for k in cols])
            c.execute(
                "INSERT OR REPLACE INTO attempts(trial, seed, attempt, state, reason, node_id, started_at, ended_at)"
                " VALUES(?,?,?,?,?,?,?,?)",
                (rec.trial, rec.seed, rec.attempt, rec.state.value, rec.reason, rec.node_id, rec.started_at,
                 rec.ended_at))

    def runs(self, trial: int | None = None) -> list[RunRecord]:
        sql = f"SELECT {', '.join(_FIELDS)} FROM runs"
        args: tuple = ()
        if trial is not None:
            sql += " WHERE trial=?"
            args = (trial,)
        rows = self._conn.execute(sql + " ORDER BY trial, seed", args).fetchall()
        return [_run_from_row(dict(zip(_FIELDS, r))) for r in rows]

    def run(self, trial: int, seed: int) -> RunRecord | None:
        for r in self.runs(trial):
            if r.seed == seed:
                return r
        return None

    def attempts(self) -> list[dict[str, Any]]:
        cols = ("trial", "seed", "attempt", "state", "reason", "node_id", "started_at", "ended_at")
        rows = self._conn.execute(f"SELECT {', '.join(cols)} FROM attempts ORDER BY trial, seed, attempt")
        return [dict(zip(cols, r)) for r in rows.fetchall()]


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
