"""A run's environment, id and launch command: the one place that builds them.

The driver (``RunSpec``), ``--dry-run``, the worker on the node and ``export`` (the README's
reproduction command) all call these; nobody formats ``RUN_ID`` or a ``torchrun`` line by hand.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["LaunchMode", "config_env", "launch_command", "run_environment", "run_id"]


class LaunchMode(str, enum.Enum):
    """How a run's processes start: one ``python`` process, or ``torchrun`` with ``nproc`` ranks."""

    PYTHON = "python"
    TORCHRUN = "torchrun"


def render_value(value: Any) -> str:
    """A parameter value as its env string: booleans ``1``/``0``, floats as ``repr`` (no precision lost)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def config_env(space: Iterable[tuple[str, str]], params: Mapping[str, Any]) -> dict[str, str]:
    """The environment variables one config sets: ``space`` is (parameter name, env name) pairs."""
    return {env: render_value(params[name]) for name, env in space if name in params}


def run_id(sweep: str, trial: int, seed: int) -> str:
    return f"{sweep}-t{trial}-s{seed}"


def run_environment(fixed: Mapping[str, str], seed: int, rid: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the run's processes see: ``base`` (the node's environment; ``{}`` for a display), the
    sweep's fixed and config env (``fixed``), then ``SEED`` and ``RUN_ID``, which always win."""
    env = dict(os.environ if base is None else base)
    env.update(fixed)
    env["SEED"] = str(seed)
    env["RUN_ID"] = rid
    if base is None:
        env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def launch_command(mode: LaunchMode | str, nproc: int, script: str, *, python: str | None = None) -> list[str]:
    """The command that runs ``script``. ``python`` is the interpreter on a node (``sys.executable``);
    without it, the command as a user types it (``torchrun ...``, for READMEs and ``--dry-run``)."""
    mode = LaunchMode(mode)
    if mode is LaunchMode.TORCHRUN:
        head = [python, "-m", "torch.distributed.run"] if python else ["torchrun"]
        return [*head, "--standalone", f"--nproc_per_node={nproc}", script]
    return [python or "python", script]


def node_python() -> str:
    return sys.executable
