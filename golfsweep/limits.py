"""The challenge's limits and a sweep's hard run limits, shared by the spec, the worker and the results."""

from __future__ import annotations

from dataclasses import dataclass

#: Parameter Golf, track 10min_16mb: artifact = script bytes + compressed model bytes.
CHALLENGE_ARTIFACT_BYTES = 16_000_000
CHALLENGE_TRAIN_SECONDS = 600.0
CHALLENGE_EVAL_SECONDS = 600.0


@dataclass(frozen=True)
class Limits:
    """Checked per run (artifact, train, eval) and enforced on it (timeout, stall)."""

    artifact_bytes: int = CHALLENGE_ARTIFACT_BYTES
    train_seconds: float = CHALLENGE_TRAIN_SECONDS
    eval_seconds: float = CHALLENGE_EVAL_SECONDS
    run_timeout_seconds: float = 1800.0
    stall_seconds: float = 600.0
