"""Bad input, table-driven: every user mistake ends in one of two ways.

* A configuration problem: one line ``error: ...`` on stderr naming the key and the offending
  value, a non-zero exit, no traceback, and nothing started (no sweep directory, no run).
* A run problem: the run is recorded as failed (or timed out / stalled) in the store, with its
  reason, and the sweep carries on.

Sweep-file cases live with their package (``tests/search_spaces``); the cases here go through the
CLI in-process; run cases through the ``Driver`` with the
in-process backend (no Ray). Two cases run the CLI as its own process: a plain config error, and
an unreachable Ray address (which must fail within seconds and leave no process behind).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from golfsweep.errors import GolfsweepError
from golfsweep.orchestrator import Driver, InProcessBackend, run_sweep
from golfsweep.results import Store, TrialStatus, format_status, format_table, load_sweep
from golfsweep.search_spaces import load_spec
from golfsweep.worker import RunState
from tests.conftest import (
    FAKE_TRAIN,
    assert_one_line_error,
    cli_command,
    cli_env,
    fill_tmp as _fill,
    invoke_cli,
    run_sweep_in_process,
    write_sweep,
)

# --------------------------------------------------------------------------- other commands


@dataclass(frozen=True)
class BadCommand:
    id: str
    args: tuple[str, ...]
    needles: tuple[str, ...]
    setup: Callable[[Path], None] | None = None


def _empty_dir(tmp: Path) -> None:
    (tmp / "empty").mkdir()


def _a_file(tmp: Path) -> None:
    (tmp / "file.txt").write_text("not a sweep\n")


def _store_without_spec(tmp: Path) -> None:
    Store(tmp / "bare" / "golfsweep.db").close()


def _empty_store_file(tmp: Path) -> None:
    (tmp / "e").mkdir()
    (tmp / "e" / "golfsweep.db").write_bytes(b"")


def _garbage_store_file(tmp: Path) -> None:
    (tmp / "g").mkdir()
    (tmp / "g" / "golfsweep.db").write_bytes(b"not sqlite at all\n" * 100)


def _gpu_sweep(tmp: Path) -> None:
    write_sweep(tmp, gpus_per_run=8)


def _wide_cpu_sweep(tmp: Path) -> None:
    write_sweep(tmp, gpus_per_run=0, cpus_per_run=64)


BAD_COMMANDS = [
    # a local instance never grows: a run that cannot fit on it is refused before Ray starts
    BadCommand("run-more-gpus-than-declared", ("run", "{tmp}/sweep.toml", "--dir", "{tmp}/out", "--num-gpus", "4"),
               ("--num-gpus", "gpus_per_run=8", "would have 4"), _gpu_sweep),
    BadCommand("run-more-cpus-than-local", ("run", "{tmp}/sweep.toml", "--dir", "{tmp}/out", "--num-cpus", "2"),
               ("sweep.cpus_per_run", "has 2", "got 64"), _wide_cpu_sweep),
    BadCommand("table-missing-dir", ("table", "{tmp}/nope"), ("sweep directory", "{tmp}/nope")),
    BadCommand("status-missing-dir", ("status", "{tmp}/nope"), ("sweep directory", "{tmp}/nope")),
    BadCommand("table-not-a-sweep-dir", ("table", "{tmp}/empty"), ("golfsweep store", "{tmp}/empty"), _empty_dir),
    BadCommand("status-on-a-file", ("status", "{tmp}/file.txt"), ("sweep directory", "{tmp}/file.txt"), _a_file),
    BadCommand("table-store-without-spec", ("table", "{tmp}/bare"), ("no sweep spec", "{tmp}/bare"),
               _store_without_spec),
    BadCommand("table-empty-store-file", ("table", "{tmp}/e"), ("golfsweep store", "{tmp}/e"), _empty_store_file),
    BadCommand("status-garbage-store-file", ("status", "{tmp}/g"), ("store", "not a database", "{tmp}/g"),
               _garbage_store_file),
    BadCommand("table-bad-format", ("table", "{tmp}", "--format", "xml"), ("--format", "'xml'")),
    BadCommand("parse-log-missing-file", ("parse-log", "{tmp}/no.log"), ("LOG", "{tmp}/no.log")),
    BadCommand("parse-log-directory", ("parse-log", "{tmp}"), ("LOG", "{tmp}")),
    BadCommand("resume-not-a-sweep-dir", ("resume", "{tmp}/empty"), ("SWEEP_DIR", "{tmp}/empty"), _empty_dir),
    BadCommand("resume-spec-missing", ("resume", "{tmp}/bare", "--spec", "{tmp}/gone.toml"),
               ("{tmp}/gone.toml",), _store_without_spec),
]


@pytest.mark.parametrize("case", BAD_COMMANDS, ids=lambda c: c.id)
def test_bad_command_arguments_are_one_line_errors(case: BadCommand, tmp_path: Path):
    if case.setup:
        case.setup(tmp_path)
    res = invoke_cli(*(_fill(a, tmp_path) for a in case.args))
    assert res.exit_code != 0
    assert_one_line_error(res.stderr, *(_fill(n, tmp_path) for n in case.needles))


@pytest.mark.parametrize("args", [("table",), ("run",), ("run", "x.toml", "--num-cpus", "many"),
                                  ("table", ".", "--no-such-option"), ("no-such-command",)],
                         ids=["missing-argument", "run-without-file", "non-integer-option", "unknown-option",
                              "unknown-command"])
def test_usage_errors_exit_2_without_traceback(args: tuple[str, ...]):
    res = invoke_cli(*args)
    assert res.exit_code == 2
    assert "Traceback" not in res.stderr and "Error" in res.stderr


def test_cli_as_a_process_reports_config_error_in_one_line(tmp_path: Path):
    """The console entry point in a fresh interpreter, as a user runs it."""
    import subprocess

    spec_path = write_sweep(tmp_path, space={"KNOB_X": {"type": "float", "low": 3.0, "high": 1.0}})
    proc = subprocess.run([*cli_command(), "run", str(spec_path), "--dir", str(tmp_path / "d")],
                          env=cli_env(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "space.KNOB_X", "low=3.0 high=1.0")
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- the sweep directory / storage


def _no_runs_started(sweep_dir: Path) -> None:
    assert not (sweep_dir / "runs").exists()
    store = sweep_dir / "golfsweep.db"
    if store.exists():
        with Store(store, create=False) as s:
            assert s.runs() == []


def _expect_config_error(fn: Callable[[], Any], *needles: str) -> str:
    with pytest.raises(GolfsweepError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-golfsweep-dir/sub/optuna.db"])
def test_storage_url_that_cannot_be_opened(url: str, tmp_path: Path):
    # (a URL of an unknown database is refused when the sweep file is read: tests/search_spaces;
    # an unreachable PostgreSQL server: tests/results/test_store_postgres.py)
    spec = load_spec(write_sweep(tmp_path, storage={"url": url}))
    sweep_dir = tmp_path / "d"
    _expect_config_error(lambda: run_sweep(spec, sweep_dir, backend=InProcessBackend()), "storage.url", url)
    _no_runs_started(sweep_dir)


def test_sweep_dir_holding_a_different_sweep(tmp_path: Path):
    sweep_dir = tmp_path / "d"
    first = load_spec(write_sweep(tmp_path, "a.toml", name="first"))
    Driver(first, sweep_dir, InProcessBackend()).store.close()
    other = load_spec(write_sweep(tmp_path, "b.toml", name="second",
                                  space={"KNOB_X": {"type": "float", "low": 0.0, "high": 9.0}}))
    _expect_config_error(lambda: run_sweep(other, sweep_dir, backend=InProcessBackend()),
                         "sweep directory", str(sweep_dir), "'first'", "different spec")
    _no_runs_started(sweep_dir)
    with Store(sweep_dir / "golfsweep.db", create=False) as s:  # the old sweep is left as it was
        assert json.loads(s.get_meta("spec"))["name"] == "first"


def test_sweep_dir_whose_script_changed(tmp_path: Path):
    script = tmp_path / "train.py"
    script.write_bytes(FAKE_TRAIN.read_bytes())
    spec_path = write_sweep(tmp_path, script=str(script))
    sweep_dir = tmp_path / "d"
    Driver(load_spec(spec_path), sweep_dir, InProcessBackend()).store.close()
    script.write_text(script.read_text() + "\n# edited\n")
    _expect_config_error(lambda: run_sweep(load_spec(spec_path), sweep_dir, backend=InProcessBackend()),
                         "sweep.script", "train.py", "changed")
    _no_runs_started(sweep_dir)


def test_sweep_dir_that_is_a_file(tmp_path: Path):
    target = tmp_path / "d"
    target.write_text("x")
    spec = load_spec(write_sweep(tmp_path))
    _expect_config_error(lambda: run_sweep(spec, target, backend=InProcessBackend()),
                         "sweep directory", str(target))
    assert target.read_text() == "x"


# --------------------------------------------------------------------------- run problems


FAIL_MODES = ["", "exit", "nan", "no_metric", "truncated", "no_artifact", "exit@2"]


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """One sweep whose trials walk every FAIL_MODE of the fake trainer (grid sampler), 2 seeds each."""
    tmp = tmp_path_factory.mktemp("failing")
    spec_path = write_sweep(tmp, trials=len(FAIL_MODES), sampler={"name": "grid"},
                            space={"FAIL_MODE": {"type": "categorical", "choices": FAIL_MODES}})
    sweep_dir = tmp / "d"
    run_sweep_in_process(spec_path, sweep_dir, max_parallel=2)
    data = load_sweep(sweep_dir)
    trial_of = {t.params["FAIL_MODE"]: t.trial for t in data.trials}
    assert sorted(trial_of) == sorted(FAIL_MODES)
    return sweep_dir, trial_of


RUN_PROBLEMS = [
    # mode, expected state per seed, reason fragment, exit code
    ("exit", RunState.FAILED, "script exited with status 3", 3),
    ("nan", RunState.FAILED, "is not finite: val_loss=nan val_bpb=nan", 0),
    ("no_metric", RunState.FAILED, "no final metric line in the log", 0),
    ("truncated", RunState.FAILED, "no final metric line in the log", 0),
    ("no_artifact", RunState.FAILED, "no artifact file matching *.ptz", 0),
]


@pytest.mark.parametrize("mode,state,reason,exit_code", RUN_PROBLEMS, ids=[r[0] for r in RUN_PROBLEMS])
def test_run_problem_is_a_failed_run_with_its_reason(failing_sweep, mode, state, reason, exit_code):
    sweep_dir, trial_of = failing_sweep
    with Store(sweep_dir / "golfsweep.db", create=False) as store:
        runs = store.runs(trial_of[mode])
        trial = next(t for t in store.trials() if t.trial == trial_of[mode])
    assert [r.seed for r in runs] == [1, 2]
    for r in runs:
        assert r.state is state, r
        assert reason in (r.reason or ""), r.reason
        assert r.exit_code == exit_code
        assert r.log_tail, "a failed run keeps the last lines of its log as evidence"
        assert r.log_path and Path(r.log_path).is_file()
    assert trial.state == TrialStatus.FAILED and trial.value is None


def test_failed_runs_keep_their_evidence(failing_sweep):
    sweep_dir, trial_of = failing_sweep
    with Store(sweep_dir / "golfsweep.db", create=False) as store:
        r = store.run(trial_of["exit"], 1)
    assert any("CUDA out of memory" in line for line in r.log_tail)
    result = json.loads((sweep_dir / "runs" / f"{trial_of['exit']:04d}-1" / "result.json").read_text())
    assert result["state"] == "failed" and result["exit_code"] == 3


def test_one_failed_seed_fails_the_config_and_is_not_averaged_away(failing_sweep):
    sweep_dir, trial_of = failing_sweep
    t = trial_of["exit@2"]
    with Store(sweep_dir / "golfsweep.db", create=False) as store:
        ok, bad = store.run(t, 1), store.run(t, 2)
        trial = next(x for x in store.trials() if x.trial == t)
    assert ok.state is RunState.COMPLETE and ok.val_bpb is not None
    assert bad.state is RunState.FAILED and "status 3" in bad.reason
    assert trial.state == TrialStatus.FAILED
    rows = {row["trial"]: row for row in json.loads(format_table(load_sweep(sweep_dir), "json"))}
    assert rows[t]["n_ok"] == 1 and rows[t]["n_seeds"] == 2 and rows[t]["feasible"] is False
    assert rows[trial_of[""]]["n_ok"] == 2 and rows[trial_of[""]]["feasible"] is True


def test_status_and_table_show_failure_reasons(failing_sweep):
    sweep_dir, _ = failing_sweep
    status = invoke_cli("status", sweep_dir)
    assert status.exit_code == 0 and status.stderr == ""
    for _, _, reason, _ in RUN_PROBLEMS:
        assert reason in status.stdout
    assert "complete 3" in status.stdout and "failed 11" in status.stdout
    for fmt in ("md", "csv", "json"):
        res = invoke_cli("table", sweep_dir, "--format", fmt)
        assert res.exit_code == 0 and res.stderr == ""
        assert "script exited with status 3" in res.stdout


def _one_run(tmp: Path, **overrides: Any) -> tuple[Any, Path]:
    spec_path = write_sweep(tmp, seeds=[1], **overrides)
    sweep_dir = tmp / "d"
    run_sweep_in_process(spec_path, sweep_dir, max_parallel=1)
    with Store(sweep_dir / "golfsweep.db", create=False) as store:
        (run,) = store.runs()
    return run, sweep_dir


@pytest.mark.parametrize("mode,limits,state,reason", [
    ("silent", {"stall_seconds": 1, "run_timeout_seconds": 30}, RunState.STALLED,
     "killed after stall_seconds=1 without output"),
    ("hang", {"stall_seconds": 30, "run_timeout_seconds": 1.5}, RunState.TIMEOUT,
     "killed after run_timeout_seconds=1.5"),
], ids=["stalled", "past-run-timeout"])
def test_hung_script_is_killed_and_recorded(tmp_path: Path, mode, limits, state, reason):
    t0 = time.monotonic()
    run, _ = _one_run(tmp_path, env={"FAIL_MODE": mode}, limits=limits)
    assert run.state is state and reason in run.reason
    assert time.monotonic() - t0 < 20
    assert any(line.startswith("step:200/200") for line in run.log_tail)  # output before the hang is kept


@pytest.mark.parametrize("body,reason,exit_code", [
    ("", "no final metric line", 0),
    ("import sys\nsys.exit(0)\n", "no final metric line", 0),
    ("def broken(:\n", "script exited with status 1", 1),
    ("import os\nos.kill(os.getpid(), 9)\n", "script exited with status -9", -9),
], ids=["empty-script", "exit-0-no-output", "syntax-error", "killed-by-signal"])
def test_script_that_does_nothing_useful(tmp_path: Path, body: str, reason: str, exit_code: int):
    script = tmp_path / "train.py"
    script.write_text(body)
    run, _ = _one_run(tmp_path, script=str(script))
    assert run.state is RunState.FAILED
    assert reason in run.reason and run.exit_code == exit_code


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").exists(), reason="process accounting via /proc")
def test_script_leaving_a_background_child_does_not_leave_it_running(tmp_path: Path):
    """A finished run's leftovers (a stray dataloader, a forgotten subprocess) would hold the node's
    GPU and the log pipe; they are stopped when the script exits."""
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "train.py"
    script.write_text(
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "open('final_model.int6.ptz', 'wb').truncate(100)\n"
        "print('final_int6_zstd_roundtrip val_loss:2.0000 val_bpb:1.2000 eval_time:10ms', flush=True)\n")
    t0 = time.monotonic()
    run, _ = _one_run(tmp_path, script=str(script))
    took = time.monotonic() - t0
    child = int(pid_file.read_text())
    try:
        assert run.state is RunState.COMPLETE, run.reason
        time.sleep(0.2)
        assert not _alive(child), "the script's background child outlived the run"
        assert took < 4.5, f"the run waited {took:.1f}s on a pipe its leftover child held"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_data_path_missing_on_the_node_fails_the_run(tmp_path: Path):
    """With a backend (a cluster), paths are checked on the node, where the run would use them."""
    missing = str(tmp_path / "no-such-data")
    run, sweep_dir = _one_run(tmp_path, env={"DATA_PATH": missing})
    assert run.state is RunState.FAILED
    assert "DATA_PATH" in run.reason and missing in run.reason
    assert run.exit_code is None  # nothing was launched
    assert "DATA_PATH" in format_status(load_sweep(sweep_dir))


# --------------------------------------------------------------------------- an unreachable cluster


def _session_members(sid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc").exists(), reason="process accounting via /proc")
def test_unreachable_ray_address_fails_fast_and_leaves_nothing(tmp_path: Path):
    import subprocess

    spec_path = write_sweep(tmp_path)
    proc = subprocess.Popen([*cli_command(), "run", str(spec_path), "--dir", str(tmp_path / "d"),
                             "--address", "127.0.0.1:1"], env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert not _session_members(proc.pid)
        pytest.fail("`--address 127.0.0.1:1` still connecting after 25 s (ray.init retries a dead GCS "
                    "for minutes unless the address is probed first)")
    took = time.monotonic() - t0
    time.sleep(0.5)
    assert not _session_members(proc.pid), "processes left behind"
    assert proc.returncode == 1
    assert_one_line_error(err, "--address", "127.0.0.1:1")
    assert took < 30
    _no_runs_started(tmp_path / "d")
