"""The sweep driver: Optuna ask/tell over (config × seed) runs on a ``RunBackend``.

A trial is one config; it is told to Optuna only when every seed has finished, with the mean
over seeds when all completed, as FAIL when any seed failed (failures are never averaged away).
The store is written before Optuna is told, so a driver killed at any point resumes from the
store: completed runs are kept, runs that were in flight are run again.

Secrets: workers redact a run's output before it is written (``golfsweep.redact``); the driver
redacts each result again, with the sweep env and its own environment, before anything of it
reaches the sweep directory (train.log, result.json, the store, Optuna, driver.log).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from golfsweep.errors import GolfsweepError
from golfsweep.limits import check as limits_check
from golfsweep.orchestrator._backend import RunBackend
from golfsweep.paths import SweepPaths, atomic_write
from golfsweep.redact import MIN_SECRET_LENGTH, REDACTED_META, Redactor
from golfsweep.results import RunRecord, Store, TrialStatus, load_sweep, summary_frame
from golfsweep.search_spaces import SweepSpec, describe_spec, distributions, make_sampler, mask_env
from golfsweep.worker import LaunchMode, RunResult, RunSpec, RunState, config_env, run_environment, run_id

optuna.logging.set_verbosity(optuna.logging.WARNING)


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


ProgressCallback = Callable[[Snapshot], None]


@dataclass(frozen=True)
class SweepOutcome:
    sweep_dir: Path
    n_trials: int
    n_runs: int
    n_failed: int
    best: dict[str, Any] | None


def check_sweep_dir(spec: SweepSpec, paths: SweepPaths) -> tuple[bytes, str]:
    """Refuse a directory holding a different sweep or a changed script; writes nothing.

    Returns the script's bytes and sha256, read once here.
    """
    script_bytes = spec.script.read_bytes()
    sha = hashlib.sha256(script_bytes).hexdigest()
    if paths.root.exists() and not paths.root.is_dir():
        raise GolfsweepError(f"sweep directory: must be a directory, got file {str(paths.root)!r}")
    if not paths.store.exists():
        return script_bytes, sha
    with Store(paths.store, create=False) as store:
        old_fp, old_sha = store.get_meta("fingerprint"), store.get_meta("script_sha256")
        old_name = json.loads(store.get_meta("spec") or "{}").get("name", "?")
    fp = spec.fingerprint()
    if old_fp is not None and old_fp != fp:
        raise GolfsweepError(
            f"sweep directory: {str(paths.root)!r} holds sweep {old_name!r} with a different spec "
            f"(fingerprint {old_fp} != {fp}); use another --dir")
    if old_sha is not None and old_sha != sha:
        raise GolfsweepError(
            f"sweep.script: {spec.script.name} changed since this sweep started "
            f"(sha256 {sha[:12]} != recorded {old_sha[:12]}); restore it or use another --dir")
    return script_bytes, sha


def prepare_sweep_dir(spec: SweepSpec, paths: SweepPaths) -> tuple[Store, bytes, str]:
    """Create or reopen a sweep directory (after ``check_sweep_dir``'s refusals)."""
    script_bytes, sha = check_sweep_dir(spec, paths)
    store = Store(paths.store)
    fp = spec.fingerprint()
    store.set_meta("fingerprint", fp)
    store.set_meta("spec", json.dumps(spec.to_dict(mask_secrets=True), sort_keys=True))
    store.set_meta("script_sha256", sha)
    store.set_meta("script_name", spec.script.name)
    if store.get_meta(REDACTED_META) is None and not store.runs():  # a resumed older sweep stays unmarked
        store.set_meta(REDACTED_META, "1")
    atomic_write(paths.spec_json, json.dumps({"fingerprint": fp, "spec": spec.to_dict(mask_secrets=True)},
                                             indent=2, sort_keys=True))
    if not paths.script(spec.script.name).exists():
        atomic_write(paths.script(spec.script.name), script_bytes)
    return store, script_bytes, sha


def open_study(spec: SweepSpec, paths: SweepPaths) -> optuna.Study:
    """Create or load the sweep's Optuna study; a storage that cannot be opened is a user error."""
    url = spec.storage_url or paths.optuna_url
    if spec.storage_url is None:
        paths.root.mkdir(parents=True, exist_ok=True)
    sampler = make_sampler(spec)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.create_study(study_name=spec.name, storage=url, sampler=sampler,
                                       direction=spec.direction.value, load_if_exists=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GolfsweepError(f"storage.url: cannot open Optuna storage {url!r}: {first[:200]}") from None


class Driver:
    """One sweep, driven to completion on a backend. Use ``run()``."""

    def __init__(self, spec: SweepSpec, sweep_dir: str | Path, backend: RunBackend, *,
                 progress: ProgressCallback | None = None, poll_seconds: float = 0.5) -> None:
        self.spec = spec
        self.paths = SweepPaths.of(sweep_dir)
        self.backend = backend
        self.progress = progress
        self.poll_seconds = poll_seconds
        self.redactor = Redactor({**os.environ, **spec.env})
        check_sweep_dir(spec, self.paths)
        self.study = open_study(spec, self.paths)  # before writing anything: the storage may be bad
        self.store, self.script_bytes, self.script_sha = prepare_sweep_dir(spec, self.paths)
        self.dists = distributions(spec)
        self.pending: deque[RunSpec] = deque()
        self.retries = 0
        self.started = time.time()
        self._trials: dict[int, optuna.trial.Trial] = {}
        self._last_report = 0.0

    # ------------------------------------------------------------------ main loop
    def run(self) -> SweepOutcome:
        self._log(f"driver start: sweep {self.spec.name!r}, {self.spec.trials} trials x "
                  f"{len(self.spec.seeds)} seeds, script sha256 {self.script_sha[:12]}")
        for line in describe_spec(self.spec):
            self._log(f"spec: {line}")
        for name in Redactor(self.spec.env).short_names:
            self._log(f"note: env.{name} is shorter than {MIN_SECRET_LENGTH} characters: run output shows it as "
                      f"*** only where it follows its name ({name}=...), not everywhere")
        self._recover()
        try:
            while True:
                submitted = self._fill()
                if not self.pending and self.backend.in_flight() == 0 and not self._can_ask():
                    break
                results = self.backend.poll(self.poll_seconds)
                for run, result in results:
                    self._handle(run, result)
                # The display reads the store: refresh on change, and now and then for the clock.
                if submitted or results or time.time() - self._last_report > 5:
                    self._report()
        except KeyboardInterrupt:
            self._log("driver interrupted: runs in flight will be re-run by `golfsweep resume`")
            raise
        finally:
            self.backend.shutdown()
        self._report()
        runs = self.store.runs()
        outcome = SweepOutcome(self.paths.root, len(self.store.trials()), len(runs),
                               sum(r.state is not RunState.COMPLETE for r in runs), self._best())
        self._log(f"driver done: {outcome.n_runs} runs, {outcome.n_failed} not complete")
        self.store.close()
        return outcome

    def _can_ask(self) -> bool:
        return len(self.study.trials) < self.spec.trials

    def _fill(self) -> int:
        """Submit runs while the cluster has room; returns how many were submitted."""
        cap = self.backend.capacity()
        submitted = 0
        while self.backend.in_flight() < cap:
            if not self.pending:
                if not self._can_ask():
                    break
                self._ask()
            self._submit(self.pending.popleft())
            submitted += 1
        return submitted

    def _ask(self) -> None:
        trial = self.study.ask(self.dists)
        self._trials[trial.number] = trial
        self.store.add_trial(trial.number, trial.params, mask_env(trial_environment(self.spec, trial.params)))
        self._log(f"trial {trial.number} asked: {json.dumps(trial.params, sort_keys=True)}")
        for seed in self.spec.seeds:
            self.pending.append(self._run_spec(trial.number, trial.params, seed, attempt=1))

    def _run_spec(self, trial: int, params: dict[str, Any], seed: int, attempt: int) -> RunSpec:
        s = self.spec
        return RunSpec(
            sweep=s.name, trial=trial, seed=seed, params=dict(params), env=trial_environment(s, params),
            script_name=s.script.name, script_bytes=self.script_bytes, script_sha256=self.script_sha, nproc=s.nproc,
            launcher=LaunchMode(s.launcher_command), attempt=attempt,
            limits=s.limits,
            metric_labels=s.metric_labels, artifact_glob=s.artifact_glob, check_paths=s.check_paths,
        )

    def _submit(self, run: RunSpec) -> None:
        self.store.put_run(RunRecord(trial=run.trial, seed=run.seed, state=RunState.RUNNING, attempt=run.attempt,
                                     started_at=time.time()))
        self.backend.submit(run)
        self._log(f"run {run.trial}-{run.seed} attempt {run.attempt} submitted")

    # ------------------------------------------------------------------ results
    def _handle(self, run: RunSpec, res: RunResult) -> None:
        res = res.redacted(self.redactor)  # the worker redacted already; older or foreign workers may not
        log_path = None
        if res.log_text:
            log_path = self.paths.run_log(run.trial, run.seed)
            atomic_write(log_path, res.log_text)
        rec = RunRecord.from_result(res, str(log_path) if log_path else None)
        retry = self._retry(res.state, run.attempt)
        self.store.put_run(rec)
        atomic_write(self.paths.run_result(run.trial, run.seed), json.dumps(rec.to_dict(), indent=2))
        self._log(f"run {run.trial}-{run.seed} attempt {run.attempt} {res.state.value}"
                  + (f" on {res.node_id}" if res.node_id else "") + (f": {res.reason}" if res.reason else "")
                  + (" -> retry" if retry else ""))
        if retry:
            self.retries += 1
            self.pending.appendleft(_next_attempt(run))
            return
        self._maybe_tell(run.trial)

    def _retry(self, state: RunState, attempt: int) -> bool:
        """Whether a run that ended in ``state`` on ``attempt`` runs again: the one rule for the live
        loop and for resume. A lost node is retried up to ``max_system_retries`` times, a script
        failure up to ``max_script_retries``; a completed run never."""
        if state.is_system_failure():
            return attempt <= self.spec.max_system_retries
        if state.is_script_failure():
            return attempt <= self.spec.max_script_retries
        return False

    def _maybe_tell(self, trial_number: int) -> None:
        runs = self.store.runs(trial_number)
        if len(runs) < len(self.spec.seeds) or not all(r.state.is_finished() for r in runs):
            return
        trial = self._trial(trial_number)
        failed = [r for r in runs if r.state is not RunState.COMPLETE]
        if failed:
            reasons = "; ".join(f"seed {r.seed}: {r.state.value}: {r.reason}" for r in failed)
            trial.set_user_attr("failure", reasons[:2000])
            self.store.finish_trial(trial_number, TrialStatus.FAILED, None)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self._log(f"trial {trial_number} failed: {reasons}")
            return
        metric = self.spec.metric
        values = [getattr(r, metric) for r in runs]
        value = sum(values) / len(values)
        for c in limits_check(self.spec.limits, runs):  # unproven limits count as infeasible
            trial.set_constraint(c.rule, c.excess())
        trial.set_user_attr("seeds", {str(r.seed): getattr(r, metric) for r in runs})
        self.store.finish_trial(trial_number, TrialStatus.COMPLETE, value)
        self.study.tell(trial, value)
        self._log(f"trial {trial_number} complete: mean {metric} {value:.6f}")

    def _trial(self, number: int) -> optuna.trial.Trial:
        if number not in self._trials:  # after a restart: rebuild the handle from storage
            frozen = self.study.trials[number]
            self._trials[number] = optuna.trial.Trial(self.study, frozen._trial_id)
        return self._trials[number]

    # ------------------------------------------------------------------ resume
    def _recover(self) -> None:
        """Re-queue what a previous driver left unfinished; tell trials whose runs all finished."""
        known = {t.trial for t in self.store.trials()}
        for ft in self.study.trials:
            if ft.state is optuna.trial.TrialState.RUNNING and ft.number not in known:
                self.store.add_trial(ft.number, ft.params, mask_env(trial_environment(self.spec, ft.params)))
        for t in self.store.trials():
            ft = self.study.trials[t.trial]
            if ft.state is not optuna.trial.TrialState.RUNNING:
                continue
            requeued = 0
            for seed in self.spec.seeds:
                rec = self.store.run(t.trial, seed)
                if rec is not None and rec.state.is_finished() and not self._retry(rec.state, rec.attempt):
                    continue
                attempt = rec.attempt + 1 if rec is not None else 1
                self.pending.append(self._run_spec(t.trial, t.params, seed, attempt))
                requeued += 1
            if requeued:
                self._log(f"resume: trial {t.trial}: re-queued {requeued} run(s)")
            else:
                self._maybe_tell(t.trial)

    # ------------------------------------------------------------------ progress
    def _best(self) -> dict[str, Any] | None:
        df = summary_frame(load_sweep(self.paths.root))
        if df.empty or not df["feasible"].any():
            return None
        row = df[df["feasible"]].iloc[0]
        return {"trial": int(row["trial"]), "params": row["params"], "objective": float(row["objective"]),
                "std": None if row["std_val_bpb"] is None or _nan(row["std_val_bpb"]) else float(row["std_val_bpb"])}

    def _report(self) -> None:
        self._last_report = time.time()
        if self.progress is None:
            return
        runs = self.store.runs()
        complete = sum(r.state is RunState.COMPLETE for r in runs)
        failed = sum(r.state.is_finished() and r.state is not RunState.COMPLETE for r in runs)
        total = self.spec.trials * len(self.spec.seeds)
        running = self.backend.in_flight()
        queued = max(0, total - complete - failed - running)
        self.progress(Snapshot(total=total, complete=complete, failed=failed, running=running, queued=queued,
                               retries=self.retries, best=self._best(), elapsed=time.time() - self.started))

    def _log(self, msg: str) -> None:
        msg = self.redactor.redact(msg)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.paths.driver_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.paths.driver_log, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {msg}\n")


def trial_environment(spec: SweepSpec, params: dict[str, Any]) -> dict[str, str]:
    """The env a trial's runs receive from the sweep: the fixed env, then the config's parameters."""
    return {**spec.env, **config_env(spec.env_names, params)}


def _next_attempt(run: RunSpec) -> RunSpec:
    return dataclasses.replace(run, attempt=run.attempt + 1)


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def planned_runs(spec: SweepSpec) -> list[dict[str, Any]]:
    """What ``--dry-run`` prints: the configs the sampler would propose first, × seeds, with env.

    Model-based samplers adapt to results, so only the configs before any result are certain; the
    rest are drawn as if no result had arrived.
    """
    study = optuna.create_study(sampler=make_sampler(spec), direction=spec.direction.value)
    dists = distributions(spec)
    out = []
    for _ in range(spec.trials):
        trial = study.ask(dists)
        env = mask_env(trial_environment(spec, trial.params))
        for seed in spec.seeds:
            out.append({"trial": trial.number, "seed": seed, "params": trial.params,
                        "env": run_environment(env, seed, run_id(spec.name, trial.number, seed), base={})})
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return out
