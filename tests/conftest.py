"""Shared test helpers: sweep files around the fake trainer, the CLI in-process and as a process,
and a sweep driven to completion without Ray.

Plain functions (importable as ``from tests.conftest import write_sweep``) with thin fixtures over
them, so a test can use whichever reads better.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
FAKE_TRAIN = FIXTURES / "fake_train.py"

#: Removes a key from the default sweep when given as an override value: ``write_sweep(d, trials=DELETE)``.
DELETE = object()

_SWEEP_KEYS = {
    "name", "script", "seeds", "trials", "gpus_per_run", "cpus_per_run", "nproc", "launcher", "metric",
    "direction", "metric_labels", "artifact_glob", "check_paths", "max_system_retries",
    "max_script_retries",
}
_TABLES = ("sweep", "env", "space", "limits", "sampler", "storage")


def default_sweep(script: str | os.PathLike[str] = FAKE_TRAIN) -> dict[str, Any]:
    """A small valid sweep: the fake trainer, 2 seeds, 1 trial, CPU only, one float knob, short limits."""
    return {
        "sweep": {"name": "fake", "script": str(script), "seeds": [1, 2], "trials": 1, "gpus_per_run": 0,
                  "cpus_per_run": 1, "nproc": 1, "launcher": "python", "max_system_retries": 0},
        "env": {},
        "space": {"KNOB_X": {"type": "float", "low": 0.0, "high": 4.0}},
        "limits": {"run_timeout_seconds": 60, "stall_seconds": 30},
        "sampler": {"name": "random", "seed": 0},
    }


def sweep_dict(**overrides: Any) -> dict[str, Any]:
    """``default_sweep()`` with overrides applied.

    * a ``[sweep]`` key (``trials=3``, ``seeds=[1]``) sets that key of ``[sweep]``;
    * ``sweep=``, ``env=``, ``limits=``, ``sampler=``, ``storage=`` are merged into that table
      (``sweep={"epochs": 3}`` adds an unknown key to ``[sweep]``);
    * ``space=`` replaces the whole search space;
    * a value of ``DELETE`` removes the key (``name=DELETE``, ``limits=DELETE``);
    * any other key becomes a top-level key (to test unknown tables/keys).
    """
    d = default_sweep()
    for key, value in overrides.items():
        if key in _SWEEP_KEYS:
            table, sub = d["sweep"], key
        else:
            table, sub = d, key
        if value is DELETE:
            table.pop(sub, None)
        elif key in _TABLES and key != "space" and isinstance(value, Mapping):
            merged = dict(d.get(key, {}))
            for k, v in value.items():
                if v is DELETE:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            d[key] = merged
        else:
            table[sub] = value
    return d


def write_sweep(directory: str | os.PathLike[str], filename: str = "sweep.toml", *, text: str | None = None,
                prefix: str = "", extra: str = "", **overrides: Any) -> Path:
    """Write a sweep TOML into ``directory`` and return its path.

    With ``text`` the file holds exactly that (for syntax errors); otherwise it is
    ``sweep_dict(**overrides)`` rendered as TOML, between ``prefix`` (raw TOML put first: the only
    place a top-level scalar can go) and ``extra`` (raw TOML appended).
    """
    path = Path(directory) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    body = text if text is not None else prefix + toml_dumps(sweep_dict(**overrides)) + extra
    path.write_text(body, encoding="utf-8")
    return path


def fill_tmp(s: str, tmp: Path) -> str:
    """``{tmp}`` in a test case's strings stands for the test's tmp_path."""
    return s.replace("{tmp}", str(tmp))


def fill_tmp_any(v: Any, tmp: Path) -> Any:
    if isinstance(v, str):
        return fill_tmp(v, tmp)
    if isinstance(v, dict):
        return {k: fill_tmp_any(x, tmp) for k, x in v.items()}
    if isinstance(v, list):
        return [fill_tmp_any(x, tmp) for x in v]
    return v



# --------------------------------------------------------------------------- a tiny TOML writer

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_dumps(data: Mapping[str, Any]) -> str:
    """Render nested mappings as TOML: scalars first, then one ``[table]`` per nested mapping."""
    lines: list[str] = []
    _emit_table(lines, (), data)
    return "\n".join(lines) + "\n"


def _emit_table(lines: list[str], prefix: tuple[str, ...], table: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if prefix and (scalars or not tables):
        lines.append(f"[{'.'.join(_key(p) for p in prefix)}]")
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in tables.items():
        _emit_table(lines, (*prefix, k), v)


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _string(k)


def _string(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, Sequence):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot render {type(v).__name__} as TOML")


# --------------------------------------------------------------------------- the CLI

@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def invoke_cli(*args: str | os.PathLike[str]) -> CliResult:
    """Run ``golfsweep ARGS`` in this process through ``cli.main`` (exit code, captured output).

    An exception escaping ``main`` is rendered the way the interpreter would (a traceback on
    stderr, exit 1), so tests can assert that no user mistake ever produces one.
    """
    from golfsweep.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = ["golfsweep", *map(str, args)]
    code = 0
    old_argv = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001 - shown as the interpreter would show it
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = old_argv
    return CliResult(code, out.getvalue(), err.getvalue())


def cli_command() -> list[str]:
    """argv prefix that runs the golfsweep CLI in a fresh interpreter (installed or not)."""
    return [sys.executable, "-c", "from golfsweep.cli import main; main()"]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a CLI subprocess: this one, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def run_cli_process(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
                    env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``golfsweep ARGS`` as a separate process; raises ``subprocess.TimeoutExpired`` past ``timeout``."""
    return subprocess.run([*cli_command(), *map(str, args)], cwd=cwd, env=cli_env(env), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def assert_one_line_error(stderr: str, *needles: str) -> str:
    """``stderr`` is exactly one line ``error: ...`` containing every needle; returns that line."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


# --------------------------------------------------------------------------- sweeps without Ray

def run_sweep_in_process(spec_or_path: Any, sweep_dir: str | os.PathLike[str], *, max_parallel: int = 2,
                         workdir_root: str | os.PathLike[str] | None = None):
    """Drive a sweep to completion with ``InProcessBackend`` (threads, no Ray); returns the outcome.

    ``spec_or_path`` is a ``SweepSpec`` or a path to a sweep file. Run directories go under
    ``workdir_root`` (default: ``<sweep_dir>.work`` next to the sweep directory).
    """
    from golfsweep.orchestrator import Driver, InProcessBackend
    from golfsweep.search_spaces import SweepSpec, load_spec

    spec = spec_or_path if isinstance(spec_or_path, SweepSpec) else load_spec(spec_or_path)
    sweep_dir = Path(sweep_dir)
    root = Path(workdir_root) if workdir_root else sweep_dir.with_name(sweep_dir.name + ".work")
    backend = InProcessBackend(max_parallel=max_parallel, workdir_root=root)
    try:
        driver = Driver(spec, sweep_dir, backend, poll_seconds=0.05)
    except BaseException:
        backend.shutdown()
        raise
    return driver.run()


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def make_sweep(tmp_path: Path):
    """``make_sweep(**overrides) -> Path``: ``write_sweep`` into this test's ``tmp_path``."""

    def make(filename: str = "sweep.toml", **kwargs: Any) -> Path:
        return write_sweep(tmp_path, filename, **kwargs)

    return make


@pytest.fixture
def cli():
    """``cli(*args) -> CliResult``: the golfsweep CLI run in-process."""
    return invoke_cli


# --------------------------------------------------------------------------- PostgreSQL

def pytest_report_header(config) -> str:
    """Which PostgreSQL the storage tests start (CI's log shows the server version they ran against)."""
    from tests.pg import find_bin_dir, server_version

    bin_dir = find_bin_dir()
    if bin_dir is None:
        return "postgresql: no server binaries found (install Debian's postgresql); the PostgreSQL tests skip"
    return f"postgresql: {server_version(bin_dir)} ({bin_dir})"


_PG_SESSION: dict[str, Any] = {}  # what the session's server was, for the summary line


def pytest_terminal_summary(terminalreporter) -> None:
    """One line after the results (shown with -q too): the server the PostgreSQL tests ran against."""
    if "version" in _PG_SESSION:
        terminalreporter.write_line(f"postgresql: the PostgreSQL tests ran against a server started for them: "
                                    f"{_PG_SESSION['version']}")
    elif "skipped" in _PG_SESSION:
        terminalreporter.write_line(f"postgresql: the PostgreSQL tests skipped: {_PG_SESSION['skipped']}")


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the session (``tests.pg``); skips when none can be started."""
    from tests.pg import Unavailable, start_server

    try:
        server = start_server()
    except Unavailable as exc:
        _PG_SESSION["skipped"] = str(exc)
        pytest.skip(str(exc))
    _PG_SESSION["version"] = server.version
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a fresh database on the session's server (superuser, no password)."""
    return pg_server.url(pg_server.new_database())
