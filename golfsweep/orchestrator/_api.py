"""Entry points the CLI calls: start a sweep, resume one."""

from __future__ import annotations

import json
import os
from pathlib import Path

from golfsweep.errors import GolfsweepError
from golfsweep.orchestrator._backend import RayBackend, RunBackend
from golfsweep.orchestrator._driver import Driver, ProgressCallback, SweepOutcome
from golfsweep.orchestrator._setup import check_sweep_dir, open_study
from golfsweep.paths import SweepPaths
from golfsweep.results import Store
from golfsweep.search_spaces import SweepSpec, load_spec
from golfsweep.storage import recorded_location


def default_sweep_dir(spec: SweepSpec) -> Path:
    return Path("sweeps") / spec.name


def check_local_paths(spec: SweepSpec) -> None:
    """On a local instance the driver's machine is the node: check data paths before any run."""
    problems = []
    for key in spec.check_paths:
        value = spec.env.get(key)
        if value and not Path(value).exists():
            problems.append(f"env.{key}: path must exist on the node, got {value!r}")
    if problems:
        raise GolfsweepError("; ".join(problems))


def make_backend(spec: SweepSpec, *, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: int | None = None) -> RunBackend:
    return RayBackend(gpus_per_run=spec.gpus_per_run, cpus_per_run=spec.cpus_per_run, address=address,
                      num_cpus=num_cpus, num_gpus=num_gpus)


def _check_local_size(spec: SweepSpec, num_cpus: int | None, num_gpus: int | None) -> None:
    """A local instance never grows: a run that does not fit on it would wait for ever."""
    if spec.gpus_per_run and num_gpus is not None and num_gpus < spec.gpus_per_run:
        raise GolfsweepError(f"--num-gpus: a run needs all of sweep.gpus_per_run={spec.gpus_per_run} GPUs on one "
                             f"node, and this local instance would have {num_gpus}; declare at least "
                             f"{spec.gpus_per_run} or lower gpus_per_run")
    cpus = num_cpus if num_cpus is not None else os.cpu_count()
    if not spec.gpus_per_run and cpus and spec.cpus_per_run > cpus:
        raise GolfsweepError(f"sweep.cpus_per_run: a run needs {spec.cpus_per_run} CPUs on one node, and this local "
                             f"instance has {cpus} (--num-cpus); lower cpus_per_run, got {spec.cpus_per_run}")


def run_sweep(spec: SweepSpec, sweep_dir: str | Path | None = None, *, address: str | None = None,
              backend: RunBackend | None = None, progress: ProgressCallback | None = None,
              num_cpus: int | None = None, num_gpus: int | None = None) -> SweepOutcome:
    """Run (or continue) ``spec`` in ``sweep_dir``; a directory holding another sweep is refused."""
    sweep_dir = Path(sweep_dir) if sweep_dir else default_sweep_dir(spec)
    if address is None and backend is None:
        check_local_paths(spec)
    if not address and spec.gpus_per_run and num_gpus is None and backend is None:
        raise GolfsweepError(
            f"sweep.gpus_per_run: a local Ray instance has no GPUs unless declared; pass --num-gpus or "
            f"--address, got gpus_per_run={spec.gpus_per_run}")
    if not address and backend is None:
        _check_local_size(spec, num_cpus, num_gpus)
    # Everything that can be refused is refused before a Ray instance starts or a cluster is joined.
    paths = SweepPaths.of(sweep_dir)
    checked = check_sweep_dir(spec, paths)
    opened = open_study(spec, paths)
    backend = backend or make_backend(spec, address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    try:
        driver = Driver(spec, sweep_dir, backend, progress=progress, checked=checked, opened=opened)
    except BaseException:
        backend.shutdown()
        raise
    return driver.run()


def spec_for_resume(sweep_dir: str | Path, spec_path: str | Path | None = None) -> SweepSpec:
    """The sweep file a directory was started from (or ``spec_path``), checked to be the same sweep."""
    paths = SweepPaths.of(sweep_dir)
    location = recorded_location(paths)
    if location.is_server:  # spec.json says where the sweep file was; the server is not needed for that
        meta = json.loads(paths.spec_json.read_text(encoding="utf-8"))["spec"]
    elif not paths.store.exists():
        raise GolfsweepError(f"SWEEP_DIR: no golfsweep store in {str(sweep_dir)!r}; start it with `golfsweep run`")
    else:
        with Store(paths.store, create=False) as store:
            meta = json.loads(store.get_meta("spec") or "{}")
    source = spec_path or meta.get("source")
    if not source or not os.path.exists(source):
        raise GolfsweepError(f"--spec: the sweep file this directory was started from is gone, got "
                             f"{source!r}; pass --spec PATH")
    return load_spec(source)
