"""Run one (config, seed) on this machine: preflight, subprocess, timeouts, parse, measure.

Callable in-process without Ray; the orchestrator calls ``execute_run`` inside a Ray task.

Secrets: the run's output is redacted line by line before it is written (``golfsweep.redact``:
the secret values of the run's whole environment, node environment included, and any value
assigned to a secret name), so no secret value touches the node's disk; everything else in the
result that could hold one (reason, command) is redacted too.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from golfsweep.paths import SweepPaths
from golfsweep.redact import Redactor
from golfsweep.worker._artifact import measure_artifact
from golfsweep.worker._env import launch_command, run_environment
from golfsweep.worker._loglines import CurvePoint, curve_point
from golfsweep.worker._logparse import parse_log
from golfsweep.worker._types import RunResult, RunSpec, RunState

LOG_NAME = "train.log"
TAIL_LINES = 30
_KILL_GRACE_SECONDS = 5.0
_POLL_SECONDS = 0.1
_PR_SET_PDEATHSIG = 1


def default_workdir_root() -> Path:
    """Node-local directory for run directories (``GOLFSWEEP_WORKDIR`` overrides)."""
    return Path(os.environ.get("GOLFSWEEP_WORKDIR") or Path(tempfile.gettempdir()) / "golfsweep-runs")


def run_workdir(spec: RunSpec, root: Path | None = None) -> Path:
    root = root or default_workdir_root()
    return root / spec.sweep / SweepPaths.run_name(spec.trial, spec.seed) / f"attempt-{spec.attempt}"


def build_command(spec: RunSpec, script_path: Path) -> list[str]:
    return launch_command(spec.launcher, spec.nproc, str(script_path), python=sys.executable)


def run_env(spec: RunSpec, base: dict[str, str] | None = None) -> dict[str, str]:
    """Node environment + sweep env + config + SEED and RUN_ID (which always win)."""
    return run_environment(spec.env, spec.seed, spec.run_id, base)


def preflight(spec: RunSpec, node: str) -> str | None:
    """Check node-local paths and the script's integrity; returns a reason or None."""
    digest = spec.files.sha256
    if digest != spec.script_sha256:
        return f"script {spec.script_name}: sha256 {digest[:12]} != recorded {spec.script_sha256[:12]}"
    for key in spec.check_paths:
        value = spec.env.get(key)
        if value and not Path(value).exists():
            return f"node {node}: {key} path does not exist on this node, got {value!r}"
    return None


PointCallback = Callable[[CurvePoint], None]
StopCheck = Callable[[], "str | None"]


def execute_run(spec: RunSpec, *, workdir_root: Path | None = None, node_id: str | None = None,
                on_point: PointCallback | None = None, stop: StopCheck | None = None) -> RunResult:
    """Run ``spec`` to completion and report; never raises for script problems.

    ``on_point`` receives each in-training validation point as the run prints it; ``stop`` is asked
    a few times a second whether the run must end (a reason) — then its process tree is killed and
    the result is ``PRUNED`` with the curve it had.
    """
    host = socket.gethostname()
    node = node_id or host
    started = time.time()
    base = RunResult(trial=spec.trial, seed=spec.seed, attempt=spec.attempt, state=RunState.FAILED,
                     node_id=node, hostname=host, started_at=started)

    env = run_env(spec)
    redactor = Redactor(env)
    reason = preflight(spec, node)
    if reason:
        return base.replace(reason=reason, ended_at=time.time()).redacted(redactor)

    workdir = run_workdir(spec, workdir_root)
    if workdir.exists():  # a fresh attempt never sees a previous attempt's artifact
        _rmtree(workdir)
    workdir.mkdir(parents=True)
    script_path = spec.files.write(workdir)
    cmd = build_command(spec, script_path)
    log_path = workdir / LOG_NAME

    outcome = _supervise(cmd, env, workdir, log_path, spec.limits.run_timeout_seconds,
                         spec.limits.stall_seconds, redactor, on_point, stop)
    ended = time.time()
    log_text = log_path.read_text(encoding="utf-8", errors="replace")  # redacted as it was written
    tail = tuple(log_text.splitlines()[-TAIL_LINES:])
    base = base.replace(exit_code=outcome.exit_code, command=tuple(cmd), ended_at=ended, log_tail=tail,
                        log_text=log_text)
    if outcome.killed_for is not None:
        state, why = outcome.killed_for
        curve = tuple((p.step, p.val_loss, p.val_bpb) for p in parse_log(log_text).curve)
        return base.replace(state=state, reason=why, curve=curve).redacted(redactor, log=False)
    return finish_from_log(spec, base, log_text, workdir).redacted(redactor, log=False)


