"""Search efficiency: GPU-hours until a config within 0.001 BPB of the optimum is found and confirmed
on 3 seeds — golfsweep (with and without pruning) against Ray Tune + OptunaSearch + Repeater(3) and a
3-seed grid, on the same surrogate, side by side in one run.

    pip install -e ".[bench]" && python benchmarks/search_efficiency.py [--reps 30] [--configs 48]

Not a test: it prints its figures, the command that reproduces them, and as its last line
``search efficiency: golfsweep/raytune=<ratio> golfsweep/grid=<ratio>`` (ratios of median GPU-hours).

**Workload.** A surrogate val_bpb landscape over GPTQ_DAMP (log 0.001..0.1), QK_GAIN_INIT (1..6) and
TTT_LR (log 1e-4..1e-2)::

    f = 1.080 + 0.004 (log10 damp + 2)^2 + 0.0015 (qk - 4.2)^2 + 0.006 (log10 ttt + 2.7)^2
              + 0.001 (log10 damp + 2)(qk - 4.2)

with its optimum 1.080 at damp 0.01, qk 4.2, ttt 0.002 (about 3 % of the box lies within 0.001 of it).
Each (config, seed) adds seed noise N(0, 0.0008). A run is a 20-minute, 8-GPU job (2.67 GPU-hours):
600 s of training printing ``step:N/7000 val_bpb`` every 500 steps — the final score plus a decaying
gap ``0.30 exp(-step/1500) + 0.02`` plus N(0, 0.0015) noise per point (early points informative but
noisy) — then 600 s of evaluation. Every method runs 3 nodes at a time and its trials are capped at
``--configs`` configs; a rep that never confirms a near-optimal config counts what it spent.

**How each is measured.** golfsweep: its real ``Driver`` (ask/tell, seed-sequential verdicts, the
successive-halving pruner from step 1000 on streamed curves, the ledger) on a ``SimulatedBackend`` whose runs live on a virtual
clock; the cost is every attempt's GPU-hours up to the moment the first near-optimal config's third
seed completed (runs pruned or cut short count for the time they held their node). Ray Tune: a real
``Tuner`` with ``OptunaSearch`` (TPE, same startup trials) wrapped in ``Repeater(3)`` and a trainable
that reports the surrogate's score at once; the cost is the number of runs Tune launched up to the
confirming one (in the order their results arrived), times 2.67 GPU-hours (Repeater cannot stop a config early). Grid:
4 x 4 x 4 log/linear grid points in a shuffled order, 3 seeds each, same count.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._sweep import SEEDS, sweep_toml  # noqa: E402
from golfsweep.orchestrator import Driver, SimulatedBackend, SimulatedRun  # noqa: E402
from golfsweep.results import Store  # noqa: E402
from golfsweep.search_spaces import load_spec  # noqa: E402
from golfsweep.worker import CurvePoint  # noqa: E402

RUN_SECONDS, TRAIN_SECONDS, TOTAL_STEPS, GPUS = 1200.0, 600.0, 7000, 8
RUN_GPU_HOURS = RUN_SECONDS * GPUS / 3600
OPTIMUM, TOLERANCE, SEED_SIGMA, CURVE_SIGMA = 1.080, 0.001, 0.0008, 0.0015
NODES, STARTUP = 3, 10


def landscape(damp: float, qk: float, ttt: float) -> float:
    a, b, c = math.log10(damp) + 2, qk - 4.2, math.log10(ttt) + 2.7
    return OPTIMUM + 0.004 * a * a + 0.0015 * b * b + 0.006 * c * c + 0.001 * a * b


def near_optimal(damp: float, qk: float, ttt: float) -> bool:
    return landscape(damp, qk, ttt) <= OPTIMUM + TOLERANCE


def _gauss(*key: object) -> float:
    """A standard normal draw fixed by ``key`` (the same config and seed give the same noise)."""
    h = hashlib.sha256(repr(key).encode()).digest()
    u1, u2 = (int.from_bytes(h[:8], "big") + 1) / 2**64, int.from_bytes(h[8:16], "big") / 2**64
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


def final_score(rep: int, damp: float, qk: float, ttt: float, seed: int) -> float:
    return landscape(damp, qk, ttt) + SEED_SIGMA * _gauss("seed", rep, round(damp, 12), round(qk, 12),
                                                          round(ttt, 12), seed)


# --------------------------------------------------------------------------------------------- golfsweep

PRUNING = '[pruning]\nseeds = "sequential"\ncurve = "successive_halving"\nwarmup_steps = 1000\n'


def simulate(rep: int):
    def run(spec) -> SimulatedRun:
        d, q, t = (float(spec.params[k]) for k in ("gptq_damp", "qk_gain", "ttt_lr"))
        score = final_score(rep, d, q, t, spec.seed)
        curve = []
        for step in range(500, TOTAL_STEPS + 1, 500):
            val = score + 0.30 * math.exp(-step / 1500) + 0.02 + CURVE_SIGMA * _gauss("curve", rep, d, q, t,
                                                                                       spec.seed, step)
            curve.append((step / TOTAL_STEPS * TRAIN_SECONDS, CurvePoint(step, TOTAL_STEPS, val * 2.4, val, None)))
        return SimulatedRun(duration_s=RUN_SECONDS, val_bpb=score, val_loss=score * 2.4, curve=curve,
                            train_time_ms=590_000, eval_time_ms=580_000, bytes_total=15_900_000)
    return run


def golfsweep_cost(rep: int, configs: int, pruning: bool, work: Path) -> tuple[float, bool]:
    root = work / f"{'pruned' if pruning else 'plain'}-{rep}"
    root.mkdir(parents=True)
    (root / "train_gpt.py").write_text("print('simulated')\n")
    sampler = f'name = "tpe"\nseed = {rep}\nn_startup_trials = {STARTUP}'
    (root / "sweep.toml").write_text(sweep_toml("bench", configs, sampler, PRUNING if pruning else ""))
    Driver(load_spec(root / "sweep.toml"), root / "out", SimulatedBackend(simulate(rep), nodes=NODES),
           poll_seconds=0).run()
    with Store(root / "out" / "golfsweep.db") as store:
        params = {t.trial: t.params for t in store.trials()}
        runs, attempts = store.runs(), store.attempts()
    confirmed = math.inf
    for trial, p in params.items():
        done = sorted(r.ended_at for r in runs if r.trial == trial and r.state.value == "complete")
        if len(done) == len(SEEDS) and near_optimal(p["gptq_damp"], p["qk_gain"], p["ttt_lr"]):
            confirmed = min(confirmed, done[-1])
    cut = confirmed if confirmed < math.inf else max(a["ended_at"] for a in attempts)
    cost = sum(max(0.0, min(a["ended_at"], cut) - a["started_at"]) * GPUS / 3600 for a in attempts
               if a["started_at"] is not None and a["started_at"] < cut)
    return cost, confirmed < math.inf


# --------------------------------------------------------------------------------------------- Ray Tune


def raytune_cost(rep: int, configs: int) -> tuple[float, bool]:
    from ray import tune
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    import optuna

    def trainable(config):
        seed = SEEDS[config["__trial_index__"]]
        tune.report({"val_bpb": final_score(rep, config["gptq_damp"], config["qk_gain"], config["ttt_lr"], seed)})

    space = {"gptq_damp": tune.loguniform(0.001, 0.1), "qk_gain": tune.uniform(1.0, 6.0),
             "ttt_lr": tune.loguniform(1e-4, 1e-2)}
    class Confirmed(tune.Stopper):
        """Ends the experiment once a near-optimal config has all its seeds (nothing after counts)."""

        def __init__(self) -> None:
            self.seen: dict[tuple, int] = {}
            self.trials: set[str] = set()
            self.runs = 0  # trials in the order their result arrived: the runs that ran
            self.done = False

        def __call__(self, trial_id, result) -> bool:
            if self.done or trial_id in self.trials or "val_bpb" not in result:
                return self.done
            self.trials.add(trial_id)
            cfg = result["config"]
            key = (cfg["gptq_damp"], cfg["qk_gain"], cfg["ttt_lr"])
            self.seen[key] = self.seen.get(key, 0) + 1
            self.runs += 1
            self.done = self.seen[key] == len(SEEDS) and near_optimal(*key)
            return False

        def stop_all(self) -> bool:
            return self.done

    searcher = OptunaSearch(space, metric="val_bpb", mode="min",
                            sampler=optuna.samplers.TPESampler(seed=rep, n_startup_trials=STARTUP))
    stopper = Confirmed()
    tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
        search_alg=Repeater(searcher, repeat=len(SEEDS), set_index=True), num_samples=configs * len(SEEDS),
        max_concurrent_trials=NODES, reuse_actors=True), run_config=tune.RunConfig(
            verbose=0, stop=stopper, storage_path=str(Path(tempfile.mkdtemp(prefix="tune-")))))
    tuner.fit()
    return stopper.runs * RUN_GPU_HOURS, stopper.done


# --------------------------------------------------------------------------------------------- grid


def grid_cost(rep: int) -> tuple[float, bool]:
    damps = [10 ** (-3 + 2 * i / 3) for i in range(4)]
    qks = [1 + 5 * i / 3 for i in range(4)]
    ttts = [10 ** (-4 + 2 * i / 3) for i in range(4)]
    points = [(d, q, t) for d in damps for q in qks for t in ttts]
    random.Random(rep).shuffle(points)
    for n, p in enumerate(points, start=1):  # 3 nodes run a config's 3 seeds together
        if near_optimal(*p):
            return n * len(SEEDS) * RUN_GPU_HOURS, True
    return len(points) * len(SEEDS) * RUN_GPU_HOURS, False


# --------------------------------------------------------------------------------------------- report


def summary(name: str, costs: list[float], hits: int, reps: int) -> str:
    q1, med, q3 = statistics.quantiles(costs, n=4, method="inclusive") if len(costs) > 1 else costs * 3
    return (f"{name:28s} median {med:7.1f} GPU-h   IQR [{q1:6.1f}, {q3:6.1f}]   "
            f"confirmed in {hits}/{reps} reps")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--configs", type=int, default=48, help="configs each method may try per rep")
    args = ap.parse_args()
    import logging
    import warnings

    import os

    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no per-trial log files: Tune's own cost
    warnings.filterwarnings("ignore")
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(num_cpus=NODES, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    costs: dict[str, list[float]] = {k: [] for k in ("golfsweep (pruning)", "golfsweep (no pruning)",
                                                      "Ray Tune + Repeater(3)", "3-seed grid")}
    hits = {k: 0 for k in costs}
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for name, fn in (("golfsweep (pruning)", lambda: golfsweep_cost(rep, args.configs, True, Path(tmp))),
                             ("golfsweep (no pruning)", lambda: golfsweep_cost(rep, args.configs, False, Path(tmp))),
                             ("Ray Tune + Repeater(3)", lambda: raytune_cost(rep, args.configs)),
                             ("3-seed grid", lambda: grid_cost(rep))):
                cost, hit = fn()
                costs[name].append(cost)
                hits[name] += hit
            print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in costs.items()),
                  flush=True)
    ray.shutdown()
    print(f"\nGPU-hours until a config within {TOLERANCE} BPB of the optimum has 3 completed seeds "
          f"({args.reps} reps, {args.configs} configs max, {NODES} nodes, {RUN_GPU_HOURS:.2f} GPU-h per run; "
          f"{time.time() - started:.0f} s):")
    for name, values in costs.items():
        print(summary(name, values, hits[name], args.reps))
    print(f"reproduce: python benchmarks/search_efficiency.py --reps {args.reps} --configs {args.configs}")
    med = {k: statistics.median(v) for k, v in costs.items()}
    print(f"search efficiency: golfsweep/raytune={med['golfsweep (pruning)'] / med['Ray Tune + Repeater(3)']:.2f} "
          f"golfsweep/grid={med['golfsweep (pruning)'] / med['3-seed grid']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
