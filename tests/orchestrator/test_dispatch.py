"""The driver's loop does no work that grows with the sweep: its reads come from memory, the store is
written through, and the best trial it shows is the one ``table`` ranks first."""

from __future__ import annotations

import optuna
import pytest

from golfsweep.orchestrator import Driver, SimulatedBackend, SimulatedRun
from golfsweep.orchestrator._book import RunBook
from golfsweep.results import RunRecord, Store, TrialStatus, best_feasible, load_sweep
from golfsweep.search_spaces import load_spec
from golfsweep.worker import RunState
from tests.orchestrator._sweeps import write_spec


def _run(spec):
    x = float(spec.params["KNOB_X"])
    return SimulatedRun(duration_s=1200 + 7 * spec.seed, val_bpb=1.2 + 0.01 * (x - 2) ** 2 + 0.0001 * spec.seed,
                        train_time_ms=590_000, eval_time_ms=400_000, bytes_total=15_000_000)


class _Counting:
    """Counts calls to the store's whole-sweep reads and to ``Study.trials`` while a sweep runs."""

    def __init__(self, monkeypatch) -> None:
        self.calls = {"Store.runs": 0, "Store.trials": 0, "Study.trials": 0}
        for name in ("runs", "trials"):
            original = getattr(Store, name)

            def counted(store, *a, _original=original, _key=f"Store.{name}", **kw):
                self.calls[_key] += 1
                return _original(store, *a, **kw)

            monkeypatch.setattr(Store, name, counted)
        trials = optuna.Study.trials

        def study_trials(study):
            self.calls["Study.trials"] += 1
            return trials.fget(study)

        monkeypatch.setattr(optuna.Study, "trials", property(study_trials))


@pytest.mark.parametrize("seeds", ["all", "sequential"])
def test_reads_per_sweep_do_not_grow_with_its_runs(tmp_path, monkeypatch, seeds):
    counts = {}
    for trials in (3, 24):
        (tmp_path / f"{seeds}-{trials}").mkdir()
        spec = load_spec(write_spec(tmp_path / f"{seeds}-{trials}", trials=trials,
                                    extra_sweep=f'\n[pruning]\nseeds = "{seeds}"\n' if seeds == "sequential" else ""))
        counter = _Counting(monkeypatch)
        snaps = []
        outcome = Driver(spec, tmp_path / f"{seeds}-{trials}" / "out", SimulatedBackend(_run, nodes=3),
                         progress=snaps.append, poll_seconds=0).run()
        assert outcome.n_trials == trials and snaps
        counts[trials] = dict(counter.calls)
        monkeypatch.undo()
    assert counts[24] == counts[3], f"whole-sweep reads grew with the sweep: {counts}"


def test_live_best_and_counts_match_what_the_store_says(tmp_path):
    spec = load_spec(write_spec(tmp_path, trials=6))
    snaps = []
    outcome = Driver(spec, tmp_path / "out", SimulatedBackend(_run, nodes=3), progress=snaps.append,
                     poll_seconds=0).run()
    data = load_sweep(tmp_path / "out")
    best = best_feasible(data)
    assert outcome.best["trial"] == best["trial"] and outcome.best["objective"] == pytest.approx(best["objective"])
    assert outcome.best["std"] == pytest.approx(best["std_val_bpb"])
    last = snaps[-1]
    assert (last.complete, last.failed, last.running, last.queued) == (18, 0, 0, 0)
    assert last.best == outcome.best


def test_resume_starts_from_what_the_store_holds(tmp_path):
    """A second driver on a finished sweep reads the best from disk and asks nothing new."""
    spec = load_spec(write_spec(tmp_path, trials=3))
    first = Driver(spec, tmp_path / "out", SimulatedBackend(_run, nodes=3), poll_seconds=0).run()
    again = Driver(spec, tmp_path / "out", SimulatedBackend(_run, nodes=3), poll_seconds=0).run()
    assert again.best == first.best and again.n_runs == first.n_runs == 9


def test_book_mirrors_the_store_through_every_write(tmp_path):
    store = Store(tmp_path / "golfsweep.db")
    store.add_trial(0, {"KNOB_X": 1.0})
    store.put_run(RunRecord(trial=0, seed=1, state=RunState.COMPLETE, val_bpb=1.2))
    book = RunBook(store)  # opened on a store that already holds a trial and a run
    book.add_trial(1, {"KNOB_X": 2.0}, {"A": "b"})
    book.add_trial(1, {"KNOB_X": 9.0})  # a trial's first record stays, as in the store
    book.put_run(RunRecord(trial=1, seed=1, state=RunState.RUNNING))
    book.put_run(RunRecord(trial=1, seed=2, state=RunState.RUNNING))
    book.put_run(RunRecord(trial=1, seed=1, state=RunState.FAILED, reason="exit 3"))
    book.put_run(RunRecord(trial=1, seed=2, state=RunState.PRUNED))
    book.finish_trial(1, TrialStatus.FAILED, None)

    assert book.runs() == store.runs() and book.runs(1) == store.runs(1)
    assert [(t.trial, t.params, t.state, t.value) for t in book.trials()] == \
        [(t.trial, t.params, t.state, t.value) for t in store.trials()]
    assert book.trial(1).env == {"A": "b"} and book.trial(7) is None
    assert (book.count(RunState.COMPLETE), book.count(RunState.RUNNING), book.count(RunState.PRUNED)) == (1, 0, 1)
    assert book.finished_failures() == 1
    store.close()


def test_a_ray_worker_imports_only_the_worker_package_to_run_a_task():
    """The task body's module must not drag in the driver's imports (Optuna, pandas) on every node."""
    import subprocess
    import sys

    code = ("import sys, golfsweep.orchestrator._task; "
            "print(sorted(m for m in ('optuna', 'pandas', 'sqlalchemy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_lazy_package_exports_every_name_it_lists():
    import golfsweep.orchestrator as orchestrator

    assert sorted(orchestrator.__all__) == sorted(orchestrator._WHERE)
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name).__name__ == name
    with pytest.raises(AttributeError):
        orchestrator.NoSuchThing  # noqa: B018
