"""Sweep files around the fake trainer, for orchestrator tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_train.py"


def fake_module():
    spec = importlib.util.spec_from_file_location("fake_train", FAKE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sweep_toml(name: str = "fake", *, seeds=(1, 2, 3), trials: int = 4, gpus_per_run: int = 0,
               space: str | None = None, env: dict | None = None, sampler: str = "random",
               limits: dict | None = None, extra_sweep: str = "") -> str:
    space = space if space is not None else '[space.KNOB_X]\ntype = "float"\nlow = 0.0\nhigh = 4.0\n'
    env_lines = "".join(f'{k} = "{v}"\n' for k, v in (env or {}).items())
    limit_lines = "".join(f"{k} = {v}\n" for k, v in (limits or {}).items())
    return (f'[sweep]\nname = "{name}"\nscript = "{FAKE}"\nseeds = {list(seeds)}\ntrials = {trials}\n'
            f"gpus_per_run = {gpus_per_run}\n{extra_sweep}\n[env]\n{env_lines}\n{space}\n"
            f'[sampler]\nname = "{sampler}"\nseed = 11\n[limits]\n{limit_lines}')


def write_spec(tmp_path: Path, **kw) -> Path:
    p = tmp_path / "sweep.toml"
    p.write_text(sweep_toml(**kw))
    return p
