"""Issue 2: a whole sweep over the fake trainer — Optuna ask/tell, seeds, tables, limits."""

from __future__ import annotations

import json
import statistics

import optuna
import pytest

from golfsweep.orchestrator import Driver, InProcessBackend, RayBackend
from golfsweep.results import format_table, load_sweep, summary_frame
from golfsweep.search_spaces import load_spec
from tests.orchestrator._sweeps import fake_module, write_spec

SEEDS = (1337, 42, 2025)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def _expected(knob: float) -> tuple[float, float]:
    """Mean and sample std over seeds, computed here from the trainer's formula as printed (8 dp)."""
    fake = fake_module()
    vals = [round(fake.fake_bpb(knob, s), 8) for s in SEEDS]
    return statistics.mean(vals), statistics.stdev(vals)


def test_four_trials_three_seeds_on_local_ray(tmp_path, local_ray):
    spec = load_spec(write_spec(tmp_path, trials=4, seeds=SEEDS))
    outcome = Driver(spec, tmp_path / "out", RayBackend(gpus_per_run=0, cpus_per_run=1),
                     poll_seconds=0.2).run()
    assert outcome.n_runs == 12 and outcome.n_failed == 0

    data = load_sweep(tmp_path / "out")
    df = summary_frame(data)
    assert len(df) == 4
    assert list(df["n_ok"]) == [3] * 4 and list(df["n_seeds"]) == [3] * 4
    for _, row in df.iterrows():
        mean, std = _expected(row["params"]["KNOB_X"])
        assert row["mean_val_bpb"] == pytest.approx(mean, abs=1e-12)
        assert row["std_val_bpb"] == pytest.approx(std, rel=1e-9)
        assert row["feasible"]
    assert list(df["mean_val_bpb"]) == sorted(df["mean_val_bpb"])  # best first

    rows = json.loads(format_table(data, "json"))
    assert {"params", "n_ok", "n_seeds", "mean_val_bpb", "std_val_bpb", "max_bytes_total", "feasible"} <= set(rows[0])
    assert rows[0]["mean_val_bpb"] == pytest.approx(df["mean_val_bpb"].iloc[0])

    # Optuna was told each trial's mean over its seeds, and only once all seeds were done.
    study = optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'out' / 'optuna.db'}")
    for t in study.trials:
        assert t.state is optuna.trial.TrialState.COMPLETE
        assert t.value == pytest.approx(_expected(t.params["KNOB_X"])[0], abs=1e-12)
    # every run ran on a Ray node and left its log in the sweep directory
    for r in data.runs:
        assert r.node_id and len(r.node_id) > 20
        assert "final_int6_zstd_roundtrip_exact" in open(r.log_path).read()


def test_oversized_artifact_is_infeasible_and_never_best(tmp_path):
    space = '[space.BIG_MODEL]\ntype = "categorical"\nchoices = ["0", "1"]\n'
    spec = load_spec(write_spec(tmp_path, trials=2, seeds=(1, 2, 3), space=space, sampler="grid"))
    Driver(spec, tmp_path / "out", InProcessBackend(max_parallel=2), poll_seconds=0.05).run()
    data = load_sweep(tmp_path / "out")
    df = summary_frame(data)
    big = df[df["params"].map(lambda p: p["BIG_MODEL"] == "1")].iloc[0]
    small = df[df["params"].map(lambda p: p["BIG_MODEL"] == "0")].iloc[0]
    assert big["mean_val_bpb"] < small["mean_val_bpb"]  # tempting: better BPB ...
    assert big["max_bytes_total"] == 16_000_001  # ... measured on disk, script bytes included
    assert big["bytes_ok"] == "fail"
    assert not big["feasible"] and small["feasible"]
    assert df.iloc[0]["trial"] == small["trial"]  # never reported best
    md = format_table(data, "md")
    assert "FAIL" in [line for line in md.splitlines() if line.startswith("|")][-1]

    study = optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'out' / 'optuna.db'}")
    by_big = {t.params["BIG_MODEL"]: t for t in study.trials}
    assert by_big["1"].constraints["artifact_bytes"] == 1  # 1 byte over the limit
    assert by_big["0"].constraints["artifact_bytes"] < 0


def test_a_limit_no_run_reported_is_unproven_never_a_pass(tmp_path):
    spec = load_spec(write_spec(tmp_path, trials=1, seeds=(1, 2), env={"EVAL_MS": "none"}))
    Driver(spec, tmp_path / "out", InProcessBackend(max_parallel=2), poll_seconds=0.05).run()
    data = load_sweep(tmp_path / "out")
    row = summary_frame(data).iloc[0]
    assert row["n_ok"] == 2 and row["eval_ok"] == "unproven" and row["bytes_ok"] == "pass"
    assert not row["feasible"]
    assert "unproven" in [line for line in format_table(data, "md").splitlines() if line.startswith("|")][-1]
    assert json.loads(format_table(data, "json"))[0]["eval_ok"] == "unproven"
    study = optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'out' / 'optuna.db'}")
    assert study.trials[0].constraints["eval_seconds"] > 0  # infeasible to the sampler too


def test_failed_seed_fails_the_trial_and_is_not_averaged(tmp_path):
    spec = load_spec(write_spec(tmp_path, trials=1, seeds=(1, 2, 3), env={"FAIL_MODE": "exit@2"}))
    Driver(spec, tmp_path / "out", InProcessBackend(max_parallel=2), poll_seconds=0.05).run()
    data = load_sweep(tmp_path / "out")
    row = summary_frame(data).iloc[0]
    assert row["n_ok"] == 2 and not row["feasible"]
    assert any("seed 2" in f and "exited with status 3" in f for f in row["failed"])
    failed = [r for r in data.runs if r.seed == 2][0]
    assert failed.state.value == "failed" and failed.exit_code == 3
    assert any("CUDA out of memory" in line for line in failed.log_tail)
    study = optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'out' / 'optuna.db'}")
    assert study.trials[0].state is optuna.trial.TrialState.FAIL
