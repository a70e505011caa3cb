"""Dispatch: how much node time the sweep driver wastes between runs — golfsweep's ``Driver`` on its
``RayBackend`` against Ray Tune + OptunaSearch + ``Repeater(3)`` with ``tune.with_resources({"gpu": 8})``,
on the same Ray instance, side by side in one run.

    pip install -e ".[bench]" && python benchmarks/dispatch.py [--nodes 64] [--runs 2000] [--seconds 3]
    python benchmarks/dispatch.py --cluster3      # 3 real raylets x 8 GPUs, 24 runs of 2 s

Not a test: it prints its figures, the command that reproduces them, and as its last line
``dispatch: overhead_per_run golfsweep/raytune=<ratio> utilisation golfsweep/raytune=<ratio>``.

**Workload.** ``--runs`` whole-node runs (configs x 3 seeds, a random sampler for both, so neither
pays for a model of the space), each a sleep of ``--seconds`` x U(0.8, 1.2) standing in for a
20-minute training+evaluation job: runs end at scattered times, as real ones do.

**The nodes.** 64 raylets do not fit on 2 cores, so the default mode is one Ray instance with
``--nodes`` x 8 logical GPUs: a run asks for 8 GPUs, so exactly ``--nodes`` runs hold the "cluster"
at once, as whole-node runs on ``--nodes`` 8-GPU nodes would; what is measured (the driver noticing
an end, deciding, submitting, Ray placing the next run) is the same work a real cluster asks of the
driver, minus network latency. ``--cluster3`` re-measures on ``ray.cluster_utils.Cluster`` with 3
real raylets of 8 GPUs each.

**Figures.** Each method runs in its own child process (a Ray driver connected to the shared
instance), so its CPU time and peak memory are its own. ``wall`` runs from the call that starts the
sweep (``Driver.run``, ``Tuner.fit``) to its return. Per method:

* overhead per run = (wall x nodes - sum of run durations) / runs: node-seconds not spent running;
* utilisation = ideal makespan / wall, with ideal = max(sum of durations / nodes, longest run);
* idle gap = time a node sat free between two runs, nodes assigned after the fact (each run to
  the node free longest, as a queue of free nodes would): median and 90th percentile;
* driver CPU-seconds (user + system, of the whole child: the driver and Ray's client threads) and
  peak resident memory;
* processes: how many worker processes ran the runs. Ray starts them on the node a run lands on;
  here every "node" shares this machine's cores, so a method that starts a process per run pays for
  it in CPU contention a real cluster would spread over its nodes. Read the figures with that column.

Tune runs with ``verbose=0`` and its per-trial file loggers off: what is left is its dispatch.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._sweep import SEEDS, sweep_toml  # noqa: E402
GPUS = 8
Span = tuple[float, float]  # a run's (start, end), wall clock

def duration(seconds: float, *key: object) -> float:
    """A run's length: ``seconds`` x U(0.8, 1.2), fixed by ``key``."""
    h = hashlib.sha256(repr(key).encode()).digest()
    return seconds * (0.8 + 0.4 * int.from_bytes(h[:8], "big") / 2**64)


def quiet() -> None:
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    warnings.filterwarnings("ignore")
    logging.getLogger("ray").setLevel(logging.ERROR)


# --------------------------------------------------------------------------------------- the methods


