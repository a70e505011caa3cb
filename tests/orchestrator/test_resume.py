"""Issue 4: SIGKILL the driver mid-sweep, `golfsweep resume`, and get the uninterrupted table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from golfsweep.orchestrator import Driver, InProcessBackend
from golfsweep.results import Store, format_table, load_sweep
from golfsweep.search_spaces import load_spec
from golfsweep.worker import RunState
from tests.orchestrator._sweeps import write_spec

GOLFSWEEP = [sys.executable, "-c", "from golfsweep.cli import main; main()"]


def _table(sweep_dir: Path) -> list[dict]:
    return json.loads(format_table(load_sweep(sweep_dir), "json"))


def test_resume_after_driver_sigkill_matches_uninterrupted(tmp_path):
    env = {"SLEEP": "0.7"}
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref_spec = load_spec(write_spec(ref_dir, trials=4, seeds=(1, 2, 3), sampler="tpe", env=env))
    Driver(ref_spec, ref_dir / "out", InProcessBackend(max_parallel=2), poll_seconds=0.05).run()

    work = tmp_path / "crash"
    work.mkdir()
    sweep_file = write_spec(work, trials=4, seeds=(1, 2, 3), sampler="tpe", env=env)
    out = work / "out"
    proc = subprocess.Popen(GOLFSWEEP + ["run", str(sweep_file), "--dir", str(out), "--num-cpus", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    before: dict = {}
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "golfsweep.db").exists():
            store = Store(out / "golfsweep.db")
            done = [r for r in store.runs() if r.state is RunState.COMPLETE]
            running = [r for r in store.runs() if r.state is RunState.RUNNING]
            store.close()
            if len(done) >= 4 and running:
                before = {(r.trial, r.seed): (r.attempt, r.started_at, r.ended_at) for r in done}
                break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: in-flight runs die with their Ray worker
    proc.wait()
    assert before, "the sweep never reached the crash point"

    res = subprocess.run(GOLFSWEEP + ["resume", str(out), "--num-cpus", "2"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]

    store = Store(out / "golfsweep.db")
    runs = store.runs()
    assert len(runs) == 12 and all(r.state is RunState.COMPLETE for r in runs)
    after = {(r.trial, r.seed): (r.attempt, r.started_at, r.ended_at) for r in runs}
    for key, value in before.items():
        assert after[key] == value, f"completed run {key} was run again"
    rerun = [r for r in runs if r.attempt > 1]
    assert rerun, "runs in flight at the crash must be re-run"
    assert _table(out) == _table(ref_dir / "out")
    log = (out / "driver.log").read_text()
    assert "event=resume_requeued" in log and "event=lease_taken_over" in log
    # the killed driver's lease was stale (its process is gone): taken over with one notice line
    assert res.stderr.count("notice: took over the lease of a stale driver") == 1, res.stderr


class _Killed(Exception):
    pass


class _DiesAfterAFailure(Driver):
    """A driver that dies right after it recorded a failed run (as a SIGKILL would leave it)."""

    def _handle(self, run, res):
        super()._handle(run, res)
        if res.state is RunState.FAILED:
            raise _Killed


def test_resume_retries_a_script_failure_the_sweep_allows_a_retry_for(tmp_path):
    spec = load_spec(write_spec(tmp_path, trials=1, seeds=(1,), extra_sweep="max_script_retries = 1",
                                env={"FAIL_ONCE": str(tmp_path / "marks")}))
    try:
        _DiesAfterAFailure(spec, tmp_path / "out", InProcessBackend(max_parallel=1), poll_seconds=0.05).run()
    except _Killed:
        pass
    with Store(tmp_path / "out" / "golfsweep.db") as store:
        assert store.run(0, 1).state is RunState.FAILED and store.run(0, 1).attempt == 1
    Driver(spec, tmp_path / "out", InProcessBackend(max_parallel=1), poll_seconds=0.05).run()  # resume
    with Store(tmp_path / "out" / "golfsweep.db") as store:
        run = store.run(0, 1)
        assert run.state is RunState.COMPLETE and run.attempt == 2
        assert store.trials()[0].state.value == "complete"
