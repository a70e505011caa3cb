"""The run store: one SQLite file per sweep (WAL), outliving the driver.

Every write is one transaction, so a reader (``table``, ``status``) running while a sweep writes
sees whole rows only, and a crash loses nothing committed before it.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golfsweep.errors import GolfsweepError
from golfsweep.worker._types import RunState

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    trial INTEGER PRIMARY KEY,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    value REAL,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS runs (
    trial INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    reason TEXT,
    exit_code INTEGER,
    node_id TEXT,
    hostname TEXT,
    started_at REAL,
    ended_at REAL,
    metric_label TEXT,
    val_bpb REAL,
    val_loss REAL,
    train_time_ms INTEGER,
    eval_time_ms INTEGER,
    bytes_total INTEGER,
    bytes_model INTEGER,
    bytes_code INTEGER,
    bytes_claimed INTEGER,
    log_path TEXT,
    log_tail TEXT,
    curve TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (trial, seed)
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


class TrialState:
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class RunRecord:
    """The latest state of one (trial, seed) run."""

    trial: int
    seed: int
    state: RunState
    attempt: int = 1
    reason: str | None = None
    exit_code: int | None = None
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
    curve: tuple[tuple[int, float, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["state"] = self.state.value
        d["log_tail"] = list(self.log_tail)
        d["curve"] = [list(p) for p in self.curve]
        return d


@dataclass(frozen=True)
class TrialRecord:
    trial: int
    params: dict[str, Any]
    state: str
    value: float | None
    created_at: float
    finished_at: float | None


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
                if not {"meta", "trials", "runs", "attempts"} <= have:
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
        except sqlite3.Error as exc:
            raise GolfsweepError(f"store: cannot open {str(self.path)!r}: {exc}") from None

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

    # ------------------------------------------------------------------ trials
    def add_trial(self, trial: int, params: Mapping[str, Any]) -> None:
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO trials(trial, params, state, created_at) VALUES(?, ?, ?, ?)",
                      (trial, json.dumps(dict(params), sort_keys=True), TrialState.RUNNING, time.time()))

    def finish_trial(self, trial: int, state: str, value: float | None) -> None:
        with self._tx() as c:
            c.execute("UPDATE trials SET state=?, value=?, finished_at=? WHERE trial=?",
                      (state, value, time.time(), trial))

    def trials(self) -> list[TrialRecord]:
        rows = self._conn.execute(
            "SELECT trial, params, state, value, created_at, finished_at FROM trials ORDER BY trial").fetchall()
        return [TrialRecord(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    # ------------------------------------------------------------------ runs
    def put_run(self, rec: RunRecord) -> None:
        """Insert or replace the run's latest state and log the attempt, in one transaction."""
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO runs(trial, seed, state, attempt, reason, exit_code, node_id, hostname,"
                " started_at, ended_at, metric_label, val_bpb, val_loss, train_time_ms, eval_time_ms,"
                " bytes_total, bytes_model, bytes_code, bytes_claimed, log_path, log_tail, curve, updated_at)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.trial, rec.seed, rec.state.value, rec.attempt, rec.reason, rec.exit_code, rec.node_id,
                 rec.hostname, rec.started_at, rec.ended_at, rec.metric_label, _finite_or_none(rec.val_bpb),
                 _finite_or_none(rec.val_loss), rec.train_time_ms, rec.eval_time_ms, rec.bytes_total,
                 rec.bytes_model, rec.bytes_code, rec.bytes_claimed, rec.log_path,
                 json.dumps(list(rec.log_tail)), json.dumps([list(p) for p in rec.curve]), now))
            c.execute(
                "INSERT OR REPLACE INTO attempts(trial, seed, attempt, state, reason, node_id, started_at, ended_at)"
                " VALUES(?,?,?,?,?,?,?,?)",
                (rec.trial, rec.seed, rec.attempt, rec.state.value, rec.reason, rec.node_id, rec.started_at,
                 rec.ended_at))

    def runs(self, trial: int | None = None) -> list[RunRecord]:
        sql = ("SELECT trial, seed, state, attempt, reason, exit_code, node_id, hostname, started_at, ended_at,"
               " metric_label, val_bpb, val_loss, train_time_ms, eval_time_ms, bytes_total, bytes_model,"
               " bytes_code, bytes_claimed, log_path, log_tail, curve FROM runs")
        args: tuple = ()
        if trial is not None:
            sql += " WHERE trial=?"
            args = (trial,)
        rows = self._conn.execute(sql + " ORDER BY trial, seed", args).fetchall()
        return [_run_from_row(r) for r in rows]

    def run(self, trial: int, seed: int) -> RunRecord | None:
        for r in self.runs(trial):
            if r.seed == seed:
                return r
        return None

    def attempts(self) -> list[dict[str, Any]]:
        cols = ("trial", "seed", "attempt", "state", "reason", "node_id", "started_at", "ended_at")
        rows = self._conn.execute(f"SELECT {', '.join(cols)} FROM attempts ORDER BY trial, seed, attempt")
        return [dict(zip(cols, r)) for r in rows.fetchall()]


def _finite_or_none(x: float | None) -> float | None:
    if x is None or x != x or x in (float("inf"), float("-inf")):
        return None
    return x


def _run_from_row(r: tuple) -> RunRecord:
    return RunRecord(
        trial=r[0], seed=r[1], state=RunState(r[2]), attempt=r[3], reason=r[4], exit_code=r[5], node_id=r[6],
        hostname=r[7], started_at=r[8], ended_at=r[9], metric_label=r[10], val_bpb=r[11], val_loss=r[12],
        train_time_ms=r[13], eval_time_ms=r[14], bytes_total=r[15], bytes_model=r[16], bytes_code=r[17],
        bytes_claimed=r[18], log_path=r[19], log_tail=tuple(json.loads(r[20] or "[]")),
        curve=tuple(tuple(p) for p in json.loads(r[21] or "[]")),
    )
