"""Fewer GPU-hours per proven config: seed-sequential trials, curve pruning, the cost ledger, the budget."""

from __future__ import annotations

import json
import time

import optuna
import pytest

from golfsweep.orchestrator import Driver, DriverInterrupted, InProcessBackend, SimulatedBackend, SimulatedRun
from golfsweep.orchestrator._pruning import pooled_seed_sigma, worth_more_seeds
from golfsweep.results import TrialStatus, format_status, format_table, load_sweep, summary_frame
from golfsweep.search_spaces import load_spec
from golfsweep.worker import RunState
from tests.orchestrator._sweeps import write_spec
from tests.procs import is_alive


def grid(*xs: float) -> str:
    return f'[space.KNOB_X]\ntype = "categorical"\nchoices = {list(xs)}\n'


def run(tmp_path, *, trials, seeds=(1, 2, 3), space, extra="", env=None, gpus=0, parallel=1):
    sweep = write_spec(tmp_path, trials=trials, seeds=seeds, space=space + extra, sampler="grid",
                       env=env or {}, gpus_per_run=gpus)
    spec = load_spec(sweep)
    outcome = Driver(spec, tmp_path / "out", InProcessBackend(max_parallel=parallel), poll_seconds=0.05).run()
    return spec, outcome, load_sweep(tmp_path / "out")


def study(tmp_path) -> optuna.Study:
    return optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'out' / 'optuna.db'}")


# ----------------------------------------------------------------------------------- the seed-sequential rule


@pytest.mark.parametrize("mean, k, go, margin", [
    (1.2040, 1, True, "0.00538"),  # best 1.2000 over 3 seeds; sigma 0.002, z 2.33: 0.002*2.33*sqrt(1+1/3)
    (1.2060, 1, False, "0.00538"),
    (1.1900, 1, True, "0.00538"),
    (1.2045, 2, False, "0.00425"),  # two seeds: a tighter margin, 0.002*2.33*sqrt(1/2+1/3)
])
def test_the_next_seed_runs_only_within_the_margin_of_the_best(mean, k, go, margin):
    verdict, why = worth_more_seeds(mean, k, 1.2000, 3, 0.002, 2.33, minimize=True)
    assert verdict is go and f"margin {margin}" in why


def test_a_maximized_metric_is_mirrored():
    assert worth_more_seeds(1.19, 1, 1.2, 3, 0.002, 2.33, minimize=False)[0] is False
    assert worth_more_seeds(1.21, 1, 1.2, 3, 0.002, 2.33, minimize=False)[0] is True


def test_without_a_feasible_trial_every_seed_runs():
    assert worth_more_seeds(9.9, 1, None, 0, 0.002, 2.33)[0] is True


def test_the_seed_spread_is_pooled_over_trials_after_a_prior():
    assert pooled_seed_sigma([[1.0, 1.002]], prior=0.01) == (0.01, 0)  # 1 degree of freedom: the prior
    sigma, dof = pooled_seed_sigma([[1.0, 1.002, 1.004], [2.0, 2.002, 2.004]], prior=0.01)
    assert dof == 4 and sigma == pytest.approx(0.002)


PRUNING_SEQUENTIAL = '[pruning]\nseeds = "sequential"\n'


def test_a_hopeless_trial_stops_after_its_first_seed_and_a_close_one_continues(tmp_path):
    # KNOB_X 2.0 is the best; 4.0 is 0.04 worse (far outside the margin); 2.1 is 0.0001 worse
    spec, outcome, data = run(tmp_path, trials=3, space=grid(2.0, 4.0, 2.1), extra=PRUNING_SEQUENTIAL)
    seeds = {t.trial: sorted(r.seed for r in data.runs if r.trial == t.trial) for t in data.trials}
    params = {t.trial: t.params["KNOB_X"] for t in data.trials}
    by_x = {params[t]: t for t in params}
    assert seeds[by_x[2.0]] == [1, 2, 3] and seeds[by_x[2.1]] == [1, 2, 3]
    assert seeds[by_x[4.0]] == [1]  # the other two seeds never ran
    states = {t.trial: t.state for t in data.trials}
    assert states[by_x[4.0]] is TrialStatus.PRUNED and states[by_x[2.1]] is TrialStatus.COMPLETE
    ft = study(tmp_path).trials[by_x[4.0]]
    assert ft.state is optuna.trial.TrialState.PRUNED and ft.intermediate_values  # its first seed's score
    log = (tmp_path / "out" / "driver.log").read_text()
    assert "event=seed_gate" in log and "more_seeds=false" in log and "more_seeds=true" in log
    assert outcome.n_runs == 7  # instead of 9


