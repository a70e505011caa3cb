"""The RunBackend contract, run over every implementation, and the driver's retry policy."""

from __future__ import annotations

import hashlib
import time

import pytest

from golfsweep.orchestrator import Driver, InProcessBackend, RayBackend, RunBackend
from golfsweep.results import Store
from golfsweep.search_spaces import load_spec
from golfsweep.worker import RunResult, RunSpec, RunState
from tests.orchestrator._sweeps import FAKE, write_spec
from tests.procs import is_alive


@pytest.fixture(params=["inprocess", "ray"])
def backend(request, tmp_path):
    if request.param == "inprocess":
        b = InProcessBackend(max_parallel=2, workdir_root=tmp_path / "work")
    else:
        ray = pytest.importorskip("ray")
        if ray.is_initialized():
            ray.shutdown()
        b = RayBackend(gpus_per_run=0, cpus_per_run=1, num_cpus=2, workdir_root=tmp_path / "work")
    yield b
    b.shutdown()


def _spec(seed: int, env: dict | None = None) -> RunSpec:
    data = FAKE.read_bytes()
    return RunSpec(sweep="c", trial=0, seed=seed, params={}, env=dict(env or {}), script_name="train_gpt.py",
                   script_bytes=data, script_sha256=hashlib.sha256(data).hexdigest())


def _drain(b: RunBackend, n: int, timeout: float = 120) -> list[tuple[RunSpec, RunResult]]:
    out: list[tuple[RunSpec, RunResult]] = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        out += b.poll(0.2)
    return out


def test_every_submitted_run_comes_back_exactly_once_as_a_result(backend):
    assert backend.capacity() >= 1
    specs = [_spec(s, {"FAIL_MODE": "exit@3"}) for s in (1, 2, 3, 4)]
    for s in specs:
        backend.submit(s)
    assert backend.in_flight() == 4
    got = _drain(backend, 4)
    assert sorted(s.seed for s, _ in got) == [1, 2, 3, 4]
    assert backend.in_flight() == 0 and backend.poll(0.1) == []
    by_seed = {s.seed: r for s, r in got}
    assert by_seed[3].state is RunState.FAILED and by_seed[3].exit_code == 3  # a result, not an exception
    assert all(by_seed[s].state is RunState.COMPLETE for s in (1, 2, 4))
    assert all(r.node_id for r in by_seed.values())


def test_a_finished_run_comes_back_at_once_while_another_still_runs(backend, tmp_path):
    """``poll`` returns when the first run ends, not when its timeout does (nor when all runs end)."""
    long = _spec(2, {"WAIT_FOR": str(tmp_path / "never")})
    backend.submit(long)
    backend.submit(_spec(1))
    t0 = time.time()
    got = []
    while not got and time.time() - t0 < 60:
        got = backend.poll(60)  # a poll that only times out would take 60 s
    waited = time.time() - t0
    assert [s.seed for s, _ in got] == [1] and got[0][1].state is RunState.COMPLETE
    assert waited < 30, f"poll held a finished run for {waited:.1f}s"
    assert backend.in_flight() == 1
    backend.cancel(long, "test over")
    assert [r.state for _, r in _drain(backend, 1, timeout=60)] == [RunState.PRUNED]


def test_points_stream_while_a_run_is_alive_and_cancel_prunes_it_once(backend, tmp_path):
    go = tmp_path / "never"  # the trainer prints its curve, then waits for this file
    spec = _spec(7, {"WAIT_FOR": str(go), "PID_DIR": str(tmp_path / "pids")})
    backend.submit(spec)
    seen, deadline = [], time.time() + 60
    while len(seen) < 2 and time.time() < deadline:
        seen += [p for s, p in backend.points() if s.seed == 7]
        time.sleep(0.05)
    assert [p.step for p in seen] == [100, 200] and backend.in_flight() == 1  # still running
    pids = [int(p.name) for p in (tmp_path / "pids").glob("*")]
    backend.cancel(spec, "pruned by the median pruner at step 200")
    got = _drain(backend, 1, timeout=60)
    assert len(got) == 1 and got[0][1].state is RunState.PRUNED and "median" in got[0][1].reason
    assert backend.in_flight() == 0 and backend.poll(0.1) == []
    deadline = time.time() + 20
    while time.time() < deadline and any(is_alive(p) for p in pids):
        time.sleep(0.1)
    assert pids and not any(is_alive(p) for p in pids), "the cancelled run's trainer is still alive"


class LosingBackend(InProcessBackend):
    """Reports the first ``losses`` attempts of the given seeds as lost (a node died under them)."""

    def __init__(self, lose: dict[int, int]) -> None:
        super().__init__(max_parallel=2)
        self.lose = dict(lose)

    def poll(self, timeout: float):
        out = []
        for spec, res in super().poll(timeout):
            if self.lose.get(spec.seed, 0) > 0:
                self.lose[spec.seed] -= 1
                res = res.replace(state=RunState.LOST, reason="system failure: NodeDiedError: test")
            out.append((spec, res))
        return out


def test_system_failures_are_retried_up_to_the_bound(tmp_path):
    spec = load_spec(write_spec(tmp_path, trials=1, seeds=(1, 2), extra_sweep="max_system_retries = 2"))
    Driver(spec, tmp_path / "out", LosingBackend({1: 2, 2: 3}), poll_seconds=0.05).run()
    with Store(tmp_path / "out" / "golfsweep.db") as store:
        runs = {r.seed: r for r in store.runs()}
        attempts = store.attempts()
    assert runs[1].state is RunState.COMPLETE and runs[1].attempt == 3  # lost twice, third attempt ran
    assert runs[2].state is RunState.LOST and runs[2].attempt == 3  # bound reached: recorded, not hidden
    assert [a["state"] for a in attempts if a["seed"] == 2] == ["lost"] * 3


def test_script_failures_are_not_retried_unless_asked(tmp_path):
    for retries, expected_attempts in ((0, 1), (1, 2)):
        d = tmp_path / f"r{retries}"
        d.mkdir()
        spec = load_spec(write_spec(d, trials=1, seeds=(1,), env={"FAIL_MODE": "exit"},
                                    extra_sweep=f"max_script_retries = {retries}"))
        Driver(spec, d / "out", InProcessBackend(max_parallel=1), poll_seconds=0.05).run()
        with Store(d / "out" / "golfsweep.db") as store:
            (run,) = store.runs()
        assert run.state is RunState.FAILED and run.attempt == expected_attempts
