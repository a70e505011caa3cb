"""The sweep file both benchmarks give golfsweep's driver: 3 seeds, whole-node runs, the three
builtin knobs (GPTQ_DAMP, QK_GAIN_INIT, TTT_LR)."""

SEEDS = (1337, 42, 2025)


def sweep_toml(name: str, configs: int, sampler: str, extra: str = "") -> str:
    """``sampler``: the lines of its ``[sampler]`` table; ``extra``: more tables (``[pruning]``)."""
    return (f'[sweep]\nname = "{name}"\nscript = "train_gpt.py"\nseeds = {list(SEEDS)}\ntrials = {configs}\n'
            f"gpus_per_run = 8\n[space.gptq_damp]\n[space.qk_gain]\n[space.ttt_lr]\n[sampler]\n{sampler}\n{extra}")
