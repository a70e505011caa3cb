"""The run store: one typed record, columns by field name, older stores upgraded in place."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

from golfsweep.results import RunRecord, Store, TrialStatus
from golfsweep.results._store import SCHEMA_VERSION
from golfsweep.worker import ArtifactMeasurement, RunResult, RunState


def full_record(**changes) -> RunRecord:
    rec = RunRecord(trial=3, seed=42, state=RunState.COMPLETE, attempt=2, reason=None, exit_code=0,
                    command=("torchrun", "--standalone", "--nproc_per_node=8", "train_gpt.py"), node_id="n" * 40,
                    hostname="gpu-7", started_at=1.5, ended_at=9.25, metric_label="legal_ttt_exact", val_bpb=1.0821,
                    val_loss=1.827, train_time_ms=599_000, eval_time_ms=512_000, bytes_total=15_990_000,
                    bytes_model=15_900_000, bytes_code=90_000, bytes_claimed=15_990_000, log_path="/x/train.log",
                    log_tail=("a", "b"), warnings=("no artifact line",), curve=((100, 2.5, 1.4), (200, 2.1, 1.2)))
    return dataclasses.replace(rec, **changes)


def test_every_field_round_trips_by_name(tmp_path):
    rec = full_record()
    with Store(tmp_path / "golfsweep.db") as store:
        store.put_run(rec)
    with Store(tmp_path / "golfsweep.db", create=False) as store:
        assert store.runs() == [rec]
    columns = {r[1] for r in sqlite3.connect(tmp_path / "golfsweep.db").execute("PRAGMA table_info(runs)")}
    assert {f.name for f in dataclasses.fields(RunRecord)} <= columns


def test_the_record_of_a_result_keeps_the_launch_command():
    res = RunResult(trial=1, seed=2, attempt=1, state=RunState.COMPLETE, command=("python", "train_gpt.py"),
                    artifact=ArtifactMeasurement(("m.ptz",), 100, 20, 120, 120, 16_000_000), warnings=("w",))
    rec = RunRecord.from_result(res, "/log")
    assert rec.command == ("python", "train_gpt.py") and rec.bytes_total == 120 and rec.warnings == ("w",)
    assert json.loads(json.dumps(rec.to_dict()))["command"] == ["python", "train_gpt.py"]


def test_non_finite_metrics_are_stored_as_null(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.put_run(full_record(state=RunState.FAILED, val_bpb=float("nan"), val_loss=float("inf")))
        got = store.runs()[0]
    assert got.val_bpb is None and got.val_loss is None


def test_a_store_written_before_new_fields_is_upgraded_in_place(tmp_path):
    path = tmp_path / "golfsweep.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE trials (trial INTEGER PRIMARY KEY, params TEXT NOT NULL, state TEXT NOT NULL, value REAL,
                             created_at REAL NOT NULL, finished_at REAL);
        CREATE TABLE runs (trial INTEGER NOT NULL, seed INTEGER NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL,
            reason TEXT, exit_code INTEGER, node_id TEXT, hostname TEXT, started_at REAL, ended_at REAL,
            metric_label TEXT, val_bpb REAL, val_loss REAL, train_time_ms INTEGER, eval_time_ms INTEGER,
            bytes_total INTEGER, bytes_model INTEGER, bytes_code INTEGER, bytes_claimed INTEGER, log_path TEXT,
            log_tail TEXT, curve TEXT, updated_at REAL NOT NULL, PRIMARY KEY (trial, seed));
        CREATE TABLE attempts (trial INTEGER NOT NULL, seed INTEGER NOT NULL, attempt INTEGER NOT NULL,
            state TEXT NOT NULL, reason TEXT, node_id TEXT, started_at REAL, ended_at REAL,
            PRIMARY KEY (trial, seed, attempt));
        INSERT INTO trials VALUES (0, '{"x": 1}', 'complete', 1.2, 0, 1);
        INSERT INTO runs (trial, seed, state, attempt, val_bpb, log_tail, curve, updated_at)
            VALUES (0, 1, 'complete', 1, 1.2, '["tail"]', '[[1, 2.0, 1.5]]', 0);
    """)
    conn.commit()
    conn.close()
    with Store(path) as store:
        (old,) = store.runs()
        assert old.val_bpb == 1.2 and old.command == () and old.warnings == () and old.log_tail == ("tail",)
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert store.trials()[0].state is TrialStatus.COMPLETE
        store.put_run(full_record(trial=0, seed=2))
        assert store.run(0, 2).command == full_record().command