def run_golfsweep(address: str, runs: int, seconds: float, work: Path) -> tuple[float, float, list[Span], int]:
    """The real driver (ask/tell, store, Optuna SQLite, progress) on the real ``RayBackend``; only the
    body of each run's Ray task is a sleep. Returns when it started and ended, and each run's (start, end)."""
    from golfsweep.orchestrator import Driver, RayBackend
    from golfsweep.results import Store
    from golfsweep.search_spaces import load_spec
    from golfsweep.worker import RunResult, RunState

    def sleep_run(spec, workdir_root, points):  # the Ray task's body: a run that only takes time
        t0 = time.time()
        time.sleep(duration(seconds, spec.trial, spec.seed))
        return RunResult(trial=spec.trial, seed=spec.seed, attempt=spec.attempt, state=RunState.COMPLETE,
                         started_at=t0, ended_at=time.time(), val_bpb=1.1, val_loss=2.6,
                         train_time_ms=590_000, eval_time_ms=580_000, hostname=str(os.getpid()))

    (work / "train_gpt.py").write_text("print('dispatch')\n")
    (work / "sweep.toml").write_text(sweep_toml("dispatch", runs // len(SEEDS), 'name = "random"\nseed = 0'))
    backend = RayBackend(gpus_per_run=GPUS, cpus_per_run=1, address=address, execute=sleep_run)
    driver = Driver(load_spec(work / "sweep.toml"), work / "out", backend, progress=lambda snap: None)
    t0 = time.time()
    driver.run()
    t1 = time.time()
    with Store(work / "out" / "golfsweep.db", create=False) as store:
        done = [r for r in store.runs() if r.state is RunState.COMPLETE]
    return t0, t1, [(r.started_at, r.ended_at) for r in done], len({r.hostname for r in done})


def run_raytune(address: str, runs: int, seconds: float, work: Path) -> tuple[float, float, list[Span], int]:
    import optuna
    import ray
    from ray import tune
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)

    def trainable(config):
        t0 = time.time()
        time.sleep(duration(seconds, tune.get_context().get_trial_id()))
        tune.report({"val_bpb": 1.1, "t0": t0, "t1": time.time(), "pid": os.getpid()})

    space = {"gptq_damp": tune.loguniform(0.001, 0.1), "qk_gain": tune.uniform(1.0, 6.0),
             "ttt_lr": tune.loguniform(1e-4, 1e-2)}
    searcher = OptunaSearch(space, metric="val_bpb", mode="min", sampler=optuna.samplers.RandomSampler(seed=0))
    nodes = int(ray.cluster_resources().get("GPU", 0)) // GPUS
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"gpu": GPUS}),
        tune_config=tune.TuneConfig(search_alg=Repeater(searcher, repeat=len(SEEDS), set_index=True),
                                    num_samples=(runs // len(SEEDS)) * len(SEEDS), max_concurrent_trials=nodes,
                                    reuse_actors=True),
        run_config=tune.RunConfig(verbose=0, storage_path=str(work / "tune")))
    t0 = time.time()
    grid = tuner.fit()
    t1 = time.time()
    done = [r.metrics for r in grid if r.metrics and "t1" in r.metrics]
    return t0, t1, [(m["t0"], m["t1"]) for m in done], len({m["pid"] for m in done})


METHODS = {"golfsweep": run_golfsweep, "raytune": run_raytune}


def child(method: str, address: str, runs: int, seconds: float, out: Path) -> None:
    """One method in this process: its figures, with this process's CPU time and peak memory."""
    quiet()
    with tempfile.TemporaryDirectory(prefix=f"dispatch-{method}-") as tmp:
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0, t1, spans, procs = METHODS[method](address, runs, seconds, Path(tmp))
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.write_text(json.dumps({"t0": t0, "t1": t1, "spans": spans, "processes": procs, "cpu_s": cpu, "peak_rss_mb": after.ru_maxrss / 1024}))


# --------------------------------------------------------------------------------------- figures


def figures(res: dict, nodes: int) -> dict:
    spans = sorted(res["spans"])
    durs = [b - a for a, b in spans]
    wall = res["t1"] - res["t0"]
    free = [(float("-inf"), n) for n in range(nodes)]  # (free since, node): a queue of free nodes
    heapq.heapify(free)
    gaps = []
    for start, end in spans:
        since, node = heapq.heappop(free)
        if since != float("-inf"):
            gaps.append(max(0.0, start - since))
        heapq.heappush(free, (end, node))
    ideal = max(sum(durs) / nodes, max(durs))
    return {"runs": len(spans), "wall_s": wall, "overhead_s": (wall * nodes - sum(durs)) / len(spans),
            "utilisation": ideal / wall, "gap_median_s": statistics.median(gaps) if gaps else 0.0,
            "gap_p90_s": statistics.quantiles(gaps, n=10)[-1] if len(gaps) > 1 else 0.0,
            "cpu_s": res["cpu_s"], "peak_rss_mb": res["peak_rss_mb"],
            "processes": res["processes"], "first_start_s": spans[0][0] - res["t0"], "after_last_s": res["t1"] - max(b for _, b in spans)}