def finish_from_log(spec: RunSpec, base: RunResult, log_text: str, workdir: Path) -> RunResult:
    """Turn a finished process's log and files into a COMPLETE or FAILED result."""
    parsed = parse_log(log_text, spec.metric_labels or None)
    curve = tuple((p.step, p.val_loss, p.val_bpb) for p in parsed.curve)
    eval_ms = total_eval_ms(parsed)
    base = base.replace(metric_label=parsed.metric_label, val_bpb=parsed.val_bpb, val_loss=parsed.val_loss,
                        train_time_ms=parsed.train_time_best_ms, eval_time_ms=eval_ms, curve=curve,
                        warnings=parsed.warnings)
    if base.exit_code not in (0, None):
        return base.replace(reason=f"script exited with status {base.exit_code}")
    if parsed.val_bpb is None or parsed.metric_label == "step_val_last":
        wanted = ", ".join(spec.metric_labels) if spec.metric_labels else \
            "an evaluation printed after the artifact was written"
        return base.replace(reason=f"no final metric line in the log (looked for {wanted})")
    if not (math.isfinite(parsed.val_bpb) and parsed.val_loss is not None and math.isfinite(parsed.val_loss)):
        return base.replace(reason=f"metric {parsed.metric_label} is not finite: val_loss={parsed.val_loss} "
                                   f"val_bpb={parsed.val_bpb}")
    artifact = measure_artifact(workdir, spec.artifact_glob, code_bytes=spec.files.code_bytes,
                                claimed_total=parsed.bytes_total, limit=spec.limits.artifact_bytes)
    if artifact is None:
        return base.replace(reason=f"no artifact file matching {', '.join(spec.artifact_glob)} in the run "
                                   f"directory")
    return base.replace(state=RunState.COMPLETE, artifact=artifact, reason=None)


def total_eval_ms(parsed) -> int | None:
    """Evaluation time of the run: every timed final evaluation, each counted once."""
    times = dict(parsed.eval_times_ms or {})
    for label in list(times):
        if label.endswith("_exact") and label[: -len("_exact")] in times:
            del times[label]  # the _exact line repeats its companion's timing
    if times:
        return int(sum(times.values()))
    return parsed.eval_time_ms


class _Outcome:
    def __init__(self, exit_code: int | None, killed_for: tuple[RunState, str] | None) -> None:
        self.exit_code = exit_code
        self.killed_for = killed_for


def _supervise(cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path, timeout: float,
               stall: float, redactor: Redactor | None = None, on_point: PointCallback | None = None,
               stop: StopCheck | None = None) -> _Outcome:
    """Start ``cmd`` in its own process group, stream its output (redacted line by line), kill the
    tree on a limit."""
    redactor = redactor if redactor is not None else Redactor(env)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_parent)
        with _LIVE_LOCK:
            _LIVE[proc.pid] = proc
        last_output = [time.monotonic()]
        pump = threading.Thread(target=_pump, args=(proc.stdout, log, last_output, redactor, on_point), daemon=True)
        pump.start()
        start = time.monotonic()
        killed_for = None
        while proc.poll() is None:
            now = time.monotonic()
            if now - start > timeout:
                killed_for = (RunState.TIMEOUT, f"killed after run_timeout_seconds={timeout:g} "
                                                f"(ran {now - start:.1f}s)")
            elif now - last_output[0] > stall:
                killed_for = (RunState.STALLED, f"killed after stall_seconds={stall:g} without output")
            elif stop is not None and (why := stop()):
                killed_for = (RunState.PRUNED, why)
            if killed_for:
                kill_tree(proc)
                break
            time.sleep(_POLL_SECONDS)
        proc.wait()
        with _LIVE_LOCK:
            _LIVE.pop(proc.pid, None)
        if killed_for is None:
            _end_leftovers(proc.pid)
        pump.join(timeout=5)
    return _Outcome(proc.returncode, killed_for)


# The runs this process is supervising, so a driver told to stop can end them with their trees.
_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()


def kill_live_runs() -> int:
    """Kill every run this process supervises, with its whole process tree; returns how many."""
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for proc in procs:
        kill_tree(proc)
    return len(procs)


def _end_leftovers(pgid: int) -> None:
    """Stop what an exited script left running in its group: it would hold the GPU and the log pipe."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + _KILL_GRACE_SECONDS
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a non-zombie process is left in group ``pgid`` (zombies wait for a reaper that may be slow)."""
    proc = Path("/proc")
    if not proc.exists():
        try:
            os.killpg(pgid, 0)
        except OSError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _pump(stream, log, last_output: list[float], redactor: Redactor, on_point: PointCallback | None = None) -> None:
    # Whole lines (a secret is never cut between two writes), redacted before they reach the disk.
    for chunk in iter(lambda: stream.readline(), b""):
        log.write(redactor.redact_bytes(chunk))
        log.flush()
        last_output[0] = time.monotonic()
        if on_point is not None:
            point = curve_point(chunk.decode("utf-8", errors="replace"))
            if point is not None:
                try:
                    on_point(point)
                except Exception:  # a reporting problem must not take the run down
                    pass


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the process group and every descendant, then SIGKILL what is left."""
    pids = {proc.pid} | descendants(proc.pid)
    _signal_all(proc.pid, pids, signal.SIGTERM)
    deadline = time.monotonic() + _KILL_GRACE_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    pids |= descendants(proc.pid)
    _signal_all(proc.pid, pids, signal.SIGKILL)


def _signal_all(pgid: int, pids: set[int], sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:  # children that left the group (setsid) still die
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(pid: int) -> set[int]:
    """All live descendants of ``pid`` (Linux /proc); empty elsewhere."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.exists():
        return set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def _die_with_parent() -> None:
    """Linux: the launched process gets SIGKILL if the worker that started it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
