"""What becomes of a trial: told to Optuna as complete, failed or pruned; seed-sequential verdicts;
curve points reported while its lead run is alive; resume; progress. A mixin of the ``Driver``,
which owns the state these methods use (store, study, backend, pending runs, events)."""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

import optuna

from golfsweep.limits import check as limits_check
from golfsweep.orchestrator._pruning import pooled_seed_sigma, worth_more_seeds
from golfsweep.orchestrator._setup import store_location, trial_environment
from golfsweep.results import TrialStatus, load_sweep, summary_frame
from golfsweep.results._ledger import attempt_gpu_hours
from golfsweep.search_spaces import CurvePruner, SeedPolicy, mask_env
from golfsweep.worker import CurvePoint, RunSpec, RunState

__all__ = ["Snapshot", "TrialOutcomes"]


@dataclass(frozen=True)
class Snapshot:
    """Progress counts for the live display."""

    total: int
    complete: int
    failed: int
    running: int
    queued: int
    retries: int
    best: dict[str, Any] | None
    elapsed: float
    pruned: int = 0
    gpu_hours: float = 0.0


class TrialOutcomes:
    # ------------------------------------------------------------------ telling Optuna
    def _maybe_tell(self, trial_number: int) -> None:
        if trial_number in self._told:
            return
        if trial_number in self._pruning:
            if not any(t == trial_number for t, _ in self._in_flight):
                self._finish_pruned(trial_number)
            return
        runs = self.book.runs(trial_number)
        if len(runs) < len(self.spec.seeds) or not all(r.state.is_finished() for r in runs):
            return
        trial = self._trial(trial_number)
        failed = [r for r in runs if r.state is not RunState.COMPLETE]
        if failed:
            reasons = "; ".join(f"seed {r.seed}: {r.state.value}: {r.reason}" for r in failed)
            trial.set_user_attr("failure", reasons[:2000])
            self.book.finish_trial(trial_number, TrialStatus.FAILED, None)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self._told.add(trial_number)
            self.events.event("trial_failed", trial=trial_number, reasons=reasons)
            return
        metric = self.spec.metric
        values = [getattr(r, metric) for r in runs]
        value = sum(values) / len(values)
        checks = limits_check(self.spec.limits, runs)
        for c in checks:  # unproven limits count as infeasible
            trial.set_constraint(c.rule, c.excess())
        if all(c.ok for c in checks):
            self._consider_best(trial_number, runs, value)
        trial.set_user_attr("seeds", {str(r.seed): getattr(r, metric) for r in runs})
        self.book.finish_trial(trial_number, TrialStatus.COMPLETE, value)
        self.study.tell(trial, value)
        self._told.add(trial_number)
        self.events.event("trial_complete", trial=trial_number, metric=metric, mean=round(value, 8))

    def _finish_pruned(self, trial_number: int) -> None:
        """Told to Optuna as PRUNED, with a completed seed's score as its last intermediate value."""
        trial = self._trial(trial_number)
        done = [getattr(r, self.spec.metric) for r in self.book.runs(trial_number)
                if r.state is RunState.COMPLETE and getattr(r, self.spec.metric) is not None]
        if done:
            trial.report(sum(done) / len(done), self._reported.get(trial_number, 0) + 1)
        reason = self._pruning[trial_number]
        trial.set_user_attr("pruned", reason[:2000])
        self.book.finish_trial(trial_number, TrialStatus.PRUNED, None)
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        self._told.add(trial_number)
        self.events.event("trial_pruned", trial=trial_number, reason=reason)

    def _trial(self, number: int) -> optuna.trial.Trial:
        if number not in self._trials:  # after a restart: find the trial through the storage's API
            study_id = self.storage.get_study_id_from_name(self.spec.name)
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
            self._trials[number] = optuna.trial.Trial(self.study, trial_id)
        return self._trials[number]

    # ------------------------------------------------------------------ pruning
    def _awaits_verdict(self, trial: int, seed: int, state: RunState) -> bool:
        """A seed-sequential trial whose seeds so far all completed, with seeds still to run."""
        if self.spec.pruning.seeds is not SeedPolicy.SEQUENTIAL or state is not RunState.COMPLETE:
            return False
        if trial in self._pruning:
            return False
        runs = self.book.runs(trial)
        done = [r for r in runs if r.state is RunState.COMPLETE]
        return len(done) == len(runs) < len(self.spec.seeds) and seed in {r.seed for r in done}

    def _seed_gate(self, trial: int) -> None:
        """Seed-sequential verdict (``_pruning`` module): the next seed, or pruned. The incumbent is the
        best trial whose completed seeds all pass the limits (however many it has so far)."""
        metric, p = self.spec.metric, self.spec.pruning
        minimize = self.spec.direction.value == "minimize"
        groups: dict[int, list] = {}
        for r in self.book.runs():
            if r.state is RunState.COMPLETE and getattr(r, metric) is not None:
                groups.setdefault(r.trial, []).append(r)
        done = [getattr(r, metric) for r in groups.get(trial, [])]
        mean, k = sum(done) / len(done), len(done)
        incumbents = [(sum(getattr(r, metric) for r in rs) / len(rs), len(rs)) for t, rs in groups.items()
                      if t != trial and getattr(self.book.trial(t), "state", None) in (TrialStatus.RUNNING, TrialStatus.COMPLETE)
                      and all(c.ok for c in limits_check(self.spec.limits, rs))]
        best_mean, best_n = (min if minimize else max)(incumbents) if incumbents else (None, 0)
        sigma, dof = pooled_seed_sigma(([getattr(r, metric) for r in rs] for rs in groups.values()),
                                       p.seed_sigma_prior)
        go, why = worth_more_seeds(mean, k, best_mean, best_n, sigma, p.seed_margin_z, minimize)
        self.events.event("seed_gate", trial=trial, seeds_done=k, more_seeds=go, sigma_dof=dof, why=why)
        if not go:
            self._prune(trial, f"seed gate: {why}")
            return
        params = self.book.trial(trial).params
        seed = self.spec.seeds[k]  # next in line: the verdict keeps this trial moving
        self.pending.appendleft(self._run_spec(trial, params, seed, attempt=1))

    def _prune(self, trial: int, reason: str) -> None:
        """Stop a trial: its queued runs dropped, its runs in flight killed; PRUNED once they are back."""
        if trial in self._pruning:
            return
        self._pruning[trial] = reason
        self.pending = deque(r for r in self.pending if r.trial != trial)
        for (t, _), (spec, _) in list(self._in_flight.items()):
            if t == trial:
                self.backend.cancel(spec, f"pruned: {reason}")
        self.events.event("trial_pruning", trial=trial, reason=reason)
        self._maybe_tell(trial)

    def _on_points(self, points: list[tuple[RunSpec, CurvePoint]]) -> None:
        """Curve points of lead runs (first seed) told to the trial as they come; the pruner judges."""
        p = self.spec.pruning
        for spec, point in points:
            if spec.seed != self.spec.seeds[0] or spec.trial in self._pruning:
                continue
            if point.step <= self._reported.get(spec.trial, -1):
                continue  # a retried attempt repeats steps Optuna already has
            self._reported[spec.trial] = point.step
            value = point.val_bpb if self.spec.metric == "val_bpb" else point.val_loss
            trial = self._trial(spec.trial)
            trial.report(value, point.step)
            if p.curve is not CurvePruner.NONE and point.step >= p.warmup_steps and trial.should_prune():
                self._prune(spec.trial, f"curve: {p.curve.value} pruner at step {point.step} "
                                        f"({self.spec.metric} {value:.5f})")

    # ------------------------------------------------------------------ resume
    def _recover(self) -> None:
        """Re-queue what a previous driver left unfinished; tell trials whose runs all finished."""
        known = {t.trial for t in self.book.trials()}
        frozen = self.study.get_trials(deepcopy=False)  # once: ``study.trials`` copies them all per call
        for ft in frozen:
            if ft.state is optuna.trial.TrialState.RUNNING and ft.number not in known:
                self.book.add_trial(ft.number, ft.params, mask_env(trial_environment(self.spec, ft.params)))
        sequential = self.spec.pruning.seeds is SeedPolicy.SEQUENTIAL
        for t in self.book.trials():
            ft = frozen[t.trial]
            if ft.state is not optuna.trial.TrialState.RUNNING:
                continue
            runs = {r.seed: r for r in self.book.runs(t.trial)}
            pruned = [r for r in runs.values() if r.state is RunState.PRUNED]
            if pruned:  # it was being pruned when the driver stopped
                self._pruning[t.trial] = pruned[0].reason or "pruned"
                self._maybe_tell(t.trial)
                continue
            seeds = self.spec.seeds
            if sequential:  # one seed at a time: re-run an unfinished one, or ask for the next verdict
                seeds = seeds[:max(len(runs), 1)]
            requeued = 0
            for seed in seeds:
                rec = runs.get(seed)
                if rec is not None and rec.state.is_finished() and not self._retry(rec.state, rec.attempt):
                    continue
                attempt = rec.attempt + 1 if rec is not None else 1
                self.pending.append(self._run_spec(t.trial, t.params, seed, attempt))
                requeued += 1
            if requeued:
                self.events.event("resume_requeued", trial=t.trial, runs=requeued)
            elif sequential and self._awaits_verdict(t.trial, seeds[-1], runs[seeds[-1]].state):
                self._seed_gate(t.trial)
            else:
                self._maybe_tell(t.trial)

    # ------------------------------------------------------------------ progress
    def _best_on_disk(self) -> dict[str, Any] | None:
        """The best feasible trial as ``table`` ranks them: read once, when the driver starts."""
        df = summary_frame(load_sweep(store_location(self.spec, self.paths)))  # (the spec's URL: with its password)
        if df.empty or not df["feasible"].any():
            return None
        row = df[df["feasible"]].iloc[0]
        std = row["std_val_bpb"]
        return {"trial": int(row["trial"]), "params": row["params"], "objective": float(row["objective"]),
                "std": None if std is None or (isinstance(std, float) and math.isnan(std)) else float(std)}

    def _consider_best(self, trial: int, runs: list, value: float) -> None:
        """Keep the best feasible trial current as trials are told, without re-reading the sweep."""
        best = self._best_live
        minimize = self.spec.direction.value == "minimize"
        if best is not None and (value >= best["objective"] if minimize else value <= best["objective"]):
            return
        bpb = [r.val_bpb for r in runs if r.val_bpb is not None]
        self._best_live = {"trial": trial, "params": self.book.trial(trial).params, "objective": float(value),
                           "std": statistics.stdev(bpb) if len(bpb) > 1 else None}

    def _report(self) -> None:
        now = self.backend.now()
        self._last_report = now
        if self.progress is None:
            return
        complete, pruned = self.book.count(RunState.COMPLETE), self.book.count(RunState.PRUNED)
        failed = self.book.finished_failures()
        total = self.spec.trials * len(self.spec.seeds)
        running = self.backend.in_flight()
        queued = max(0, total - complete - failed - pruned - running)
        flying = sum(attempt_gpu_hours(t0, now, self.spec.gpus_per_run) for _, t0 in self._in_flight.values())
        self.progress(Snapshot(total=total, complete=complete, failed=failed, running=running, queued=queued,
                               retries=self.retries, best=self._best_live, elapsed=now - self.started,
                               pruned=pruned, gpu_hours=self._spent + flying))
