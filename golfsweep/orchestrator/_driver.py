"""The sweep driver: Optuna ask/tell over (config × seed) runs on a ``RunBackend``.

A trial is one config; it is told to Optuna only when every seed has finished, with the mean
over seeds when all completed, as FAIL when any seed failed (failures are never averaged away).
The store is written before Optuna is told, so a driver killed at any point resumes from the
store: completed runs are kept, runs that were in flight are run again. One driver runs a sweep
at a time (``_lease``); SIGTERM/SIGINT stop it cleanly (``_events``).

Secrets: workers redact a run's output before it is written (``golfsweep.redact``); the driver
redacts each result again, with the sweep env and its own environment, before anything of it
reaches the sweep directory (train.log, result.json, the store, Optuna, driver.log).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from golfsweep.orchestrator._backend import RunBackend
from golfsweep.orchestrator._book import RunBook
from golfsweep.orchestrator._events import DriverInterrupted, DriverLog, as_interrupt, interrupt_on_signals
from golfsweep.orchestrator._lease import SweepLease
from golfsweep.orchestrator._outcomes import Snapshot, TrialOutcomes
from golfsweep.orchestrator._setup import (check_sweep_dir, open_study, prepare_sweep_dir, quiet_optuna,
                                          store_location, trial_environment)
from golfsweep.paths import SweepPaths, atomic_write
from golfsweep.redact import MIN_SECRET_LENGTH, Redactor, is_secret_name
from golfsweep.results import RunRecord
from golfsweep.scriptfiles import ScriptFiles
from golfsweep.results._ledger import attempt_gpu_hours
from golfsweep.search_spaces import SeedPolicy, SweepSpec, describe_spec, distributions, mask_env
from golfsweep.worker import LaunchMode, RunResult, RunSpec, RunState


ProgressCallback = Callable[[Snapshot], None]


@dataclass(frozen=True)
class SweepOutcome:
    sweep_dir: Path
    n_trials: int
    n_runs: int
    n_failed: int
    best: dict[str, Any] | None
    gpu_hours: float = 0.0
    stopped: str | None = None  # why the sweep ended before its trials did (the budget)


class Driver(TrialOutcomes):
    """One sweep, driven to completion on a backend. Use ``run()``."""

    def __init__(self, spec: SweepSpec, sweep_dir: str | Path, backend: RunBackend, *,
                 progress: ProgressCallback | None = None, poll_seconds: float = 0.5,
                 checked: ScriptFiles | None = None,
                 opened: tuple[optuna.Study, optuna.storages.BaseStorage] | None = None) -> None:
        """``checked``/``opened``: what ``check_sweep_dir``/``open_study`` returned when the caller
        already ran them (the CLI does, before Ray starts), so nothing is checked twice."""
        self.spec = spec
        self.paths = SweepPaths.of(sweep_dir)
        self.backend = backend
        self.progress = progress
        self.poll_seconds = poll_seconds
        self.redactor = Redactor({**os.environ, **spec.env})
        checked = checked or check_sweep_dir(spec, self.paths)
        with quiet_optuna():  # before writing anything: the storage may be bad
            self.study, self.storage = opened or open_study(spec, self.paths)
        self.lease = SweepLease(store_location(spec, self.paths), self.paths.root)
        taken_over = self.lease.acquire()  # before anything is written or runs
        try:
            self.store = prepare_sweep_dir(spec, self.paths, checked)
        except BaseException:
            self.lease.release()
            raise
        self.book = RunBook(self.store)  # the driver's reads come from here, not from the store
        self.files, self.script_sha = checked, checked.sha256
        self.events = DriverLog(self.paths.driver_log, self.redactor)
        if taken_over:
            self.events.notice("lease_taken_over", taken_over)
        self.dists = distributions(spec)
        self.pending: deque[RunSpec] = deque()
        self.retries = 0
        self.started = backend.now()
        self._trials: dict[int, optuna.trial.Trial] = {}
        self._last_report = 0.0
        self._in_flight: dict[tuple[int, int], tuple[RunSpec, float]] = {}  # (trial, seed) -> spec, start
        self._pruning: dict[int, str] = {}  # trial -> why it is being pruned
        self._told: set[int] = set()  # trials told to Optuna by this driver
        self._reported: dict[int, int] = {}  # trial -> last curve step told to Optuna
        gpus = spec.gpus_per_run
        self._spent = sum(attempt_gpu_hours(a["started_at"], a["ended_at"], gpus) for a in self.store.attempts())
        self._stop_reason: str | None = None
        self._starved = False  # no node can take a run: said once until capacity comes back
        self._room = 0  # runs the autoscaler was last asked to make room for ([cost] autoscale_runs)
        self._asked = 0  # trials in the study: counted here, not by listing the study every loop
        self._best_live: dict[str, Any] | None = None  # best feasible trial so far, kept as trials are told

    # ------------------------------------------------------------------ main loop
    def run(self) -> SweepOutcome:
        """Drive the sweep to its end. SIGTERM/SIGINT raise ``DriverInterrupted`` after the runs in
        flight were killed (they stay RUNNING in the store, so ``resume`` re-runs them)."""
        try:
            with quiet_optuna(), interrupt_on_signals():
                self._start()
                self._loop()
            self._report()
            runs = self.book.runs()
            outcome = SweepOutcome(self.paths.root, len(self.book.trials()), len(runs),
                                   sum(r.state is not RunState.COMPLETE for r in runs), self._best_live,
                                   self._spent, self._stop_reason)
            self.events.event("driver_done", runs=outcome.n_runs, not_complete=outcome.n_failed,
                              gpu_hours=round(self._spent, 4), stopped=self._stop_reason)
            return outcome
        except KeyboardInterrupt as exc:
            stop = as_interrupt(exc)
            self.events.event("driver_interrupted", signal=stop.signal_name, in_flight=self.backend.in_flight())
            raise stop from None
        finally:
            self._withdraw_room()
            self.backend.shutdown()  # kills what still runs, with its process tree
            self.store.close()
            self.lease.release()
            self.events.close()

    def _start(self) -> None:
        s = self.spec
        self.events.event("driver_start", sweep=s.name, trials=s.trials, seeds=len(s.seeds),
                          script_sha256=self.script_sha[:12], files=list(self.files.names) or None,
                          pid=os.getpid())
        for line in describe_spec(s):
            self.events.event("spec", line=line)
        for name in Redactor(s.env).short_names:
            self.events.event("short_secret", key=f"env.{name}", min_length=MIN_SECRET_LENGTH,
                              note="masked only where it follows its name")
        shared = sorted(k for k in s.env if is_secret_name(k)) if self.backend.shares_specs else []
        if shared:
            keys = ", ".join(f"env.{k}" for k in shared)
            self.events.notice("secret_in_task_args",
                               f"{keys}: the sweep file's secrets reach the nodes as Ray task arguments, "
                               "readable on the whole cluster; set them in the nodes' environment instead "
                               "(runs inherit it and their output is masked alike; docs/cluster.md, Secrets)",
                               keys=shared)
        self._recover()
        self._asked = len(self.study.get_trials(deepcopy=False))
        self._best_live = self._best_on_disk()

    def _loop(self) -> None:
        while True:
            if self.lease.lost.is_set():
                raise DriverInterrupted("lease lost: another driver took over this sweep")
            submitted = self._fill()
            idle = self.backend.in_flight() == 0
            if idle and (self._stop_reason or (not self.pending and not self._can_ask())):
                return
            results = self.backend.poll(self.poll_seconds)
            for run, result in results:
                self._handle(run, result)
            self._on_points(self.backend.points())
            # The display reads the store: refresh on change, and now and then for the clock.
            if submitted or results or self.backend.now() - self._last_report > 5:
                self._report()

    def _can_ask(self) -> bool:
        return self._asked < self.spec.trials

    def _fill(self) -> int:
        """Submit runs while the cluster has room; returns how many were submitted."""
        self._want_room()
        cap = self.backend.capacity()
        self._watch_capacity(cap)
        submitted = 0
        while self.backend.in_flight() < cap and not self._budget_reached():
            if not self.pending:
                if not self._can_ask():
                    break
                self._ask()
            self._submit(self.pending.popleft())
            submitted += 1
        return submitted

    def _watch_capacity(self, cap: int) -> None:
        """Say once, on the terminal, when no node can take a run (GPU nodes not joined yet, or too
        small for ``gpus_per_run``): the driver waits for nodes rather than ending the sweep."""
        starved = cap == 0 and self.backend.in_flight() == 0 and not self._stop_reason
        if starved and not self._starved:
            asked = f", asked the autoscaler for room for {self._room}" if self._room else ""
            self.events.notice("no_capacity", f"no live node can take a run ({self.backend.describe_capacity()}); "
                                              f"waiting for nodes to join{asked} (Ctrl-C stops the driver)")
        elif cap and self._starved:
            self.events.event("capacity", runs_at_once=cap)
        self._starved = starved

    def _want_room(self) -> None:
        """``[cost] autoscale_runs``: ask the cluster's autoscaler for room for the runs the sweep could
        run now (those in flight, those waiting, every seed of the trials not asked yet), up to that many."""
        most = self.spec.cost.autoscale_runs
        if not most:
            return
        flying = self.backend.in_flight()
        unasked = max(0, self.spec.trials - self._asked) * len(self.spec.seeds)
        more = 0 if self._budget_reached() else len(self.pending) + unasked
        want = min(most, flying + more)
        if want != self._room:
            self.backend.request_room(want)
            self._room = want
            self.events.event("room_requested", runs=want)

    def _withdraw_room(self) -> None:
        """The sweep ends: withdraw the ask, so the autoscaler can let idle nodes go."""
        if self._room:
            try:
                self.backend.request_room(0)
                self.events.event("room_requested", runs=0)
            except Exception as exc:  # the cluster is gone: nothing left to ask of it
                self.events.event("room_not_withdrawn", error=f"{type(exc).__name__}: {exc}")
            self._room = 0

    def _ask(self) -> None:
        trial = self.study.ask(self.dists)
        self._asked += 1
        self._trials[trial.number] = trial
        self.book.add_trial(trial.number, trial.params, mask_env(trial_environment(self.spec, trial.params)))
        self.events.event("trial_asked", trial=trial.number, params=trial.params)
        seeds = self.spec.seeds[:1] if self.spec.pruning.seeds is SeedPolicy.SEQUENTIAL else self.spec.seeds
        for seed in seeds:  # seed-sequential: the others wait for the first one's verdict
            self.pending.append(self._run_spec(trial.number, trial.params, seed, attempt=1))

    def _run_spec(self, trial: int, params: dict[str, Any], seed: int, attempt: int) -> RunSpec:
        s = self.spec
        return RunSpec(
            sweep=s.name, trial=trial, seed=seed, params=dict(params), env=trial_environment(s, params),
            script_name=s.script.name, script_bytes=self.files.script, support_files=self.files.support,
            script_sha256=self.script_sha, nproc=s.nproc,
            launcher=LaunchMode(s.launcher_command), attempt=attempt,
            limits=s.limits,
            metric_labels=s.metric_labels, artifact_glob=s.artifact_glob, check_paths=s.check_paths,
        )

    def _submit(self, run: RunSpec) -> None:
        now = self.backend.now()
        self.book.put_run(RunRecord(trial=run.trial, seed=run.seed, state=RunState.RUNNING, attempt=run.attempt,
                                     started_at=now))
        self._in_flight[(run.trial, run.seed)] = (run, now)
        self.backend.submit(run)
        self.events.event("run_submitted", trial=run.trial, seed=run.seed, attempt=run.attempt)

    # ------------------------------------------------------------------ results
    def _handle(self, run: RunSpec, res: RunResult) -> None:
        res = res.redacted(self.redactor)  # the worker redacted already; older or foreign workers may not
        self._in_flight.pop((run.trial, run.seed), None)
        self._spent += attempt_gpu_hours(res.started_at, res.ended_at, self.spec.gpus_per_run)
        log_path = None
        if res.log_text:
            log_path = self.paths.run_log(run.trial, run.seed)
            atomic_write(log_path, res.log_text)
            self.store.put_log(run.trial, run.seed, res.log_text)  # a server store keeps it for readers elsewhere
        rec = RunRecord.from_result(res, str(log_path) if log_path else None)
        retry = self._retry(res.state, run.attempt) and run.trial not in self._pruning
        self.book.put_run(rec)
        atomic_write(self.paths.run_result(run.trial, run.seed), json.dumps(rec.to_dict(), indent=2))
        self.events.event("run_finished", trial=run.trial, seed=run.seed, attempt=run.attempt,
                          state=res.state.value, node=res.node_id, reason=res.reason, retry=retry,
                          val_bpb=res.val_bpb, warnings=len(res.warnings) or None)
        if retry:
            self.retries += 1
            self.pending.appendleft(_next_attempt(run))
            return
        if self._awaits_verdict(run.trial, run.seed, res.state):
            self._seed_gate(run.trial)
        self._maybe_tell(run.trial)

    def _budget_reached(self) -> bool:
        """Whether spent plus in-flight GPU-hours reached ``[cost] budget_gpu_hours``: then no run starts."""
        budget = self.spec.cost.budget_gpu_hours
        if budget is None:
            return False
        now, gpus = self.backend.now(), self.spec.gpus_per_run
        flying = sum(attempt_gpu_hours(t0, now, gpus) for _, t0 in self._in_flight.values())
        if self._spent + flying < budget:
            return False
        if self._stop_reason is None:
            self._stop_reason = (f"budget reached: {self._spent:.2f} GPU-hours spent + {flying:.2f} in flight >= "
                                 f"cost.budget_gpu_hours = {budget:g}; no new run starts (`resume` with a larger "
                                 f"budget continues)")
            self.events.event("budget_reached", spent=round(self._spent, 4), in_flight=round(flying, 4),
                              budget=budget)
        return True

    def _retry(self, state: RunState, attempt: int) -> bool:
        """Whether a run that ended in ``state`` on ``attempt`` runs again: the one rule for the live
        loop and for resume. A lost node is retried up to ``max_system_retries`` times, a script
        failure up to ``max_script_retries``; a completed run never."""
        if state.is_system_failure():
            return attempt <= self.spec.max_system_retries
        if state.is_script_failure():
            return attempt <= self.spec.max_script_retries
        return False


def _next_attempt(run: RunSpec) -> RunSpec:
    return dataclasses.replace(run, attempt=run.attempt + 1)


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
