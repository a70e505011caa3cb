"""The driver's write-through mirror of its sweep's store.

The lease makes the driver the store's only writer, so what it wrote is what the store holds: the
book reads the store once at start and then answers from memory (a run's latest record, a trial's
runs, counts by state), writing every change through to the store first. The driver's loop and its
per-result work then cost the same at the 2,000th run as at the first, and readers elsewhere
(``status``, ``table``) still see every committed write.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from golfsweep.results import RunRecord, Store, TrialRecord, TrialStatus
from golfsweep.worker import RunState

__all__ = ["RunBook"]


class RunBook:
    """Runs and trials of one sweep, as the store holds them; writes go to the store first."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._trials: dict[int, TrialRecord] = {t.trial: t for t in store.trials()}
        self._runs: dict[int, dict[int, RunRecord]] = {}
        self._states: Counter[RunState] = Counter()
        for rec in store.runs():
            self._runs.setdefault(rec.trial, {})[rec.seed] = rec
            self._states[rec.state] += 1

    # ------------------------------------------------------------------ trials
    def add_trial(self, trial: int, params: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
        self.store.add_trial(trial, params, env)
        if trial not in self._trials:  # the store keeps the first record of a trial, so does the book
            self._trials[trial] = TrialRecord(trial, dict(params), TrialStatus.RUNNING, None, time.time(), None,
                                              None if env is None else dict(env))

    def finish_trial(self, trial: int, state: TrialStatus, value: float | None) -> None:
        self.store.finish_trial(trial, state, value)
        if trial in self._trials:
            self._trials[trial] = dataclasses.replace(self._trials[trial], state=TrialStatus(state), value=value,
                                                      finished_at=time.time())

    def trials(self) -> list[TrialRecord]:
        return [self._trials[n] for n in sorted(self._trials)]

    def trial(self, number: int) -> TrialRecord | None:
        return self._trials.get(number)

    # ------------------------------------------------------------------ runs
    def put_run(self, rec: RunRecord) -> None:
        self.store.put_run(rec)
        seeds = self._runs.setdefault(rec.trial, {})
        old = seeds.get(rec.seed)
        if old is not None:
            self._states[old.state] -= 1
        seeds[rec.seed] = rec
        self._states[rec.state] += 1

    def runs(self, trial: int | None = None) -> list[RunRecord]:
        """Latest record of each run (of one trial), by trial then seed, like ``Store.runs``."""
        if trial is not None:
            seeds = self._runs.get(trial, {})
            return [seeds[s] for s in sorted(seeds)]
        return [rec for t in sorted(self._runs) for rec in self.runs(t)]

    def count(self, state: RunState) -> int:
        """How many runs are in ``state`` now (each run counted once, in its latest state)."""
        return self._states[state]

    def finished_failures(self) -> int:
        """Runs that ended neither complete nor pruned."""
        return sum(n for s, n in self._states.items()
                   if s.is_finished() and s not in (RunState.COMPLETE, RunState.PRUNED))
