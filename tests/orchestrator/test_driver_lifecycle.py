"""One driver per sweep (the lease) and a clean stop on SIGTERM, through the real CLI and Ray."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

from golfsweep.orchestrator import SweepLease
from golfsweep.results import Store
from golfsweep.worker import RunState
from tests.conftest import assert_one_line_error, cli_command, cli_env, run_cli_process
from tests.orchestrator._sweeps import write_spec
from tests.procs import is_alive


def _start_run(sweep_file: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([*cli_command(), "run", str(sweep_file), "--dir", str(out), "--num-cpus", "2"],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_running(out: Path, n: int = 1, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "golfsweep.db").exists():
            with Store(out / "golfsweep.db") as store:
                if sum(r.state is RunState.RUNNING for r in store.runs()) >= n:
                    return
        time.sleep(0.1)
    raise AssertionError("no run started")


def test_a_second_driver_on_a_live_sweep_is_refused_naming_the_owner(tmp_path):
    go = tmp_path / "go"
    sweep_file = write_spec(tmp_path, trials=1, seeds=(1, 2), env={"WAIT_FOR": str(go)})
    out = tmp_path / "out"
    first = _start_run(sweep_file, out)
    try:
        _wait_for_running(out)
        second = run_cli_process("resume", out, "--num-cpus", "2", timeout=60)
        assert second.returncode == 1
        line = assert_one_line_error(second.stderr, "another driver runs this sweep",
                                     f"pid {first.pid} on {socket.gethostname()}")
        assert "heartbeat" in line
        again = run_cli_process("run", sweep_file, "--dir", out, "--num-cpus", "2", timeout=60)
        assert again.returncode == 1 and "another driver runs this sweep" in again.stderr
        go.touch()
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    with Store(out / "golfsweep.db") as store:  # the refused drivers changed nothing
        runs = store.runs()
        assert len(runs) == 2 and all(r.state is RunState.COMPLETE and r.attempt == 1 for r in runs)


def test_a_stale_lease_is_taken_over_with_a_notice(tmp_path):
    store_path = tmp_path / "golfsweep.db"
    with Store(store_path) as store:  # a driver on another host whose heartbeat stopped long ago
        store.take_lease("old-token", {"host": "gone-host", "pid": 123, "started_at": 0.0}, lambda h: False)
    with sqlite3.connect(store_path) as conn:
        conn.execute("UPDATE lease SET heartbeat_at = 1.0")
    lease = SweepLease(store_path, tmp_path, stale_after_s=30)
    notice = lease.acquire()
    try:
        assert notice and "pid 123 on gone-host" in notice and "heartbeat" in notice
        other = SweepLease(store_path, tmp_path, stale_after_s=30)  # and now it is live: refused
        try:
            other.acquire()
            raise AssertionError("a second lease on a live sweep was granted")
        except Exception as exc:  # noqa: BLE001
            assert "another driver runs this sweep" in str(exc) and f"pid {os.getpid()}" in str(exc)
    finally:
        lease.release()
    assert SweepLease(store_path, tmp_path).acquire() is None  # released: free again


def test_sigterm_stops_the_driver_in_one_line_and_kills_the_runs(tmp_path):
    pid_dir = tmp_path / "pids"
    go = tmp_path / "go"  # the trainers wait for it: they are still running when the driver is stopped
    sweep_file = write_spec(tmp_path, trials=2, seeds=(1, 2), env={"WAIT_FOR": str(go), "PID_DIR": str(pid_dir)})
    out = tmp_path / "out"
    driver = _start_run(sweep_file, out)
    try:
        _wait_for_running(out, n=2)
        deadline = time.time() + 60
        while time.time() < deadline and len(list(pid_dir.glob("*"))) < 2:
            time.sleep(0.1)  # the trainers have started
        trainers = [int(p.name) for p in pid_dir.glob("*")]
        assert len(trainers) == 2
        driver.send_signal(signal.SIGTERM)
        code = driver.wait(timeout=60)
        stderr = driver.stderr.read()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert code == 143, stderr
    # stderr also holds the progress lines; the stop itself is one error line and no traceback
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted (SIGTERM)" in errors[0] and "golfsweep resume" in errors[0]
    deadline = time.time() + 20
    while time.time() < deadline and any(is_alive(p) for p in trainers):
        time.sleep(0.2)
    assert not any(is_alive(p) for p in trainers), "a run's process outlived the driver"
    log = (out / "driver.log").read_text()
    assert "event=driver_interrupted signal=SIGTERM" in log
    with Store(out / "golfsweep.db") as store:  # nothing lost: in-flight runs stay RUNNING for resume
        assert {r.state for r in store.runs()} == {RunState.RUNNING}
        assert store.get_meta("fingerprint")
    go.touch()
    resumed = run_cli_process("resume", out, "--num-cpus", "2", timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    with Store(out / "golfsweep.db") as store:
        assert all(r.state is RunState.COMPLETE for r in store.runs()) and len(store.runs()) == 4
    assert json.loads((out / "spec.json").read_text())["spec"]["name"] == "fake"
