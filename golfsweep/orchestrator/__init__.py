"""The only package that imports Ray: placement, retries, Optuna ask/tell, resume, progress."""

from golfsweep.orchestrator._api import (
    check_local_paths,
    default_sweep_dir,
    make_backend,
    run_sweep,
    spec_for_resume,
)
from golfsweep.orchestrator._backend import InProcessBackend, RayBackend, RunBackend
from golfsweep.orchestrator._driver import Driver, Snapshot, SweepOutcome
from golfsweep.orchestrator._events import DriverInterrupted
from golfsweep.orchestrator._lease import SweepLease
from golfsweep.orchestrator._setup import check_sweep_dir, planned_runs, prepare_sweep_dir
from golfsweep.orchestrator._simulate import SimulatedBackend, SimulatedRun
from golfsweep.orchestrator._progress import TerminalProgress

__all__ = [
    "Driver", "DriverInterrupted", "InProcessBackend", "RayBackend", "RunBackend", "SimulatedBackend", "SimulatedRun", "Snapshot", "SweepLease", "SweepOutcome",
    "TerminalProgress", "check_local_paths", "check_sweep_dir", "default_sweep_dir", "make_backend",
    "planned_runs", "prepare_sweep_dir", "run_sweep", "spec_for_resume",
]
