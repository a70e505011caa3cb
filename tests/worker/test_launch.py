"""One run on this machine: env, timeouts that kill the whole tree, failure evidence."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from golfsweep.limits import Limits
from golfsweep.worker import RunSpec, RunState, descendants, execute_run
from tests.procs import is_alive

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_train.py"


def _spec(tmp_path, env=None, **kw) -> RunSpec:
    data = FAKE.read_bytes()
    return RunSpec(sweep="t", trial=0, seed=kw.pop("seed", 1), params={}, env=dict(env or {}),
                   script_name="train_gpt.py", script_bytes=data, script_sha256=hashlib.sha256(data).hexdigest(),
                   **kw)


def test_complete_run_reports_metrics_and_artifact_measured_on_disk(tmp_path):
    res = execute_run(_spec(tmp_path, {"KNOB_X": "3"}), workdir_root=tmp_path)
    assert res.state is RunState.COMPLETE, res.reason
    assert res.metric_label == "final_int6_zstd_roundtrip_exact"
    assert res.artifact.model_bytes == 7000 and res.artifact.code_bytes == FAKE.stat().st_size
    assert res.artifact.claim_matches is True and res.artifact.within_limit
    assert res.train_time_ms == 1234 and res.eval_time_ms == 567
    assert "run_id:t-t0-s1" in res.log_text  # RUN_ID and SEED come from golfsweep


def test_stalled_run_is_killed_with_reason_and_tail(tmp_path):
    spec = _spec(tmp_path, {"FAIL_MODE": "silent"}, limits=Limits(stall_seconds=1.5, run_timeout_seconds=60))
    t0 = time.time()
    res = execute_run(spec, workdir_root=tmp_path)
    took = time.time() - t0
    assert res.state is RunState.STALLED
    assert "stall_seconds=1.5" in res.reason
    assert any(line.startswith("step:200/200") for line in res.log_tail)
    print(f"\nstalled run killed {took - 1.5:.2f}s after the stall limit")
    assert took < 1.5 + 6


def test_timeout_kills_the_whole_torchrun_tree(tmp_path):
    pytest.importorskip("torch")
    pid_dir = tmp_path / "pids"
    spec = _spec(tmp_path, {"FAIL_MODE": "hang", "PID_DIR": str(pid_dir)}, launcher="torchrun", nproc=2,
                 limits=Limits(run_timeout_seconds=12, stall_seconds=100))
    res = execute_run(spec, workdir_root=tmp_path)
    assert res.state is RunState.TIMEOUT, (res.reason, res.log_tail)
    assert "run_timeout_seconds=12" in res.reason
    pids = [int(p.name) for p in pid_dir.iterdir()]
    assert len(pids) == 2  # both ranks had started
    time.sleep(0.5)
    assert not [p for p in pids if is_alive(p)], "orphan trainer processes survived the kill"
    def cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return ""

    leftovers = [p for p in descendants(os.getpid()) if is_alive(p)
                 and ("torch.distributed.run" in cmdline(p) or "train_gpt.py" in cmdline(p))]
    assert not leftovers, f"torchrun or trainer processes left behind: {leftovers}"


def test_node_is_free_after_a_hung_run(tmp_path):
    limits = Limits(stall_seconds=1.0, run_timeout_seconds=30)
    hung = execute_run(_spec(tmp_path, {"FAIL_MODE": "silent"}, limits=limits), workdir_root=tmp_path)
    ok = execute_run(_spec(tmp_path, {}, seed=2, limits=limits), workdir_root=tmp_path)
    assert hung.state is RunState.STALLED and ok.state is RunState.COMPLETE


def test_script_failure_carries_evidence(tmp_path):
    res = execute_run(_spec(tmp_path, {"FAIL_MODE": "exit"}), workdir_root=tmp_path)
    assert res.state is RunState.FAILED and res.exit_code == 3
    assert res.reason == "script exited with status 3"
    assert "CUDA out of memory" in res.log_tail[-1]
    assert res.command[-1].endswith("train_gpt.py")


def test_missing_data_path_names_node_and_path(tmp_path):
    res = execute_run(_spec(tmp_path, {"DATA_PATH": "/nonexistent/fineweb10B_sp1024"}), workdir_root=tmp_path,
                      node_id="node-a")
    assert res.state is RunState.FAILED
    assert res.reason == "node node-a: DATA_PATH path does not exist on this node, got '/nonexistent/fineweb10B_sp1024'"


def test_tampered_script_bytes_are_refused(tmp_path):
    spec = _spec(tmp_path)
    import dataclasses

    bad = dataclasses.replace(spec, script_bytes=spec.script_bytes + b"\n# changed\n")
    res = execute_run(bad, workdir_root=tmp_path)
    assert res.state is RunState.FAILED and "sha256" in res.reason