def measure(method: str, address: str, runs: int, seconds: float, nodes: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.run([sys.executable, __file__, "--child", method, "--address", address, "--runs",
                               str(runs), "--seconds", str(seconds), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            sys.exit(f"dispatch: {method} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
        return figures(json.loads(out.read_text()), nodes)


def start_ray(nodes: int, cluster3: bool):
    import ray

    if cluster3:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
        for _ in range(nodes):
            cluster.add_node(num_cpus=2, num_gpus=GPUS)
        cluster.wait_for_nodes()
        return cluster.address, cluster.shutdown
    ctx = ray.init(num_cpus=nodes, num_gpus=nodes * GPUS, include_dashboard=False, logging_level="ERROR",
                   log_to_driver=False)  # this process holds the instance; the methods connect to it
    return ctx.address_info["address"], ray.shutdown


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=3.0, help="mean length of a run (scaled down)")
    ap.add_argument("--cluster3", action="store_true", help="3 raylets x 8 GPUs, 24 runs of 2 s")
    ap.add_argument("--reps", type=int, default=1, help="measure each method this many times (alternating "
                                                          "which goes first); the medians are shown")
    ap.add_argument("--child", choices=sorted(METHODS), help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.address, args.runs, args.seconds, args.out)
        return 0
    quiet()
    if args.cluster3:
        args.nodes, args.runs, args.seconds = 3, 24, 2.0
    address, stop = start_ray(args.nodes, args.cluster3)
    started = time.time()
    reps: dict[str, list[dict]] = {"golfsweep": [], "raytune": []}
    try:
        for r in range(args.reps):
            for m in (("golfsweep", "raytune") if r % 2 == 0 else ("raytune", "golfsweep")):
                reps[m].append(measure(m, address, args.runs, args.seconds, args.nodes))
            if args.reps > 1:
                print(f"rep {r + 1}/{args.reps}: overhead/run " +
                      ", ".join(f"{m} {v[-1]['overhead_s']:.3f} s" for m, v in reps.items()), flush=True)
    finally:
        stop()
    res = {m: {k: statistics.median(f[k] for f in v) for k in v[0]} for m, v in reps.items()}
    where = ("ray.cluster_utils.Cluster, 3 raylets x 8 logical GPUs" if args.cluster3 else
             f"one Ray instance with {args.nodes} x {GPUS} logical GPUs; a run asks for {GPUS}")
    print(f"\n{res['golfsweep']['runs']:.0f} whole-node runs of {args.seconds:g} s x U(0.8, 1.2) on {args.nodes} nodes "
          f"({where}); {time.time() - started:.0f} s in all"
          + (f"; medians of {args.reps} reps" if args.reps > 1 else ""))
    print(f"{'':10s} {'wall s':>8s} {'overhead/run s':>15s} {'utilisation':>12s} {'idle gap median s':>18s} "
          f"{'p90 s':>7s} {'driver CPU s':>13s} {'peak RSS MB':>12s} {'to 1st run s':>13s} {'after last s':>13s} "
          f"{'processes':>10s}")
    for m, f in res.items():
        print(f"{m:10s} {f['wall_s']:8.1f} {f['overhead_s']:15.3f} {f['utilisation']:12.3f} "
              f"{f['gap_median_s']:18.3f} {f['gap_p90_s']:7.3f} {f['cpu_s']:13.1f} {f['peak_rss_mb']:12.0f} "
              f"{f['first_start_s']:13.2f} {f['after_last_s']:13.2f} {f['processes']:10.0f}")
    cmd = ("python benchmarks/dispatch.py --cluster3" if args.cluster3 else
           f"python benchmarks/dispatch.py --nodes {args.nodes} --runs {args.runs} --seconds {args.seconds:g}")
    cmd += f" --reps {args.reps}" if args.reps > 1 else ""
    print(f"reproduce: {cmd}")
    g, t = res["golfsweep"], res["raytune"]
    print(f"dispatch: overhead_per_run golfsweep/raytune={g['overhead_s'] / t['overhead_s']:.3f} "
          f"utilisation golfsweep/raytune={g['utilisation'] / t['utilisation']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
