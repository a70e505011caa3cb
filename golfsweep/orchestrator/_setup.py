"""A sweep's directory and Optuna study: refuse the wrong one, create or reopen the right one, and
the plan ``--dry-run`` prints. Everything here runs before a run starts."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from typing import Any

import optuna
import sqlalchemy

from golfsweep.errors import GolfsweepError
from golfsweep.orchestrator._pruning import make_pruner
from golfsweep.paths import SweepPaths, atomic_write
from golfsweep.redact import REDACTED_META
from golfsweep.scriptfiles import ScriptFiles
from golfsweep.results import Store
from golfsweep.search_spaces import SweepSpec, distributions, make_sampler, mask_env
from golfsweep.storage import (StoreLocation, connect_args, connect_problem, engine_url, is_server_url, masked_url,
                               recorded_location, sqlite_pragmas)
from golfsweep.worker import config_env, run_environment, run_id

__all__ = ["check_sweep_dir", "open_study", "planned_runs", "prepare_sweep_dir", "quiet_optuna", "store_location",
           "trial_environment"]


def store_location(spec: SweepSpec, paths: SweepPaths) -> StoreLocation:
    """Where the sweep's run store is: with the study on the ``[storage]`` server (keyed by the
    sweep's name), else ``golfsweep.db`` in the sweep directory."""
    if is_server_url(spec.storage_url):
        return StoreLocation.server(spec.storage_url or "", spec.name)
    return StoreLocation.file(paths.store)


def check_sweep_dir(spec: SweepSpec, paths: SweepPaths) -> ScriptFiles:
    """Refuse a directory (or a server's sweep of the same name) holding a different sweep or a
    changed script (or support file), and a storage server that cannot be used; writes nothing.

    Returns the script and the files it runs, read once here.
    """
    files = ScriptFiles.read(spec.script, spec.files)
    sha = files.sha256
    if paths.root.exists() and not paths.root.is_dir():
        raise GolfsweepError(f"sweep directory: must be a directory, got file {str(paths.root)!r}")
    location = store_location(spec, paths)
    _check_same_storage(spec, location, paths)
    if not Store.exists(location):  # on a server: connects, so a dead one is refused here
        return files
    with Store(location, create=False) as store:
        old_fp, old_sha = store.get_meta("fingerprint"), store.get_meta("script_sha256")
        old_name = json.loads(store.get_meta("spec") or "{}").get("name", "?")
    fp = spec.fingerprint()
    if old_fp is not None and old_fp != fp:
        if location.is_server:
            raise GolfsweepError(
                f"sweep.name: must be unique on a shared storage server unless this is the same sweep; "
                f"{location} holds another spec (fingerprint {old_fp} != {fp}); rename this sweep")
        raise GolfsweepError(
            f"sweep directory: {str(paths.root)!r} holds sweep {old_name!r} with a different spec "
            f"(fingerprint {old_fp} != {fp}); use another --dir")
    if old_sha is not None and old_sha != sha:
        instead = "rename the sweep" if location.is_server else "use another --dir"
        which = " or a file it runs (" + ", ".join(files.names) + ")" if files.names else ""
        raise GolfsweepError(
            f"sweep.script: {spec.script.name}{which} changed since this sweep started "
            f"(sha256 {sha[:12]} != recorded {old_sha[:12]}); restore it or {instead}")
    return files


def _check_same_storage(spec: SweepSpec, location: StoreLocation, paths: SweepPaths) -> None:
    """A sweep directory keeps its store where it started (on a server, or in its golfsweep.db), and
    a directory of a sweep on a server holds that sweep only (its spec.json says which)."""
    if location.is_server and paths.store.exists():
        raise GolfsweepError(f"storage.url: sweep directory {str(paths.root)!r} keeps its store in golfsweep.db, "
                             f"so it cannot move to {location}; use another --dir")
    if paths.store.exists() or not paths.spec_json.exists():
        return
    recorded = recorded_location(paths)
    if not recorded.is_server:
        return
    if not location.is_server:
        raise GolfsweepError(f"storage.url: sweep directory {str(paths.root)!r} keeps its store on a server "
                             f"({recorded}); give that [storage] url, or use another --dir")
    old_fp = json.loads(paths.spec_json.read_text(encoding="utf-8")).get("fingerprint")
    fp = spec.fingerprint()
    if recorded.sweep != spec.name or old_fp != fp:
        raise GolfsweepError(f"sweep directory: {str(paths.root)!r} holds sweep {recorded.sweep!r} with a different "
                             f"spec (fingerprint {old_fp} != {fp}); use another --dir")


