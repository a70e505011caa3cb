"""Whole-node placement and node loss on a real multi-node local Ray cluster."""

from __future__ import annotations

import threading
import time

import pytest

from golfsweep.orchestrator import Driver, RayBackend
from golfsweep.results import Store, load_sweep
from golfsweep.search_spaces import load_spec
from golfsweep.worker import RunState
from tests.orchestrator._sweeps import write_spec
from tests.procs import is_alive

pytestmark = pytest.mark.cluster
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402


@pytest.fixture
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0},
                shutdown_at_exit=True)
    yield c
    ray.shutdown()
    c.shutdown()


def _overlaps(runs):
    """Pairs of runs whose [start, end] intervals intersect."""
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a.started_at < b.ended_at and b.started_at < a.ended_at:
                out.append((a, b))
    return out


def test_whole_node_runs_three_at_once_never_sharing_a_node(tmp_path, cluster):
    gpu_nodes = [cluster.add_node(num_cpus=1, num_gpus=8) for _ in range(3)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    spec = load_spec(write_spec(tmp_path, trials=2, seeds=(1, 2, 3), gpus_per_run=8, env={"SLEEP": "3"}))
    backend = RayBackend(gpus_per_run=8, cpus_per_run=1, address=cluster.address)
    assert backend.capacity() == 3 and backend.shares_specs  # task arguments live on the cluster
    Driver(spec, tmp_path / "out", backend, poll_seconds=0.1).run()

    runs = load_sweep(tmp_path / "out").runs
    assert len(runs) == 6 and all(r.state is RunState.COMPLETE for r in runs)
    gpu_ids = {n.node_id for n in gpu_nodes}
    assert {r.node_id for r in runs} == gpu_ids  # every GPU node used, the GPU-less head never
    for a, b in _overlaps(runs):
        assert a.node_id != b.node_id, f"runs {a.trial}-{a.seed} and {b.trial}-{b.seed} shared a node"
    # three at once: some instant is covered by three runs
    peak = max(sum(r.started_at <= r0.started_at < r.ended_at for r in runs) for r0 in runs)
    assert peak == 3


def test_node_loss_requeues_the_run_elsewhere_exactly_once(tmp_path, cluster):
    nodes = [cluster.add_node(num_cpus=1, num_gpus=8) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    pid_dir = tmp_path / "pids"
    spec = load_spec(write_spec(tmp_path, trials=1, seeds=(1, 2, 3), gpus_per_run=8,
                                env={"SLEEP": "4", "PID_DIR": str(pid_dir)}))
    backend = RayBackend(gpus_per_run=8, cpus_per_run=1, address=cluster.address)
    driver = Driver(spec, tmp_path / "out", backend, poll_seconds=0.1)
    killed = {}

    def kill_a_busy_node():
        store = Store(tmp_path / "out" / "golfsweep.db")
        deadline = time.time() + 60
        while time.time() < deadline:  # both first runs are inside the trainer (each wrote its pid)
            if pid_dir.is_dir() and len(list(pid_dir.iterdir())) >= 2:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        victim = nodes[0]
        killed["node"] = victim.node_id
        killed["at"] = time.time()
        cluster.remove_node(victim, allow_graceful=False)
        while time.time() < deadline:
            lost = [a for a in store.attempts() if a["state"] == "lost"]
            if lost:
                killed["detected"] = time.time()
                break
            time.sleep(0.05)
        store.close()

    t = threading.Thread(target=kill_a_busy_node)
    t.start()
    driver.run()
    t.join()

    store = Store(tmp_path / "out" / "golfsweep.db")
    runs = store.runs()
    attempts = store.attempts()
    assert [r.state for r in runs] == [RunState.COMPLETE] * 3  # exactly one result per (config, seed)
    assert len({(r.trial, r.seed) for r in runs}) == 3
    lost = [a for a in attempts if a["state"] == "lost"]
    assert len(lost) == 1 and "system failure" in lost[0]["reason"]
    retried = [r for r in runs if r.attempt == 2]
    assert len(retried) == 1 and retried[0].node_id == nodes[1].node_id
    # the trainer on the dead node died with it: no orphans
    assert not [p for p in pid_dir.iterdir() if is_alive(int(p.name))]
    detect = killed["detected"] - killed["at"]
    print(f"\nnode loss: detected and re-queued {detect:.1f}s after the kill")
    assert detect < 60


def test_a_cluster_without_room_for_a_run_says_so_once_and_starts_when_a_node_joins(tmp_path, cluster, caplog):
    cluster.add_node(num_cpus=1, num_gpus=4)  # too small for a whole-node run of 8 GPUs
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    spec = load_spec(write_spec(tmp_path, trials=1, seeds=(1,), gpus_per_run=8))
    backend = RayBackend(gpus_per_run=8, cpus_per_run=1, address=cluster.address)
    backend.CAPACITY_REFRESH_S = 0.5
    log = tmp_path / "out" / "driver.log"
    outcome = {}
    driver = Driver(spec, tmp_path / "out", backend, poll_seconds=0.1)

    def drive():  # in a thread: Ray adds nodes from the main thread only
        outcome["done"] = driver.run()

    t = threading.Thread(target=drive)
    try:
        with caplog.at_level("WARNING", logger="golfsweep"):
            t.start()
            deadline = time.time() + 60
            while time.time() < deadline and not (log.exists() and "event=no_capacity" in log.read_text()):
                time.sleep(0.1)
            time.sleep(1.5)  # the driver keeps waiting, without saying it again
            assert t.is_alive() and "done" not in outcome
            cluster.add_node(num_cpus=1, num_gpus=8)
            t.join(timeout=120)
        assert not t.is_alive()
    finally:
        if t.is_alive():  # a failed check must not leave the driver waiting for ever
            driver.lease.lost.set()
            t.join(timeout=30)
    notices = [r.getMessage() for r in caplog.records if r.name == "golfsweep"]
    assert notices == ["no live node can take a run (a run needs 8 GPUs on one node; 2 live node(s), the largest "
                       "with 4 GPUs); waiting for nodes to join (Ctrl-C stops the driver)"]
    assert outcome["done"].n_runs == 1 and outcome["done"].n_failed == 0
    assert "event=capacity runs_at_once=1" in log.read_text()


def test_room_is_asked_of_the_autoscaler_as_whole_run_shapes_and_withdrawn(cluster):
    import json

    from ray.autoscaler._private.constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_get

    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    backend = RayBackend(gpus_per_run=8, cpus_per_run=1, address=cluster.address)
    try:
        backend.request_room(2)  # what the autoscaler (v1) reads: one bundle per run
        assert json.loads(_internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)) == [{"GPU": 8}, {"GPU": 8}]
        backend.request_room(0)
        assert json.loads(_internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)) == []
    finally:
        backend.shutdown()
