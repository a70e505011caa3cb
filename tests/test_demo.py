"""The embedded default: demo data + the bundled demo sweep are ready to run (the run itself is timed by hand)."""

from __future__ import annotations

from pathlib import Path

from golfsweep.demo import example_path, prepare_demo, reference_trainer
from golfsweep.search_spaces import load_spec
from tests.conftest import invoke_cli


def test_prepare_demo_builds_data_and_a_valid_sweep_of_the_three_knobs(tmp_path):
    spec = prepare_demo(tmp_path / "demo")
    assert spec.script == reference_trainer() and spec.gpus_per_run == 0
    assert spec.trials >= 4 and len(spec.seeds) == 3
    assert {p.env for p in spec.space} == {"QK_GAIN_INIT", "GPTQ_DAMP", "TTT_LR"}
    assert Path(spec.env["DATA_PATH"], "fineweb_val_000000.bin").is_file()
    assert Path(spec.env["TOKENIZER_PATH"]).is_file()
    again = prepare_demo(tmp_path / "demo", trials=2)  # data kept, trials overridden
    assert again.trials == 2 and again.env == spec.env


def test_h100_example_is_a_valid_whole_node_sweep():
    spec = load_spec(example_path("h100.toml"))
    assert spec.gpus_per_run == 8 and spec.nproc == 8 and spec.launcher_command == "torchrun"
    assert spec.limits.artifact_bytes == 16_000_000


def test_dry_run_lists_every_config_seed_pair_with_its_env(tmp_path):
    prepare_demo(tmp_path / "demo")
    result = invoke_cli("run", tmp_path / "demo" / "demo.toml", "--dry-run")
    lines = [line for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert result.exit_code == 0 and len(lines) == 12
    assert all("QK_GAIN_INIT=" in line and "SEED=" in line and "RUN_ID=demo-t" in line for line in lines)