def prepare_sweep_dir(spec: SweepSpec, paths: SweepPaths, files: ScriptFiles) -> Store:
    """Create or reopen a sweep directory and its store, once ``check_sweep_dir`` accepted it and
    returned ``files``."""
    store = Store(store_location(spec, paths))
    fp = spec.fingerprint()
    store.set_meta("fingerprint", fp)
    store.set_meta("spec", json.dumps(spec.to_dict(mask_secrets=True), sort_keys=True))
    store.set_meta("script_sha256", files.sha256)
    store.set_meta("script_name", spec.script.name)
    store.set_meta("support_files", json.dumps(list(files.names)))
    store.put_script(files)  # kept by a server store: read where this directory is not
    if store.get_meta(REDACTED_META) is None and not store.runs():  # a resumed older sweep stays unmarked
        store.set_meta(REDACTED_META, "1")
    atomic_write(paths.spec_json, json.dumps({"fingerprint": fp, "spec": spec.to_dict(mask_secrets=True)},
                                             indent=2, sort_keys=True))
    for name, data in ((spec.script.name, files.script), *files.support):
        if not paths.script(name).exists():
            atomic_write(paths.script(name), data)
    return store


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial INFO lines and its warnings a user cannot act on (an ignored constraint
    value under a sampler without constraints, experimental APIs) stay off the terminal."""
    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"optuna(\..*)?$")
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(old)


def open_study(spec: SweepSpec, paths: SweepPaths) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """Create or load the sweep's Optuna study and its storage; a storage that cannot be opened is a
    user error. The storage is returned so trials can be found by number through its public API."""
    url = spec.storage_url or paths.optuna_url
    if spec.storage_url is None:
        paths.root.mkdir(parents=True, exist_ok=True)
    sampler = make_sampler(spec)
    # On a server: a bounded connect timeout, and connections checked before use (a restarted server).
    kwargs = {"connect_args": connect_args(url), "pool_pre_ping": True} if is_server_url(url) else None
    try:
        with quiet_optuna():
            storage = optuna.storages.RDBStorage(engine_url(url).render_as_string(hide_password=False),
                                                 engine_kwargs=kwargs)
            if not is_server_url(url):
                sqlalchemy.event.listen(storage.engine, "connect", sqlite_pragmas)
                storage.engine.dispose()  # connections opened while Optuna set its tables up get them too
            study = optuna.create_study(study_name=spec.name, storage=storage, sampler=sampler,
                                        pruner=make_pruner(spec.pruning), direction=spec.direction.value,
                                        load_if_exists=True)
    except Exception as exc:
        raise GolfsweepError(f"storage.url: cannot open Optuna storage {masked_url(url)!r}: "
                             f"{connect_problem(exc, url)[:200]}") from None
    return study, storage


def trial_environment(spec: SweepSpec, params: dict[str, Any]) -> dict[str, str]:
    """The env a trial's runs receive from the sweep: the fixed env, then the config's parameters."""
    return {**spec.env, **config_env(spec.env_names, params)}



def planned_runs(spec: SweepSpec) -> list[dict[str, Any]]:
    """What ``--dry-run`` prints: the configs the sampler would propose first, × seeds, with env.

    Model-based samplers adapt to results, so only the configs before any result are certain; the
    rest are drawn as if no result had arrived.
    """
    study = optuna.create_study(sampler=make_sampler(spec), direction=spec.direction.value)
    dists = distributions(spec)
    out = []
    for _ in range(spec.trials):
        trial = study.ask(dists)
        env = mask_env(trial_environment(spec, trial.params))
        for seed in spec.seeds:
            out.append({"trial": trial.number, "seed": seed, "params": trial.params,
                        "env": run_environment(env, seed, run_id(spec.name, trial.number, seed), base={})})
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return out
