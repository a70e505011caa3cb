"""A sweep whose study and run store are on PostgreSQL (``[storage] url``), against a real server the
tests start (``tests/pg.py``; skipped with the reason where none can be started).

* The sweep runs (in-process backend), then ``status``, ``table``, ``export`` and ``report`` read it
  from another working directory with the sweep directory gone: only the URL and the sweep's name.
* The password in the URL reaches no file golfsweep writes and no message.
* One driver per sweep holds on the server; a same-named different sweep is refused; the same sweep
  from another directory continues.
* A bad URL, a dead server, an unknown host, a wrong password, a missing psycopg: one line naming
  ``storage.url``, exit 1, before any run starts.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from golfsweep.errors import GolfsweepError
from golfsweep.orchestrator import Driver, InProcessBackend, SweepLease, spec_for_resume
from golfsweep.results import Store, format_table, load_sweep
from golfsweep.search_spaces import load_spec
from golfsweep.storage import StoreLocation
from tests.conftest import assert_one_line_error, invoke_cli, run_cli_process, run_sweep_in_process, write_sweep
from tests.pg import PW_PASSWORD, PW_USER


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _assert_no_password(*roots: Path) -> None:
    for root in roots:
        for path in _files_under(root):
            assert PW_PASSWORD.encode() not in path.read_bytes(), path


@pytest.fixture
def pw_database(pg_server) -> tuple[str, str]:
    """(URL with the password, URL without it) of a fresh database owned by the password role."""
    database = pg_server.new_database(owner=PW_USER)
    return (pg_server.url(database, user=PW_USER, password=PW_PASSWORD),
            pg_server.url(database, user=PW_USER))


def test_a_sweep_on_postgresql_is_read_from_anywhere_with_the_url(tmp_path, pw_database, monkeypatch):
    with_pw, without_pw = pw_database
    sweep_file = write_sweep(tmp_path / "here", name="pg-sweep", trials=2, storage={"url": with_pw})
    sweep_dir = tmp_path / "here" / "sweep"
    outcome = run_sweep_in_process(sweep_file, sweep_dir)
    assert outcome.n_runs == 4 and outcome.n_failed == 0
    assert not (sweep_dir / "golfsweep.db").exists() and not (sweep_dir / "optuna.db").exists()
    assert (sweep_dir / "spec.json").exists() and (sweep_dir / "driver.log").exists()  # the local files too
    spec_json = json.loads((sweep_dir / "spec.json").read_text())["spec"]
    assert spec_json["storage_url"] == with_pw.replace(PW_PASSWORD, "***")
    _assert_no_password(sweep_dir, sweep_dir.with_name("sweep.work"))  # all golfsweep wrote (not the sweep file)

    server = StoreLocation.server(with_pw, "pg-sweep")
    expected = json.loads(format_table(load_sweep(server), "json"))
    logs = {(r.trial, r.seed): Path(r.log_path).read_bytes() for r in load_sweep(server).runs}
    with Store(server, create=False) as store:
        assert PW_PASSWORD not in store.get_meta("spec") and "***" in store.get_meta("spec")
        assert store.script() == ("fake_train.py", load_spec(sweep_file).script.read_bytes())

    # The sweep directory's own URL has no password: PGPASSWORD supplies it.
    monkeypatch.setenv("PGPASSWORD", PW_PASSWORD)
    res = invoke_cli("table", sweep_dir, "--format", "json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == expected

    # Elsewhere, with the sweep directory gone: the URL (no password) and the sweep's name.
    shutil.rmtree(tmp_path / "here")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    source = ("--storage", without_pw, "--sweep-name", "pg-sweep")
    res = invoke_cli("status", *source)
    assert res.exit_code == 0, res.stderr
    assert "complete" in res.stdout and PW_PASSWORD not in res.stdout
    res = invoke_cli("table", *source, "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout) == expected
    best = expected[0]["trial"]
    res = invoke_cli("export", *source, "--trial", str(best), "--out", "record")
    assert res.exit_code == 0, res.stderr
    record = elsewhere / "record"
    assert (record / "train_gpt.py").read_bytes() == (Path(__file__).parents[1] / "fixtures" / "fake_train.py"
                                                      ).read_bytes()
    for seed in (1, 2):
        assert (record / f"train_seed{seed}.log").read_bytes() == logs[(best, seed)]
    submission = json.loads((record / "submission.json").read_text())
    assert submission["val_bpb"] == pytest.approx(expected[0]["mean_val_bpb"])
    res = invoke_cli("report", *source, "--out", "report.html")
    assert res.exit_code == 0, res.stderr
    assert "pg-sweep" in (elsewhere / "report.html").read_text()

    # The same, as a user runs it: a fresh process in another directory.
    proc = run_cli_process("table", *source, "--format", "json", cwd=elsewhere, env={"PGPASSWORD": PW_PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == expected
    _assert_no_password(elsewhere)

    # Without the password anywhere: one line that says where to put it.
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    res = invoke_cli("table", *source)
    line = assert_one_line_error(res.stderr, "--storage: cannot use", without_pw, "PGPASSWORD")
    assert res.exit_code == 1 and PW_PASSWORD not in line


def test_same_name_on_one_server_is_one_sweep(tmp_path, pg_url):
    first = write_sweep(tmp_path, "a.toml", name="shared", trials=1, storage={"url": pg_url})
    run_sweep_in_process(first, tmp_path / "a")
    with Store(StoreLocation.server(pg_url, "shared"), create=False) as store:
        before = store.runs()

    assert spec_for_resume(tmp_path / "a").name == "shared"  # `resume DIR` finds the sweep file without the server

    # The same sweep from another directory (another machine) continues it: nothing runs twice.
    again = run_sweep_in_process(first, tmp_path / "a-again")
    assert again.n_runs == len(before)
    with Store(StoreLocation.server(pg_url, "shared"), create=False) as store:
        assert store.runs() == before

    # Another sweep under the same name is refused before anything starts.
    other = write_sweep(tmp_path, "b.toml", name="shared", trials=1, storage={"url": pg_url},
                        space={"KNOB_X": {"type": "float", "low": 0.0, "high": 9.0}})
    res = invoke_cli("run", other, "--dir", tmp_path / "b")
    assert res.exit_code == 1
    assert_one_line_error(res.stderr, "sweep.name: must be unique", "'shared'", "fingerprint", "rename")
    assert not (tmp_path / "b").exists()

    # A sweep directory keeps its store where it started, and holds one sweep.
    local = write_sweep(tmp_path, "c.toml", name="shared", trials=1)
    with pytest.raises(GolfsweepError, match=r"^storage.url: sweep directory .* keeps its store on a server"):
        run_sweep_in_process(local, tmp_path / "a")
    renamed = write_sweep(tmp_path, "d.toml", name="renamed", trials=1, storage={"url": pg_url})
    with pytest.raises(GolfsweepError, match=r"^sweep directory: .* holds sweep 'shared' with a different spec"):
        run_sweep_in_process(renamed, tmp_path / "a")


def test_a_second_driver_of_a_sweep_on_postgresql_is_refused(tmp_path, pg_url):
    spec = load_spec(write_sweep(tmp_path, name="leased", trials=1, storage={"url": pg_url}))
    holder = SweepLease(StoreLocation.server(pg_url, "leased"), tmp_path / "other-machine")
    assert holder.acquire() is None
    try:
        with pytest.raises(GolfsweepError) as info:
            Driver(spec, tmp_path / "d", InProcessBackend())
        msg = str(info.value)
        assert "another driver runs this sweep" in msg and "heartbeat" in msg and "\n" not in msg
    finally:
        holder.release()
    with Store(StoreLocation.server(pg_url, "leased"), create=False) as store:
        assert store.runs() == []
    assert run_sweep_in_process(spec, tmp_path / "d").n_runs == 2  # released: the sweep runs


def _refused_before_anything_runs(tmp_path: Path, url: str, *needles: str) -> str:
    sweep_file = write_sweep(tmp_path, name="bad-storage", storage={"url": url})
    res = invoke_cli("run", sweep_file, "--dir", tmp_path / "d")
    assert res.exit_code == 1, res.stderr
    line = assert_one_line_error(res.stderr, "storage.url", *needles)
    assert PW_PASSWORD not in res.stderr + res.stdout
    assert not (tmp_path / "d" / "runs").exists()
    return line


def test_a_bad_url_is_refused_when_the_sweep_file_is_read(tmp_path):
    _refused_before_anything_runs(tmp_path, f"mysql://{PW_USER}:{PW_PASSWORD}@localhost/db",
                                  "scheme must be postgresql or sqlite", f"mysql://{PW_USER}:***@localhost/db")
    _refused_before_anything_runs(tmp_path, f"postgresql://{PW_USER}:{PW_PASSWORD}@localhost:port/db",
                                  "port must be a number", f"{PW_USER}:***@")
    assert not (tmp_path / "d").exists()


def test_a_dead_server_is_one_line(tmp_path):
    from tests.pg import _free_port

    url = f"postgresql://{PW_USER}:{PW_PASSWORD}@127.0.0.1:{_free_port()}/db"
    _refused_before_anything_runs(tmp_path, url, f"cannot use postgresql://{PW_USER}:***@127.0.0.1:",
                                  "Connection refused")


def test_an_unknown_host_is_one_line(tmp_path):
    _refused_before_anything_runs(tmp_path, f"postgresql://{PW_USER}:{PW_PASSWORD}@no-such-host.invalid/db",
                                  "no-such-host.invalid")


def test_a_wrong_password_is_one_line(tmp_path, pg_server):
    url = pg_server.url(pg_server.new_database(owner=PW_USER), user=PW_USER, password="wrong-" + PW_PASSWORD[::-1])
    line = _refused_before_anything_runs(tmp_path, url, "password authentication failed", f"{PW_USER}:***@")
    assert PW_PASSWORD[::-1] not in line


def test_missing_psycopg_is_one_line(tmp_path, pg_url, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` fails as if not installed
    _refused_before_anything_runs(tmp_path, pg_url, "psycopg", "pip install")


@pytest.mark.parametrize("args, needles", [
    (("--storage", f"postgresql://{PW_USER}:{PW_PASSWORD}@h:port/db", "--sweep-name", "s"),
     ("--storage: must be a URL", "port must be a number")),
    (("--storage", "sqlite:///x/golfsweep.db", "--sweep-name", "s"), ("--storage: must be a postgresql:// URL",)),
    (("--storage", f"postgresql://{PW_USER}:{PW_PASSWORD}@h/db"), ("--sweep-name", "needed with --storage")),
    (("somedir", "--storage", f"postgresql://{PW_USER}:{PW_PASSWORD}@h/db", "--sweep-name", "s"),
     ("--storage", "not both", "'somedir'", f"{PW_USER}:***@h/db")),
    (("somedir", "--sweep-name", "s"), ("--sweep-name: only with --storage",)),
], ids=["bad-url", "sqlite-url", "no-name", "dir-and-storage", "name-without-storage"])
def test_reading_from_a_server_takes_a_url_and_a_name(args, needles):
    for command in ("status", "table", "report"):
        res = invoke_cli(command, *args)
        assert res.exit_code == 1
        assert_one_line_error(res.stderr, *needles)
        assert PW_PASSWORD not in res.stderr
