"""The body of a run's Ray task, alone in its module.

A Ray worker process unpickles the task function by importing its module. Here that import costs the
worker package only (~35 ms), not the driver's Optuna, SQLAlchemy and pandas (~0.9 s): the first run
on every node, and every run that gets a fresh worker process, starts that much sooner. The package's
``__init__`` is lazy for the same reason.
"""

from __future__ import annotations

from pathlib import Path

from golfsweep.worker import RunResult, RunSpec, execute_run


def run_task(spec: RunSpec, workdir_root: str | None, points=None) -> RunResult:
    """Run ``spec`` on this node; curve points go to ``points`` (a Ray queue) as they are printed."""
    import ray  # inside a Ray worker: already imported

    node_id = ray.get_runtime_context().get_node_id()
    key = (spec.trial, spec.seed, spec.attempt)
    on_point = (lambda p: points.put_nowait((key, p))) if points is not None else None
    return execute_run(spec, workdir_root=Path(workdir_root) if workdir_root else None, node_id=node_id,
                       on_point=on_point)