# ----------------------------------------------------------------------------------------- curve pruning


def test_the_curve_pruner_kills_a_hopeless_run_mid_run_with_its_process_tree(tmp_path):
    pids = tmp_path / "pids"
    extra = '[pruning]\ncurve = "median"\nwarmup_steps = 100\n'
    started = time.time()
    spec, outcome, data = run(tmp_path, trials=5, seeds=(1,), space=grid(2.0, 1.5, 2.5, 1.0, 4.0), extra=extra,
                              env={"SLOW_ABOVE": "3.5", "PID_DIR": str(pids)})
    assert time.time() - started < 45, "the slow config ran to its end: it was not pruned mid-run"
    params = {t.trial: t.params for t in data.trials}
    slow = next(r for r in data.runs if params[r.trial]["KNOB_X"] == 4.0)
    assert slow.state is RunState.PRUNED and "median pruner at step" in slow.reason
    assert slow.curve and slow.curve[0][0] == 100  # the values it had
    trial = next(t for t in data.trials if t.trial == slow.trial)
    assert trial.state is TrialStatus.PRUNED
    assert all(not is_alive(int(p.name)) for p in pids.glob("*"))
    ft = study(tmp_path).trials[slow.trial]
    assert ft.state is optuna.trial.TrialState.PRUNED and 100 in ft.intermediate_values


def test_pruned_trials_stay_out_of_means_and_best_and_are_listed_apart(tmp_path):
    spec, outcome, data = run(tmp_path, trials=3, space=grid(2.0, 4.0, 2.1), extra=PRUNING_SEQUENTIAL)
    df = summary_frame(data)
    pruned = df[df["pruned"]]
    assert len(pruned) == 1 and not pruned.iloc[0]["feasible"] and pruned.iloc[0]["n_ok"] == 0
    assert pruned.iloc[0]["mean_val_bpb"] is None or pruned.iloc[0]["mean_val_bpb"] != pruned.iloc[0]["mean_val_bpb"]
    assert list(pruned.iloc[0]["pruned_values"]) == [1]  # its first seed, apart
    assert outcome.best is not None and outcome.best["trial"] != int(pruned.iloc[0]["trial"])
    rows = json.loads(format_table(data, "json"))
    assert [r["pruned"] for r in rows].count(True) == 1 and rows[0]["pruned"] is False
    assert "1 trial(s) pruned" in format_status(data)


# ---------------------------------------------------------------------------------- the ledger and the budget


def test_the_ledger_sums_gpu_hours_per_attempt_trial_and_sweep(tmp_path):
    spec, outcome, data = run(tmp_path, trials=2, seeds=(1, 2), space=grid(2.0, 3.0), gpus=8,
                              extra="[cost]\nprice_per_gpu_hour = 2.5\n", env={"SLEEP": "0.3"})
    ledger = data.ledger
    by_attempt = [(a["ended_at"] - a["started_at"]) * 8 / 3600 for a in data.attempts]
    assert len(by_attempt) == 4 and all(h > 0.3 * 8 / 3600 * 0.9 for h in by_attempt)
    assert ledger.total == pytest.approx(sum(by_attempt)) == pytest.approx(outcome.gpu_hours)
    assert sum(ledger.per_trial.values()) == pytest.approx(ledger.total)
    rows = json.loads(format_table(data, "json"))
    assert sum(r["gpu_hours"] for r in rows) == pytest.approx(ledger.total)
    assert rows[0]["cost"] == pytest.approx(rows[0]["gpu_hours"] * 2.5)
    md = format_table(data, "md")
    header = md.splitlines()[0]
    assert "| gpu_hours |" in header and "| cost |" in header
    assert f"total: {ledger.total:.2f} GPU-hours" in md and "at $2.5/GPU-hour" in md
    csv = format_table(data, "csv").strip().splitlines()
    assert csv[-1].startswith("total,")


def _twenty_minutes(spec):
    """A simulated 20-minute run whose result is its config's fake value: no process, no waiting."""
    x = float(spec.params["KNOB_X"])
    return SimulatedRun(duration_s=1200, val_bpb=1.2 + 0.01 * (x - 2) ** 2, train_time_ms=590_000,
                        eval_time_ms=400_000, bytes_total=15_000_000)


