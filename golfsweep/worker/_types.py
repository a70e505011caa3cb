"""What one run is asked to do (``RunSpec``) and what it reports back (``RunResult``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from golfsweep.limits import Limits
from golfsweep.scriptfiles import ScriptFiles
from golfsweep.worker._env import LaunchMode, run_id

if TYPE_CHECKING:
    from golfsweep.redact import Redactor


class RunState(str, Enum):
    """Lifecycle of one (trial, seed) run."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"  # the script failed: non-zero exit, no metric, NaN, missing artifact, bad paths
    TIMEOUT = "timeout"  # killed past run_timeout_seconds
    STALLED = "stalled"  # killed after stall_seconds without output
    LOST = "lost"  # the node or worker died under it: a system failure, retried elsewhere
    PRUNED = "pruned"  # stopped by the driver's pruning: neither a result nor a failure

    def is_finished(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING)

    def is_system_failure(self) -> bool:
        return self is RunState.LOST

    def is_script_failure(self) -> bool:
        return self in (RunState.FAILED, RunState.TIMEOUT, RunState.STALLED)


@dataclass(frozen=True)
class RunSpec:
    """Everything a node needs for one run; the script travels as bytes (no shared filesystem)."""

    sweep: str
    trial: int
    seed: int
    params: dict[str, Any]
    # fixed env + config env; SEED and RUN_ID are added by the worker. Out of repr: it holds secrets.
    env: dict[str, str] = field(repr=False)
    script_name: str
    script_bytes: bytes
    script_sha256: str
    nproc: int = 1
    launcher: LaunchMode = LaunchMode.PYTHON
    attempt: int = 1
    limits: Limits = field(default_factory=Limits)
    metric_labels: tuple[str, ...] = ()
    artifact_glob: tuple[str, ...] = ("*.ptz",)
    check_paths: tuple[str, ...] = ("DATA_PATH", "TOKENIZER_PATH")
    # files beside the script that it runs (golfsweep.scriptfiles); script_sha256 covers them too
    support_files: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def files(self) -> ScriptFiles:
        return ScriptFiles(self.script_name, self.script_bytes, self.support_files)

    @property
    def run_id(self) -> str:
        return run_id(self.sweep, self.trial, self.seed)

    @property
    def key(self) -> tuple[int, int]:
        return (self.trial, self.seed)


@dataclass(frozen=True)
class ArtifactMeasurement:
    """Sizes measured from the files on disk, compared with the log's claim and the limit."""

    model_files: tuple[str, ...]
    model_bytes: int
    code_bytes: int
    total_bytes: int
    claimed_total_bytes: int | None
    limit_bytes: int

    @property
    def claim_matches(self) -> bool | None:
        if self.claimed_total_bytes is None:
            return None
        return self.claimed_total_bytes == self.total_bytes

    @property
    def within_limit(self) -> bool:
        return self.total_bytes <= self.limit_bytes


@dataclass(frozen=True)
class RunResult:
    """The outcome of one attempt of one run. ``log_text`` is the whole log, shipped to the driver."""

    trial: int
    seed: int
    attempt: int
    state: RunState
    reason: str | None = None
    exit_code: int | None = None
    command: tuple[str, ...] = ()
    node_id: str | None = None
    hostname: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    metric_label: str | None = None
    val_bpb: float | None = None
    val_loss: float | None = None
    train_time_ms: int | None = None
    eval_time_ms: int | None = None
    artifact: ArtifactMeasurement | None = None
    curve: tuple[tuple[int, float, float], ...] = ()  # (step, val_loss, val_bpb)
    log_tail: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # the log parser's doubts about the score it read
    log_text: str = ""

    @property
    def wall_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def replace(self, **changes: Any) -> RunResult:
        return dataclasses.replace(self, **changes)

    def redacted(self, redactor: Redactor, *, log: bool = True) -> RunResult:
        """This result with secrets masked in its free text: reason, command and (``log``) the log."""
        changes: dict[str, Any] = {
            "reason": None if self.reason is None else redactor.redact(self.reason),
            "command": tuple(redactor.redact(c) for c in self.command),
            "warnings": tuple(redactor.redact(w) for w in self.warnings),
        }
        if log:
            changes["log_tail"] = tuple(redactor.redact(line) for line in self.log_tail)
            changes["log_text"] = redactor.redact(self.log_text)
        return dataclasses.replace(self, **changes)
