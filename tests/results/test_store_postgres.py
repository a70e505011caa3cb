"""The run store on a real PostgreSQL server (``[storage] url = "postgresql://…"``), started by the
tests (``tests/pg.py``; skipped with the reason where none can be started).

The contract tests run on both stores, SQLite and PostgreSQL: the same records, the same lease
compare-and-set, the same reader snapshot. The rest is PostgreSQL's own: several sweeps on one
server, each in its own schema; an older store upgraded in place; concurrent drivers racing for a
free lease.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest

from golfsweep.errors import GolfsweepError
from golfsweep.results import LeaseHeld, RunRecord, Store, TrialStatus
from golfsweep.results._store import SCHEMA_VERSION
from golfsweep.scriptfiles import ScriptFiles
from golfsweep.storage import StoreLocation, schema_name
from golfsweep.worker import RunState
from tests.results.test_store import full_record


@pytest.fixture(params=["sqlite", "postgresql"])
def location_of(request, tmp_path):
    """``location_of(sweep_name) -> StoreLocation`` on one kind of store."""
    if request.param == "sqlite":
        return lambda name: StoreLocation.file(tmp_path / name / "golfsweep.db")
    server = request.getfixturevalue("pg_server")
    url = server.url(server.new_database())
    return lambda name: StoreLocation.server(url, name)


# --------------------------------------------------------------------------- the contract, on both stores

def test_records_round_trip_exactly(location_of):
    big = full_record(seed=2**32 + 7, bytes_total=2**40 + 3, started_at=1_760_000_000.123456789,
                      val_bpb=1.0821234567890123)
    where = location_of("round-trip")
    with Store(where) as store:
        store.set_meta("spec", '{"name": "round-trip"}')
        store.add_trial(3, {"KNOB_X": 0.5}, {"KNOB_X": "0.5", "HF_TOKEN": "***"})
        store.put_run(full_record(state=RunState.RUNNING, attempt=1))
        store.put_run(full_record())
        store.put_run(big)
        store.finish_trial(3, TrialStatus.COMPLETE, 1.0821)
    with Store(where, create=False) as store:
        assert store.runs() == [full_record(), big]  # the latest record of each run, every field by name
        assert store.run(3, 42) == full_record()
        (trial,) = store.trials()
        assert (trial.params, trial.state, trial.value) == ({"KNOB_X": 0.5}, TrialStatus.COMPLETE, 1.0821)
        assert trial.env == {"KNOB_X": "0.5", "HF_TOKEN": "***"}
        assert [(a["seed"], a["attempt"], a["state"]) for a in store.attempts()] == [
            (42, 1, "running"), (42, 2, "complete"), (2**32 + 7, 2, "complete")]
        assert store.get_meta("spec") == '{"name": "round-trip"}' and store.get_meta("nope") is None
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_the_lease_is_a_compare_and_set(location_of):
    where = location_of("lease")
    with Store(where) as a, Store(where) as b:
        assert a.take_lease("A", {"host": "h1", "pid": 1}, lambda h: False) is None
        assert a.take_lease("A", {"host": "h1", "pid": 1}, lambda h: False) is None  # ours already
        with pytest.raises(LeaseHeld) as held:
            b.take_lease("B", {"host": "h2", "pid": 2}, lambda h: False)
        assert held.value.holder["host"] == "h1" and held.value.holder["heartbeat_at"] > 0
        assert a.renew_lease("A")
        replaced = b.take_lease("B", {"host": "h2", "pid": 2}, lambda h: h["pid"] == 1)  # judged stale
        assert replaced["pid"] == 1
        assert not a.renew_lease("A")  # A learns it lost the lease
        a.release_lease("A")  # not A's any more: changes nothing
        with pytest.raises(LeaseHeld):
            a.take_lease("A", {"host": "h1", "pid": 1}, lambda h: False)
        b.release_lease("B")
        assert a.take_lease("A", {"host": "h1", "pid": 1}, lambda h: False) is None


def test_a_reader_sees_one_snapshot(location_of):
    where = location_of("snapshot")
    with Store(where) as writer:
        writer.add_trial(0, {"KNOB_X": 1.0})
        writer.put_run(full_record(trial=0, seed=1))
        with Store(where, create=False) as reader:
            assert len(reader.runs()) == 1  # the snapshot starts here
            writer.add_trial(1, {"KNOB_X": 2.0})
            writer.put_run(full_record(trial=1, seed=1))
            assert len(reader.runs()) == 1 and len(reader.trials()) == 1  # never a run without its trial
        with Store(where, create=False) as later:
            assert len(later.runs()) == 2 and len(later.trials()) == 2


def test_a_server_store_holds_the_script_and_logs(location_of):
    """Readers elsewhere need them; a SQLite store leaves them to the files of its sweep directory."""
    where = location_of("files")
    with Store(where) as store:
        store.put_script(ScriptFiles("train_gpt.py", b"exec(open('lib/run.py').read())\n\x00\xff",
                                     (("lib/run.py", b"print('hi')\n"),)))
        store.put_log(0, 1, "step:1 val_bpb:1.5\nfinal \u2713\n")
        store.put_log(0, 1, "attempt 2\n")  # the last attempt's log replaces the first
        assert store.holds_files is where.is_server
        if where.is_server:
            assert store.script() == ("train_gpt.py", b"exec(open('lib/run.py').read())\n\x00\xff")
            assert store.support_files() == {"lib/run.py": b"print('hi')\n"}
            assert store.log(0, 1) == b"attempt 2\n" and store.log(0, 2) is None
        else:
            assert store.script() is None and store.support_files() == {} and store.log(0, 1) is None


# --------------------------------------------------------------------------- PostgreSQL's own

def test_sweeps_on_one_server_are_isolated(pg_server):
    url = pg_server.url(pg_server.new_database())
    long_a, long_b = "a" * 60 + "-one", "a" * 60 + "-two"  # past PostgreSQL's 63-byte names
    names = ["qk-ttt", "QK-ttt", long_a, long_b]
    for i, name in enumerate(names):
        with Store(StoreLocation.server(url, name)) as store:
            store.set_meta("spec", name)
            store.add_trial(0, {"i": i})
            store.put_run(full_record(trial=0, seed=i))
            store.take_lease(f"token-{i}", {"host": "h", "pid": i}, lambda h: False)  # one lease per sweep
            store.put_log(0, i, f"log of {name}")
    for i, name in enumerate(names):
        with Store(StoreLocation.server(url, name), create=False) as store:
            assert store.get_meta("spec") == name
            assert [r.seed for r in store.runs()] == [i] and store.trials()[0].params == {"i": i}
            assert store.log(0, i) == f"log of {name}".encode() and store.log(0, 0 if i else 1) is None
    assert len({schema_name(n) for n in names}) == 4 and all(len(schema_name(n)) <= 63 for n in names)
    with pytest.raises(GolfsweepError) as info:
        Store(StoreLocation.server(url, "nope"), create=False)
    msg = str(info.value)
    assert msg.startswith("storage.url: no sweep 'nope' on postgresql://postgres@127.0.0.1:") and "qk-ttt" in msg
    assert "\n" not in msg


def test_an_older_store_on_a_server_is_upgraded_in_place(pg_server):
    database = pg_server.new_database()
    where = StoreLocation.server(pg_server.url(database), "old")
    schema = schema_name("old")
    pg_server.sql(f'''
        CREATE SCHEMA "{schema}";
        CREATE TABLE "{schema}".meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO "{schema}".meta VALUES ('schema_version', '1');
        CREATE TABLE "{schema}".trials (trial BIGINT PRIMARY KEY, params TEXT NOT NULL, state TEXT NOT NULL,
            value DOUBLE PRECISION, created_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION);
        CREATE TABLE "{schema}".runs (trial BIGINT NOT NULL, seed BIGINT NOT NULL, state TEXT NOT NULL,
            attempt BIGINT, val_bpb DOUBLE PRECISION, log_tail TEXT, curve TEXT,
            updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (trial, seed));
        CREATE TABLE "{schema}".attempts (trial BIGINT NOT NULL, seed BIGINT NOT NULL, attempt BIGINT NOT NULL,
            state TEXT NOT NULL, reason TEXT, node_id TEXT, started_at DOUBLE PRECISION,
            ended_at DOUBLE PRECISION, PRIMARY KEY (trial, seed, attempt));
        INSERT INTO "{schema}".trials VALUES (0, '{{"x": 1}}', 'complete', 1.2, 0, 1);
        INSERT INTO "{schema}".runs VALUES (0, 1, 'complete', 1, 1.2, '["tail"]', '[[1, 2.0, 1.5]]', 0);
    ''', database)
    with Store(where) as store:
        (old,) = store.runs()
        assert old.val_bpb == 1.2 and old.command == () and old.hostname is None and old.log_tail == ("tail",)
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert store.trials()[0].env is None
        store.put_run(full_record(trial=0, seed=2))
        assert store.run(0, 2) == full_record(trial=0, seed=2)
        store.put_log(0, 2, "new table too")
        assert store.log(0, 2) == b"new table too"


def test_drivers_racing_for_a_free_lease_get_it_once(pg_server):
    """The lease's read-judge-write is one locked transaction on PostgreSQL too."""
    where = StoreLocation.server(pg_server.url(pg_server.new_database()), "race")
    Store(where).close()
    n = 8
    start = threading.Barrier(n)
    won: list[str] = []
    refused: list[str] = []

    def driver(i: int) -> None:
        with Store(where) as store:
            start.wait()
            try:
                store.take_lease(f"t{i}", {"host": "h", "pid": i}, lambda h: False)
                won.append(f"t{i}")
            except LeaseHeld:
                refused.append(f"t{i}")

    threads = [threading.Thread(target=driver, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(won) == 1 and len(refused) == n - 1


def test_one_record_type_for_both_stores():
    """Every RunRecord field has a column type on both databases (a new field cannot be forgotten)."""
    from golfsweep.results._db import _TYPES
    from golfsweep.results._store import _column_type

    for f in dataclasses.fields(RunRecord):
        assert all(_column_type(f) in types for types in _TYPES.values()), f.name
