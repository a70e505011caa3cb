"""The only package that imports Ray: placement, retries, Optuna ask/tell, resume, progress.

Names load on first use (PEP 562): a Ray worker that imports ``golfsweep.orchestrator._task`` to run
a task must not pay for the driver's imports (``_task`` says why).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "_api": ("check_local_paths", "default_sweep_dir", "make_backend", "run_sweep", "spec_for_resume"),
    "_backend": ("InProcessBackend", "RayBackend", "RunBackend"),
    "_driver": ("Driver", "Snapshot", "SweepOutcome"),
    "_events": ("DriverInterrupted",),
    "_lease": ("SweepLease",),
    "_setup": ("check_sweep_dir", "planned_runs", "prepare_sweep_dir"),
    "_simulate": ("SimulatedBackend", "SimulatedRun"),
    "_progress": ("TerminalProgress",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "Driver", "DriverInterrupted", "InProcessBackend", "RayBackend", "RunBackend", "SimulatedBackend", "SimulatedRun",
    "Snapshot", "SweepLease", "SweepOutcome", "TerminalProgress", "check_local_paths", "check_sweep_dir",
    "default_sweep_dir", "make_backend", "planned_runs", "prepare_sweep_dir", "run_sweep", "spec_for_resume",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from golfsweep.orchestrator._api import (check_local_paths, default_sweep_dir, make_backend, run_sweep,
                                             spec_for_resume)
    from golfsweep.orchestrator._backend import InProcessBackend, RayBackend, RunBackend
    from golfsweep.orchestrator._driver import Driver, Snapshot, SweepOutcome
    from golfsweep.orchestrator._events import DriverInterrupted
    from golfsweep.orchestrator._lease import SweepLease
    from golfsweep.orchestrator._progress import TerminalProgress
    from golfsweep.orchestrator._setup import check_sweep_dir, planned_runs, prepare_sweep_dir
    from golfsweep.orchestrator._simulate import SimulatedBackend, SimulatedRun