@pytest.mark.parametrize("nodes", [1, 2])
def test_the_budget_stops_new_runs_and_resume_counts_what_was_spent(tmp_path, nodes):
    # a run holds 8 GPUs for 20 minutes: 2.667 GPU-hours; a budget of 10 lets exactly 4 of the 6 start
    sweep = write_spec(tmp_path, trials=3, seeds=(1, 2), space=grid(2.0, 3.0, 1.0) + "[cost]\nbudget_gpu_hours = 10\n",
                       sampler="grid", gpus_per_run=8)
    spec = load_spec(sweep)
    out = tmp_path / "out"
    outcome = Driver(spec, out, SimulatedBackend(_twenty_minutes, nodes=nodes), poll_seconds=0).run()
    assert outcome.stopped and "budget reached" in outcome.stopped and "budget_gpu_hours = 10" in outcome.stopped
    assert outcome.n_runs == 4 and outcome.gpu_hours == pytest.approx(4 * 8 / 3)
    assert "event=budget_reached" in (out / "driver.log").read_text()
    assert "stopped" not in format_status(load_sweep(out)) and "of a 10 GPU-hour budget" in format_status(load_sweep(out))

    # resume with the same budget: what was spent counts, so nothing new starts
    again = Driver(spec, out, SimulatedBackend(_twenty_minutes, nodes=nodes), poll_seconds=0).run()
    assert again.stopped and again.n_runs == 4 and again.gpu_hours == pytest.approx(4 * 8 / 3)

    # a larger budget: resume finishes the sweep, the ledger counting all six runs
    sweep.write_text(sweep.read_text().replace("budget_gpu_hours = 10", "budget_gpu_hours = 100"))
    done = Driver(load_spec(sweep), out, SimulatedBackend(_twenty_minutes, nodes=nodes), poll_seconds=0).run()
    assert done.stopped is None and done.n_runs == 6 and done.gpu_hours == pytest.approx(6 * 8 / 3)
    assert load_sweep(out).ledger.total == pytest.approx(16.0)


class _Autoscaling(SimulatedBackend):
    """Records what the driver asks the autoscaler for."""

    def __init__(self, *a, interrupt: bool = False, **kw) -> None:
        super().__init__(*a, **kw)
        self.asks: list[int] = []
        self.interrupt = interrupt

    def request_room(self, runs: int) -> None:
        self.asks.append(runs)

    def poll(self, timeout):
        if self.interrupt:
            raise DriverInterrupted("SIGTERM")
        return super().poll(timeout)


def test_the_autoscaler_is_asked_for_room_while_there_is_work_and_for_none_after(tmp_path):
    space = grid(2.0, 3.0, 1.0) + "[cost]\nautoscale_runs = 2\n"
    spec = load_spec(write_spec(tmp_path, trials=3, seeds=(1, 2), space=space, sampler="grid", gpus_per_run=8))
    backend = _Autoscaling(_twenty_minutes, nodes=1)  # one node up: the ask is for more than runs
    outcome = Driver(spec, tmp_path / "out", backend, poll_seconds=0).run()
    assert outcome.n_runs == 6
    # room for two while trials remain; fewer as the work runs out (the last run alone); none at the end
    assert backend.asks == [2, 1, 0]
    log = (tmp_path / "out" / "driver.log").read_text()
    assert [line.split("runs=")[1] for line in log.splitlines() if "event=room_requested" in line] == ["2", "1", "0"]


def test_a_stopped_driver_withdraws_its_ask(tmp_path):
    space = grid(2.0) + "[cost]\nautoscale_runs = 3\n"
    spec = load_spec(write_spec(tmp_path, trials=1, seeds=(1, 2), space=space, sampler="grid", gpus_per_run=8))
    backend = _Autoscaling(_twenty_minutes, nodes=1, interrupt=True)
    with pytest.raises(DriverInterrupted):
        Driver(spec, tmp_path / "out", backend, poll_seconds=0).run()
    assert backend.asks == [2, 0]  # its two seeds' worth (1 running, 1 waiting), then none


def test_without_autoscale_runs_nothing_is_asked(tmp_path):
    spec = load_spec(write_spec(tmp_path, trials=2, seeds=(1,), space=grid(2.0, 3.0), sampler="grid", gpus_per_run=8))
    backend = _Autoscaling(_twenty_minutes, nodes=2)
    Driver(spec, tmp_path / "out", backend, poll_seconds=0).run()
    assert backend.asks == []
