"""The run store under concurrency and crashes.

* ``table`` and ``status`` reading while a sweep writes never fail and never see a partial row.
* A writer killed with SIGKILL, even inside a transaction, loses nothing it had committed, and
  leaves a database that passes ``PRAGMA integrity_check`` and accepts the next writer.

Writers run as separate processes (as the driver does), so SQLite's locking is really exercised.
Every record a writer stores is a pure function of its (trial, seed, attempt, state), so a reader
can tell a whole row from a mix of two writes.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from golfsweep.errors import GolfsweepError
from golfsweep.results import (
    RunRecord,
    Store,
    TrialStatus,
    format_status,
    format_table,
    load_sweep,
)
from golfsweep.search_spaces import load_spec
from golfsweep.worker import RunState
from tests.conftest import cli_env, invoke_cli, write_sweep

SEEDS = (1, 2, 3)

# Shared by the writer processes and the checks below: the record a writer stores for a key.
RECORDS = textwrap.dedent('''
    from golfsweep.results import RunRecord
    from golfsweep.worker import RunState

    def tag(trial, seed, attempt, state):
        return f"{trial}-{seed}-{attempt}-{state.value}"

    def record(trial, seed, attempt, state):
        t = tag(trial, seed, attempt, state)
        done = state is RunState.COMPLETE
        bpb = trial + seed / 1000 if done else None
        return RunRecord(
            trial=trial, seed=seed, state=state, attempt=attempt,
            reason=None if done else f"reason {t}", exit_code=attempt, node_id=t, hostname=t,
            started_at=trial * 1000.0 + seed, ended_at=trial * 1000.0 + seed + attempt, metric_label=t,
            val_bpb=bpb, val_loss=None if bpb is None else 2 * bpb,
            train_time_ms=1000 if done else None, eval_time_ms=500 if done else None,
            bytes_total=1000 * trial + seed + 7 if done else None,
            bytes_model=1000 * trial + seed if done else None, bytes_code=7 if done else None,
            bytes_claimed=None, log_path=t,
            log_tail=tuple(f"{t} line {i}" for i in range(40)),
            curve=tuple((i, float(trial), float(seed)) for i in range(20 * attempt)),
        )

    def trial_value(trial):
        return trial + 0.5
''')
_ns: dict = {}
exec(RECORDS, _ns)  # noqa: S102 - the same source runs in the writer processes
record, tag, trial_value = _ns["record"], _ns["tag"], _ns["trial_value"]

# Runs every (trial, seed) through RUNNING -> LOST -> RUNNING (attempt 2) -> COMPLETE/FAILED, then
# finishes the trial; prints "ACK <what>" after each write returns (i.e. is committed). Stops after
# SECONDS or MAX_TRIALS trials, whichever comes first.
WRITER = RECORDS + textwrap.dedent('''
    import sys, time
    from golfsweep.results import Store, TrialStatus

    db, spec_json, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    seeds = [int(s) for s in sys.argv[4].split(",")]
    max_trials = int(sys.argv[5])
    store = Store(db)
    store.set_meta("spec", open(spec_json).read())
    print("READY", flush=True)
    deadline = time.monotonic() + seconds
    trial = 0
    while time.monotonic() < deadline and trial < max_trials:
        store.add_trial(trial, {"KNOB_X": float(trial)})
        print(f"ACK trial {trial}", flush=True)
        failed = trial % 3 == 2
        for seed in seeds:
            final = RunState.FAILED if failed and seed == seeds[-1] else RunState.COMPLETE
            for attempt, state in ((1, RunState.RUNNING), (1, RunState.LOST), (2, RunState.RUNNING),
                                   (2, final)):
                store.put_run(record(trial, seed, attempt, state))
                print(f"ACK run {trial} {seed} {attempt} {state.value}", flush=True)
        if failed:
            store.finish_trial(trial, TrialStatus.FAILED, None)
        else:
            store.finish_trial(trial, TrialStatus.COMPLETE, trial_value(trial))
        print(f"ACK finish {trial}", flush=True)
        trial += 1
    print("DONE", flush=True)
''')

# Commits N runs, then blocks inside the transaction of run N, between its two statements.
MID_TX_WRITER = RECORDS + textwrap.dedent('''
    import sqlite3, sqlite3.dbapi2, sys, time

    db, spec_json, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    armed = [False]

    def trace(sql):
        if armed[0] and "INTO attempts" in sql:
            print("MID", flush=True)
            time.sleep(3600)

    _connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = _connect(*args, **kwargs)
        conn.set_trace_callback(trace)
        return conn

    sqlite3.connect = sqlite3.dbapi2.connect = connect  # (SQLAlchemy connects through sqlite3.dbapi2)
    from golfsweep.results import Store

    store = Store(db)
    store.set_meta("spec", open(spec_json).read())
    store.add_trial(0, {"KNOB_X": 0.0})
    for i in range(n):
        store.put_run(record(0, i, 1, RunState.COMPLETE))
        print(f"ACK {i}", flush=True)
    armed[0] = True
    store.put_run(record(0, n, 1, RunState.COMPLETE))
    print("UNREACHABLE", flush=True)
''')


def _spawn(code: str, *args: str | os.PathLike[str], stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=cli_env(), text=True,
                            stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def _read_until(proc: subprocess.Popen, marker: str, timeout: float = 60) -> list[str]:
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"writer ended before {marker!r}: {proc.stderr.read()[-2000:]}")
        lines.append(line.strip())
        if line.strip() == marker:
            return lines
    raise AssertionError(f"no {marker!r} within {timeout}s")


@pytest.fixture
def spec_json(tmp_path: Path) -> Path:
    spec = load_spec(write_sweep(tmp_path, seeds=list(SEEDS), trials=1000))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec.to_dict(), sort_keys=True))
    return path


def assert_whole(r: RunRecord) -> None:
    """The row is exactly what the writer stored for its key: no field from another write."""
    assert r == record(r.trial, r.seed, r.attempt, r.state), f"partial or mixed row: {r}"


def check_snapshot(data) -> None:
    trials = {t.trial: t for t in data.trials}
    for t in data.trials:
        assert t.params == {"KNOB_X": float(t.trial)}
        if t.state == TrialStatus.RUNNING:
            assert t.value is None and t.finished_at is None
        elif t.state == TrialStatus.COMPLETE:
            assert t.value == trial_value(t.trial) and t.finished_at is not None
        else:
            assert t.state == TrialStatus.FAILED and t.value is None
    for r in data.runs:
        assert_whole(r)
        assert r.trial in trials, f"run of trial {r.trial} seen without its trial"
        if trials[r.trial].state != TrialStatus.RUNNING:  # a finished trial has all its runs finished
            assert r.state.is_finished() and r.attempt == 2
    status = format_status(data)
    assert "queued -" not in status
    for fmt in ("md", "csv"):
        format_table(data, fmt)
    rows = json.loads(format_table(data, "json"))
    for row in rows:
        assert 0 <= row["n_ok"] <= row["n_seeds"] == len(SEEDS)
        if row["state"] == TrialStatus.COMPLETE:
            assert row["n_ok"] == len(SEEDS) and row["feasible"] is True
            assert row["mean_val_bpb"] == pytest.approx(row["trial"] + sum(SEEDS) / len(SEEDS) / 1000)


def test_readers_never_fail_or_see_partial_rows_while_a_sweep_writes(tmp_path: Path, spec_json: Path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    db = sweep_dir / "golfsweep.db"
    # Before the writer exists the directory is not a sweep yet: a clean error, never a crash.
    with pytest.raises(GolfsweepError):
        load_sweep(sweep_dir)
    writer_out = tmp_path / "writer.out"
    with open(writer_out, "w") as out_file:  # not a pipe: nobody reads it while the writer runs
        writer = _spawn(WRITER, db, spec_json, 4.0, ",".join(map(str, SEEDS)), 120, stdout=out_file)
    reads = cli_reads = 0
    seen_runs = 0
    try:
        while writer.poll() is None:
            try:
                data = load_sweep(sweep_dir)
            except GolfsweepError as exc:  # the store or its spec is not written yet
                assert reads == 0, f"a reader failed mid-sweep: {exc}"
                time.sleep(0.01)
                continue
            check_snapshot(data)
            reads += 1
            seen_runs = max(seen_runs, len(data.runs))
            if reads % 5 == 0:
                for args in (("table", sweep_dir), ("table", sweep_dir, "--format", "json"),
                             ("status", sweep_dir)):
                    res = invoke_cli(*args)
                    assert res.exit_code == 0 and res.stderr == "", res
                cli_reads += 1
        _, err = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, err
    assert writer_out.read_text().rstrip().endswith("DONE")
    final = load_sweep(sweep_dir)
    check_snapshot(final)
    assert reads >= 10 and cli_reads >= 2, (reads, cli_reads)
    assert len(final.trials) >= 3 and seen_runs > 0


def test_kill_inside_a_transaction_loses_nothing_committed(tmp_path: Path, spec_json: Path):
    db = tmp_path / "sweep" / "golfsweep.db"
    n = 25
    writer = _spawn(MID_TX_WRITER, db, spec_json, n)
    try:
        lines = _read_until(writer, "MID")
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate()
    assert lines[-2] == f"ACK {n - 1}"
    _assert_intact(db)
    with Store(db, create=False) as store:
        runs = store.runs()
        attempts = store.attempts()
    assert [r.seed for r in runs] == list(range(n)), "a committed run is missing or the open one leaked"
    for r in runs:
        assert_whole(r)
    assert [a["seed"] for a in attempts] == list(range(n))
    _next_writer_works(db)


@pytest.mark.parametrize("after_acks", [37, 180])
def test_kill_at_an_arbitrary_moment_loses_nothing_acknowledged(tmp_path: Path, spec_json: Path,
                                                               after_acks: int):
    sweep_dir = tmp_path / "sweep"
    db = sweep_dir / "golfsweep.db"
    writer = _spawn(WRITER, db, spec_json, 60.0, ",".join(map(str, SEEDS)), 100_000)
    acks: list[str] = []
    try:
        _read_until(writer, "READY")
        while len(acks) < after_acks:
            line = writer.stdout.readline()
            assert line, writer.stderr.read()
            acks.append(line.strip())
    finally:
        writer.send_signal(signal.SIGKILL)  # the writer kept going: it dies somewhere in a write
        writer.communicate()
    _assert_intact(db)
    data = load_sweep(sweep_dir)
    check_snapshot(data)
    trials = {t.trial: t for t in data.trials}
    runs = {(r.trial, r.seed): r for r in data.runs}
    for ack in acks:
        kind, *rest = ack.split()[1:]
        if kind == "trial":
            assert int(rest[0]) in trials
        elif kind == "finish":
            assert trials[int(rest[0])].state != TrialStatus.RUNNING
        else:
            trial, seed, attempt, state = int(rest[0]), int(rest[1]), int(rest[2]), RunState(rest[3])
            r = runs[(trial, seed)]
            # the run is at the acknowledged write or a later one, never an earlier one
            assert (r.attempt, _order(r.state)) >= (attempt, _order(state)), (ack, r)
    _next_writer_works(db)


def _order(state: RunState) -> int:
    return 0 if state is RunState.RUNNING else 1


def _assert_intact(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def _next_writer_works(db: Path) -> None:
    """No lock or hot journal is left behind: a new writer commits at once."""
    t0 = time.monotonic()
    with Store(db) as store:
        store.put_run(record(999, 1, 1, RunState.COMPLETE))
        assert store.run(999, 1) == record(999, 1, 1, RunState.COMPLETE)
    assert time.monotonic() - t0 < 5
